"""Inference backends for play and bench: ``torch`` (the modules; traced on CPU) or ``onnx`` (ONNX
Runtime on the CPU for the denoiser and the VAE decoder; encoding, done only at reset and re-sync,
stays on torch).

The engine calls :func:`attach` once; it routes its prepared sampler's batch-1 denoiser and decoder
calls through the chosen backend (``Sampler.accelerate``) and says which one is in use. ``auto`` is
onnx on the CPU when onnxruntime imports and the export works and matches torch, else torch;
CUDA, half precision and the teacher sampler (the export is of the denoiser/) always stay on torch.

The ONNX files are exported from the loaded weights on first use and cached outside the repo, in
``$XDG_CACHE_HOME/worldgame/onnx/<sha256 of the weights>/`` (``~/.cache`` by default): new weights
get a new folder, and nothing is ever loaded from anywhere else. Files are written atomically,
``manifest.json`` last with each file's sha256; a file whose hash differs from its manifest is
exported again, not used. Every load, cached or fresh, is checked against torch on a probe input.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_write, atomic_write_json, read_json_object

if TYPE_CHECKING:
    from worldgame.models.sampler import Sampler
    from worldgame.models.world_model import WorldModel

BACKENDS = ("auto", "torch", "onnx")
FORMAT = 1  # part of the cache key: bump when the export changes (inputs, opset, wrapped modules)
OPSET = 17
CHECK_TOLERANCE = 1e-3  # max |onnx - torch| on the probe; measured ~1e-5 (README, tests/test_backends.py)
DENOISER_INPUTS = ("noisy", "timesteps", "context", "actions", "context_noise")
PARTS = ("denoiser.onnx", "decoder.onnx")
_NP = {torch.float32: np.float32, torch.int64: np.int64}


def attach(sampler: Sampler, backend: str = "auto", threads: int | None = None) -> str:
    """Run ``sampler``'s batch-1 denoiser and decoder on ``backend``; return the backend in use
    (``torch`` or ``onnx``). ``threads``: ONNX Runtime's intra-op threads, by default torch's
    current count (play and bench set it: 1 on a CPU, the ``threads=`` setting)."""
    if backend not in BACKENDS:
        raise WorldgameError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    model = sampler.model
    if backend == "torch" or sampler.network is not model.denoiser:  # the teacher: torch modules only
        return "torch"
    if model.device.type != "cpu" or model.dtype != torch.float32:
        if backend == "onnx":
            raise WorldgameError(f"backend=onnx runs float32 on the CPU, not {model.dtype} on {model.device}; "
                                 "use device=cpu half=false, or backend=torch")
        return "torch"
    try:
        runner = OnnxRunner(model, threads or torch.get_num_threads())
    except WorldgameError as e:
        if backend == "onnx":
            raise
        print(f"note: backend=auto: {e}; using torch", file=sys.stderr)
        return "torch"
    sampler.accelerate(1, runner.denoise, runner.decode)
    return "onnx"


def cache_dir(key: str) -> Path:
    """Where the export of the weights hashed to ``key`` lives (XDG base directory spec)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "worldgame" / "onnx" / key


def weights_key(model: WorldModel) -> str:
    """sha256 of what an export is made from: the denoiser's and VAE's configs and weights."""
    h = hashlib.sha256(f"worldgame-onnx-{FORMAT}-opset{OPSET}".encode())
    for module in (model.denoiser, model.vae):
        config = {k: v for k, v in module.config.items() if not k.startswith("_")}  # not _name_or_path
        h.update(json.dumps([type(module).__name__, config], sort_keys=True, default=str).encode())
        for name, t in module.state_dict().items():
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class OnnxRunner:
    """ONNX Runtime sessions for the denoiser and the decoder, with their preallocated outputs.

    ``denoise`` and ``decode`` take and return torch tensors like the modules they stand for; a
    returned tensor is a buffer overwritten by the next call (the sampler and ``WorldModel.decode``
    consume it at once)."""

    def __init__(self, model: WorldModel, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise WorldgameError("onnxruntime is not installed (pip install onnxruntime)") from e
        probe = _probe(model)
        blobs = _cached_export(model, probe)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # the thread policy: 1 on a CPU unless threads= says otherwise
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: graph-optimisation notes are noise in the CLI
        try:
            self._sessions = [ort.InferenceSession(blobs[p], opts, providers=["CPUExecutionProvider"]) for p in PARTS]
        except Exception as e:  # onnxruntime raises its own types
            raise WorldgameError(f"ONNX Runtime cannot load the export ({type(e).__name__}: {e})") from e
        with torch.inference_mode():
            ref = [model.denoiser(*probe), model.vae.decode(probe[0])]
            self._outs = [torch.empty_like(r) for r in ref]
            try:
                got = [self.denoise(*probe).clone(), self.decode(probe[0]).clone()]
            except Exception as e:
                raise WorldgameError(f"ONNX Runtime cannot run the export ({type(e).__name__}: {e})") from e
            err = max(float((g - r).abs().max()) for g, r in zip(got, ref))
        if not err <= CHECK_TOLERANCE:  # also catches NaN
            raise WorldgameError(f"the ONNX export differs from torch by {err:.3g} (> {CHECK_TOLERANCE})")
        self.max_abs_diff = err

    def denoise(self, noisy, timesteps, context, actions, context_noise) -> torch.Tensor:
        return self._run(0, dict(zip(DENOISER_INPUTS, (noisy, timesteps, context, actions, context_noise))))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run(1, {"latents": latents})

    def _run(self, part: int, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # IO binding: ORT reads the torch tensors and writes the preallocated output in place
        session, out = self._sessions[part], self._outs[part]
        binding = session.io_binding()
        for name, x in inputs.items():
            x = x.contiguous()
            binding.bind_input(name, "cpu", 0, _NP[x.dtype], tuple(x.shape), x.data_ptr())
        binding.bind_output("out", "cpu", 0, np.float32, tuple(out.shape), out.data_ptr())
        session.run_with_iobinding(binding)
        return out


class _Decoder(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)


def _probe(model: WorldModel) -> tuple[torch.Tensor, ...]:
    """A batch-1 denoiser input (latent, timestep, context, actions, noise level): the export's
    example and the check against torch."""
    g = torch.Generator().manual_seed(0)
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    actions = torch.randint(0, model.denoiser.config.num_actions, (1, k), generator=g)
    return (torch.randn(1, c, s, s, generator=g), torch.tensor([499]), torch.randn(1, k, c, s, s, generator=g), actions,
            torch.full((1,), model.context_noise))


def _export(module: torch.nn.Module, args: tuple, names: tuple[str, ...]) -> bytes:
    buf = io.BytesIO()
    # the TorchScript exporter: needs only the onnx package (the dynamo one also needs onnxscript)
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, input_names=list(names), output_names=["out"], opset_version=OPSET, **extra)
    except Exception as e:  # a missing onnx package, an op the exporter does not know, ...
        raise WorldgameError(f"the ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    return buf.getvalue()


def _cached_export(model: WorldModel, probe: tuple[torch.Tensor, ...]) -> dict[str, bytes]:
    """The export of ``model``'s weights: from the cache when every file matches its recorded hash,
    else made now and cached (the bytes are hashed once and loaded from memory, never re-read)."""
    key = weights_key(model)
    folder = cache_dir(key)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            recorded = read_json_object(manifest, 1 << 16, str(manifest), "it is exported again")
            blobs = {p: (folder / p).read_bytes() for p in PARTS}
            if all(recorded.get("sha256", {}).get(p) == hashlib.sha256(b).hexdigest() for p, b in blobs.items()):
                return blobs
            print(f"note: {folder}: a cached ONNX file does not match its recorded sha256; exporting again", file=sys.stderr)
        except (WorldgameError, OSError, AttributeError) as e:
            print(f"note: {folder}: cached ONNX export unreadable ({e}); exporting again", file=sys.stderr)
    # first run with these weights only (2.4 s on the 2-core target): say so, it is not a hang
    print("preparing the ONNX Runtime fast path for these weights (first run only, a few seconds) ...",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    blobs = {"denoiser.onnx": _export(model.denoiser, probe, DENOISER_INPUTS),
             "decoder.onnx": _export(_Decoder(model.vae), probe[:1], ("latents",))}
    print(f"fast path exported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    try:
        for p, b in blobs.items():
            atomic_write(folder / p, b)
        atomic_write_json(manifest, {"weights_sha256": key, "format": FORMAT, "opset": OPSET, "torch": torch.__version__,
                                     "sha256": {p: hashlib.sha256(b).hexdigest() for p, b in blobs.items()}})
    except WorldgameError as e:  # a read-only home: the export in memory still serves this run
        print(f"note: cannot cache the ONNX export ({e}); it is made again next time", file=sys.stderr)
    return blobs
