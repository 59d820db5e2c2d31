"""Inference backends for play and bench: ``torch`` (the modules; traced on CPU) or ``onnx`` (ONNX
Runtime on the CPU for the denoiser and the VAE decoder; encoding, done only at reset and re-sync,
stays on torch).

The engine calls :func:`attach` once; it routes its prepared sampler's batch-1 denoiser and decoder
calls through the chosen backend (``Sampler.accelerate``) and says which one is in use. ``auto`` is
onnx on the CPU when onnxruntime imports and the export works and matches torch, else torch;
CUDA, half precision and the teacher sampler (the export is of the denoiser/) always stay on torch.

``precision``: ``fp32`` (the export as is) or ``int8``: ONNX Runtime static quantization of the
denoiser's export (per-channel int8 weights, uint8 activations, QDQ format), of its Conv and Gemm
nodes only (quantizing the GroupNorm/SiLU glue between them too gave ~10x the error), its first and
last convolution kept fp32 (they see the latents themselves), calibrated on its inputs in a short
dream of the game itself, started from its own reset frames (:func:`_calibration`): the checkpoint
and the game are all it needs, no data folder. The decoder stays fp32: quantized, its noise alone
cost 1.3 dB of teacher-forced PSNR on Bouncer, for 0.3 ms a frame. Made once per weights (~15 s)
and cached like the fp32 export, under its own key.

The ONNX files are exported from the loaded weights on first use and cached outside the repo, in
``$XDG_CACHE_HOME/worldgame/onnx/<sha256 of the weights>-u<uid>/`` (``~/.cache`` by default): new
weights get a new folder, and nothing is ever loaded from anywhere else. The cache is untrusted
input all the same:

* its folders (``worldgame/``, ``onnx/`` and the weights' own) are created 0700, and one that
  belongs to another user or is group/world-writable is not used (a note names it; the export
  is made in memory each run until it is removed);
* only regular files under a size cap are read (never a FIFO or a device), ``manifest.json``
  last written with each file's sha256, and a file whose hash differs is exported again;
* every load, cached or fresh, is checked against torch on CHECK_PROBES random inputs with
  random timesteps spread over the schedule (int8: against the looser INT8_TOLERANCE): a cached
  export that fails is exported again and checked again; only an export that passes is cached.
  If the fresh one fails too, ``auto`` falls back (int8 to fp32, fp32 to torch) with one line and
  ``onnx`` fails with one line naming the cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import math
import os
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_write, atomic_write_json, read_bounded, read_json_object
from worldgame.models.chance import example_conditions
from worldgame.models.frame_denoiser import ContextGraph, SplitDenoiser, StepGraph, has_context_features
from worldgame.models.sampler import ANY_BATCH

if TYPE_CHECKING:
    from worldgame.models.heads import Heads
    from worldgame.models.sampler import Sampler
    from worldgame.models.world_model import WorldModel

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("fp32", "int8")
DEFAULT_PRECISION = "fp32"  # precision=null on ONNX Runtime (README "Precision": int8 measured against it)
FORMAT = 1  # part of the cache key: bump when the export changes (inputs, opset, wrapped modules)
OPSET = 17
CHECK_TOLERANCE = 1e-3  # max |onnx - torch| on the probes; measured ~1e-5 (README, tests/test_backends.py)
# the int8 denoiser against torch on the same probes: (max, mean) |int8 - torch|. Measured over 30
# random probes on the shipped checkpoints (README "Precision"): max 0.74 / mean 0.050 at worst
# (Bouncer max 0.74, mean 0.030 typical; Boxing 0.30 / 0.031; outputs have std ~0.7); a foreign
# model is off by ~0.5 on average.
INT8_TOLERANCE = (2.0, 0.1)
INT8_RECIPE = 2  # part of the int8 cache key: bump when the quantization recipe changes
CALIBRATION = (4, 24)  # the calibration dream: game resets (seeds 0..), frames each (step counts 1, 2, 4, 8 in turn)
QUANTIZED_OPS = ["Conv", "Gemm"]
CHECK_PROBES = 3  # random inputs each load is checked on, one per third of the timestep schedule
DENOISER_INPUTS = ("noisy", "timesteps", "context", "actions", "context_noise")
PARTS = ("denoiser.onnx", "decoder.onnx")
# the feature_cache denoiser (denoiser_cached.py) exports as two graphs: its context path, run once a
# frame, and its step, run at every sampling step on the features the first one gave
SPLIT_PARTS = ("context.onnx", "step.onnx", "decoder.onnx")
CONTEXT_INPUTS = ("context", "actions", "context_noise")
_NP = {torch.float32: np.float32, torch.int64: np.int64}


def attach(sampler: Sampler, backend: str = "auto", threads: int | None = None, precision: str | None = None,
           any_batch: bool = False, heads: Heads | None = None) -> str:
    """Run ``sampler``'s batch-1 denoiser and decoder on ``backend``; return the backend in use
    (``torch`` or ``onnx``; ``sampler.precision`` says fp32 or int8). ``threads``: ONNX Runtime's
    intra-op threads, by default torch's current count (play and bench set it: 1 on a CPU, the
    ``threads=`` setting). ``precision``: fp32 | int8 on ONNX Runtime, None = DEFAULT_PRECISION
    (torch runs the model's own dtype). ``any_batch``: every batch size runs through the batch-1
    sessions, one sample at a time (eval's batched dreams measure what play computes). ``heads``:
    the dream's event head and agent (models/heads.py), run on ONNX Runtime (fp32) too when it is in use."""
    if backend not in BACKENDS:
        raise WorldgameError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    if precision == "int8" and has_context_features(sampler.model.denoiser) and backend == "onnx":
        raise WorldgameError("precision=int8 quantizes the concat denoiser only; use precision=fp32 with "
                             "model.denoiser.variant=feature_cache")
    if precision is not None and precision not in PRECISIONS:
        raise WorldgameError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and backend == "torch":
        raise WorldgameError("precision=int8 runs on ONNX Runtime only: use backend=onnx (or auto), or precision=fp32")
    model = sampler.model
    if backend == "torch" or sampler.network is not model.denoiser:  # the teacher: torch modules only
        return "torch"
    if model.device.type != "cpu" or model.dtype != torch.float32:
        if backend == "onnx":
            raise WorldgameError(f"backend=onnx runs float32 on the CPU, not {model.dtype} on {model.device}; "
                                 "use device=cpu half=false, or backend=torch")
        return "torch"
    tries = [precision or DEFAULT_PRECISION]
    if has_context_features(model.denoiser) and tries[0] != "fp32":  # auto (onnx refused above)
        print("note: backend=auto precision=int8: the int8 recipe quantizes the concat denoiser only; using fp32",
              file=sys.stderr)
        tries = ["fp32"]
    if backend == "auto" and tries[0] != "fp32":
        tries.append("fp32")  # auto: int8 that cannot be made (or checked) falls back to the fp32 export
    for p in tries:
        try:
            runner = OnnxRunner(model, threads or torch.get_num_threads(), p)
            break
        except WorldgameError as e:
            if backend == "onnx":
                raise
            print(f"note: backend=auto precision={p}: {e}; using {'fp32' if p != 'fp32' else 'torch'}", file=sys.stderr)
    else:
        return "torch"
    if any_batch:
        network = runner.network
        if isinstance(network, SplitDenoiser):
            network = SplitDenoiser(_each(runner.context_features), _each(runner.step))
        else:
            network = _each(network)
        sampler.accelerate(ANY_BATCH, network, _each(runner.decode))
    else:
        sampler.accelerate(1, runner.network, runner.decode)
    sampler.precision = runner.precision
    if sampler.chance is not None:  # the chance prior, once per frame before the steps: beside the heads
        _accelerate_prior(sampler, threads or torch.get_num_threads())
    if heads is not None:
        accelerate_heads(heads, threads or torch.get_num_threads())
    return "onnx"


def _accelerate_prior(sampler: Sampler, threads: int) -> None:
    """The chance prior's batch-1 forward on ONNX Runtime (exported in memory, as the heads are),
    checked against torch on random latents; one that fails keeps torch, with a note."""
    model = sampler.model
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    runner = _checked_runner("chance prior", sampler.chance, (torch.zeros(1, k, c, s, s), torch.zeros(1, k, dtype=torch.long)),
                             ("logits",), threads)
    if runner is not None:
        sampler.accelerate_prior(1, runner)


def _checked_runner(name: str, net: torch.nn.Module, args: tuple[torch.Tensor, ...], outputs: tuple[str, ...],
                    threads: int) -> _HeadRunner | None:
    """``net`` at batch 1 on ONNX Runtime, exported in memory and checked against torch on a random
    latent window (the other inputs as ``args``); None, with a note, when it fails (torch stays)."""
    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    try:
        runner = _HeadRunner(net, args, outputs, threads)
        probe = (torch.randn(args[0].shape, generator=g),) + args[1:]
        with torch.inference_mode():
            ref = _as_tuple(net(*probe))
        diff = max(float((a - b).abs().max()) for a, b in zip(_as_tuple(runner(*probe)), ref))
        if not diff <= CHECK_TOLERANCE:
            raise WorldgameError(f"its ONNX export differs from torch by {diff:.3g}")
    except WorldgameError as e:
        print(f"note: the {name} stays on torch: {e}", file=sys.stderr)
        return None
    return runner


def _each(fn):
    """``fn`` (batch 1, answering in a buffer or a tuple of buffers it reuses) applied to each sample of a batch."""
    def run(*xs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        first = _as_tuple(fn(*(x[:1] for x in xs)))
        outs = tuple(torch.empty((xs[0].shape[0], *f.shape[1:]), dtype=f.dtype) for f in first)
        for out, f in zip(outs, first):
            out[:1] = f
        for i in range(1, xs[0].shape[0]):
            for out, f in zip(outs, _as_tuple(fn(*(x[i : i + 1] for x in xs)))):
                out[i : i + 1] = f
        return outs if len(outs) > 1 else outs[0]
    return run


def accelerate_heads(heads: Heads, threads: int = 1) -> None:
    """Run the event head's and the agent's batch-1 forwards on ONNX Runtime. They are tiny: exported
    in memory at each load (~0.1 s, never cached: no file is read back) and checked against torch
    on random latents; one that fails keeps torch, with a note."""
    model = heads.model
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    for name, module in (("event head", model.events), ("agent", model.agent)):
        if module is None:
            continue
        agent = name == "agent"
        net = _Policy(module) if agent else module
        args = (torch.zeros(1, k, c, s, s),) if agent else (torch.zeros(1, k, c, s, s), torch.zeros(1, dtype=torch.long))
        outputs = ("logits",) if agent else ("logits", "end")
        runner = _checked_runner(name, net, args, outputs, threads)
        if runner is None:
            continue
        if agent:
            heads.policy = runner
        else:
            heads.events_forward = runner


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


class _Policy(torch.nn.Module):
    """The agent's policy logits alone (the value is for training)."""

    def __init__(self, agent: torch.nn.Module) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.agent(window)[0]


class _HeadRunner:
    """One small module on ONNX Runtime at batch 1, its outputs preallocated (overwritten each call)."""

    def __init__(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], outputs: tuple[str, ...], threads: int) -> None:
        import onnxruntime as ort  # attach got here with onnx in use: it imports

        self.inputs = tuple(f"in{i}" for i in range(len(args)))
        blob = _export(module, args, self.inputs, outputs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types
            raise WorldgameError(f"ONNX Runtime cannot load it ({type(e).__name__}: {_first_line(e)})") from e
        with torch.inference_mode():
            self.outs = {n: torch.empty_like(r) for n, r in zip(outputs, _as_tuple(module(*args)))}

    def __call__(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        try:
            _run_bound(self.session, dict(zip(self.inputs, args)), self.outs)
        except Exception as e:
            raise WorldgameError(f"ONNX Runtime cannot run it ({type(e).__name__}: {_first_line(e)})") from e
        outs = tuple(self.outs.values())
        return outs if len(outs) > 1 else outs[0]  # what the module it stands for returns


def cache_dir(key: str) -> Path:
    """Where this user's export of the weights hashed to ``key`` lives (XDG base directory spec).
    The uid is part of the name: a shared XDG_CACHE_HOME never hands one user's export to another."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return root / "worldgame" / "onnx" / f"{key}-u{uid}"


def weights_key(model: WorldModel, precision: str = "fp32") -> str:
    """sha256 of what an export is made from: the denoiser's and VAE's configs and weights, and the
    precision (an int8 export never answers for the fp32 one, nor the other way)."""
    recipe = f"-r{INT8_RECIPE}" if precision == "int8" else ""
    h = hashlib.sha256(f"worldgame-onnx-{FORMAT}-opset{OPSET}-{precision}{recipe}".encode())
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
    consume it at once). ``network`` is what the sampler runs: ``denoise``, or for the feature_cache
    denoiser a :class:`SplitDenoiser` of its two sessions (``context_features``, ``step``), whose
    features stay valid until the next frame's ``context_features``."""

    def __init__(self, model: WorldModel, threads: int = 1, precision: str = "fp32") -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise WorldgameError("onnxruntime is not installed (pip install onnxruntime)") from e
        self._ort, self._threads, self.precision = ort, threads, precision
        self.parts = _parts(model)
        self.network = SplitDenoiser(self.context_features, self.step) if self.parts == SPLIT_PARTS else self.denoise
        key = weights_key(model, precision)
        folder = _private_cache(cache_dir(key))
        blobs = _read_cache(model, folder) if folder else None
        if blobs is not None:
            try:
                self._load_and_check(model, blobs)
                return
            except WorldgameError as e:  # consistent with its manifest but wrong: never trusted, made again
                print(f"note: {folder}: cached ONNX export rejected ({e}); exporting again", file=sys.stderr)
        blobs = _fresh_export(model)
        if precision == "int8":
            blobs = _quantize(model, blobs)
        try:
            self._load_and_check(model, blobs)
        except WorldgameError as e:
            where = f"remove {folder} and retry" if folder else "retry"
            raise WorldgameError(f"{e}, even freshly exported; {where}, or use backend=torch") from None
        if folder:
            _write_cache(folder, blobs, key, precision)

    def _load_and_check(self, model: WorldModel, blobs: dict[str, bytes]) -> None:
        """Open the sessions on ``blobs`` and compare them with torch on fresh random probes."""
        ort = self._ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads  # the thread policy: 1 on a CPU unless threads= says otherwise
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: graph-optimisation notes are noise in the CLI
        try:
            self._sessions = {p: ort.InferenceSession(blobs[p], opts, providers=["CPUExecutionProvider"]) for p in self.parts}
        except Exception as e:  # onnxruntime raises its own types
            raise WorldgameError(f"ONNX Runtime cannot load the export ({type(e).__name__}: {_first_line(e)})") from e
        with torch.inference_mode():  # each graph's outputs, preallocated in the shapes torch gives
            self._outs = {p: {n: torch.empty_like(r) for n, r in zip(spec.outputs, _as_tuple(spec.module(*spec.args)))}
                          for p, spec in _part_specs(model).items()}
        self.max_abs_diff = self._check(model)

    def _check(self, model: WorldModel) -> float:
        """max |onnx - torch| over CHECK_PROBES random inputs. The timesteps and noise levels are
        drawn afresh each load (unseeded): an export right only at the inputs a check is known to
        use (a fixed timestep) cannot pass. An int8 denoiser is held to INT8_TOLERANCE (max and mean)."""
        g = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
        probes = [_random_probe(model, g, i) for i in range(CHECK_PROBES)]
        exact = (CHECK_TOLERANCE, math.inf)
        tolerances = (exact if self.precision == "fp32" else INT8_TOLERANCE, exact)  # the decoder stays fp32
        with torch.inference_mode():
            err = 0.0
            for probe in probes:
                ref = [model.denoiser(*probe), model.vae.decode(probe[0])]
                try:
                    got = [self.denoise(*probe), self.decode(probe[0])]
                except Exception as e:
                    raise WorldgameError(f"ONNX Runtime cannot run the export ({type(e).__name__}: {_first_line(e)})") from e
                for part, a, b, (most, mean) in zip(("denoiser", "decoder"), got, ref, tolerances):
                    d = (a - b).abs()
                    diff, avg = float(d.max()), float(d.mean())
                    if not (diff <= most and avg <= mean):  # also catches NaN (which max() would drop)
                        bound = f"at most {most}" + (f", mean {mean}" if mean != math.inf else "")
                        raise WorldgameError(f"the ONNX export differs from torch by {diff:.3g} (mean {avg:.3g}; "
                                             f"{self.precision} {part}: {bound}) at timestep {int(probe[1])}")
                    err = max(err, diff)
        return err

    def denoise(self, noisy, timesteps, context, actions, context_noise) -> torch.Tensor:
        if self.parts == SPLIT_PARTS:
            return self.network(noisy, timesteps, context, actions, context_noise)
        return self._run("denoiser.onnx", dict(zip(DENOISER_INPUTS, (noisy, timesteps, context, actions, context_noise))))

    def context_features(self, context, actions, context_noise) -> tuple[torch.Tensor, ...]:
        return self._run("context.onnx", dict(zip(CONTEXT_INPUTS, (context, actions, context_noise))))

    def step(self, noisy, timesteps, *features: torch.Tensor) -> torch.Tensor:
        names = ("noisy", "timesteps", *self._outs["context.onnx"])
        return self._run("step.onnx", dict(zip(names, (noisy, timesteps, *features))))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._run("decoder.onnx", {"latents": latents})

    def _run(self, part: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        # IO binding: ORT reads the torch tensors and writes the preallocated outputs in place
        outs = self._outs[part]
        _run_bound(self._sessions[part], inputs, outs)
        return tuple(outs.values()) if len(outs) > 1 else outs["out"]


def _run_bound(session, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    """Run ``session`` through IO binding: ORT reads the torch ``inputs`` and writes the preallocated
    ``outputs`` (float32) in place, no copies either way."""
    binding = session.io_binding()
    for name, x in inputs.items():
        x = x.contiguous()
        binding.bind_input(name, "cpu", 0, _NP[x.dtype], tuple(x.shape), x.data_ptr())
    for name, out in outputs.items():
        binding.bind_output(name, "cpu", 0, np.float32, tuple(out.shape), out.data_ptr())
    session.run_with_iobinding(binding)


class _Decoder(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)


def _probe(model: WorldModel) -> tuple[torch.Tensor, ...]:
    """A batch-1 denoiser input (latent, timestep, context, actions, noise level): the export's
    example (fixed, so an export is reproducible; the check uses :func:`_random_probe`)."""
    g = torch.Generator().manual_seed(0)
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    actions = example_conditions(model.denoiser, 1, g)  # + a chance code where the denoiser has one
    return (torch.randn(1, c, s, s, generator=g), torch.tensor([499]), torch.randn(1, k, c, s, s, generator=g), actions,
            torch.full((1,), model.context_noise))


def _parts(model: WorldModel) -> tuple[str, ...]:
    """The files an export of ``model`` has: two graphs for the feature_cache denoiser, one otherwise."""
    return SPLIT_PARTS if has_context_features(model.denoiser) else PARTS


class _Spec(NamedTuple):
    module: torch.nn.Module
    args: tuple[torch.Tensor, ...]  # the export's example (fixed, so the same weights give the same bytes)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _part_specs(model: WorldModel) -> dict[str, _Spec]:
    """What each ONNX part is exported from: its module, example inputs and input / output names."""
    probe = _probe(model)
    specs = {"denoiser.onnx": _Spec(model.denoiser, probe, DENOISER_INPUTS, ("out",))}
    if has_context_features(model.denoiser):
        with torch.inference_mode(False), torch.no_grad():
            features = model.denoiser.context_features(*probe[2:])
        names = ("cond", *(f"feature{i}" for i in range(len(features) - 1)))
        specs = {"context.onnx": _Spec(ContextGraph(model.denoiser), probe[2:], CONTEXT_INPUTS, names),
                 "step.onnx": _Spec(StepGraph(model.denoiser), (*probe[:2], *features), ("noisy", "timesteps", *names), ("out",))}
    specs["decoder.onnx"] = _Spec(_Decoder(model.vae), probe[:1], ("latents",), ("out",))
    return specs


def _export(module: torch.nn.Module, args: tuple, names: tuple[str, ...], outputs: tuple[str, ...] = ("out",)) -> bytes:
    buf = io.BytesIO()
    # the TorchScript exporter: needs only the onnx package (the dynamo one also needs onnxscript)
    extra = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, input_names=list(names), output_names=list(outputs), opset_version=OPSET, **extra)
    except Exception as e:  # a missing onnx package, an op the exporter does not know, ...
        raise WorldgameError(f"the ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    return buf.getvalue()


def _random_probe(model: WorldModel, g: torch.Generator, i: int) -> tuple[torch.Tensor, ...]:
    """Probe ``i`` of CHECK_PROBES: a random input whose timestep lies in the i-th equal slice of
    the schedule (all of it is covered, whatever the draw) with a random context noise level."""
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    span = model.scheduler.config.num_train_timesteps / CHECK_PROBES
    t = int(span * i + float(torch.rand((), generator=g)) * span)
    level = float(torch.rand((), generator=g)) * max(2 * model.context_noise, 0.1)
    actions = example_conditions(model.denoiser, 1, g)
    return (torch.randn(1, c, s, s, generator=g), torch.tensor([t]), torch.randn(1, k, c, s, s, generator=g), actions,
            torch.full((1,), level))


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def _fresh_export(model: WorldModel) -> dict[str, bytes]:
    """Export the denoiser and decoder now (in memory; the caller caches them once they pass the check)."""
    # first run with these weights only (2.4 s on the 2-core target): say so, it is not a hang
    print("preparing the ONNX Runtime fast path for these weights (first run only, a few seconds) ...",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    blobs = {p: _export(spec.module, spec.args, spec.inputs, spec.outputs) for p, spec in _part_specs(model).items()}
    print(f"fast path exported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return blobs


def _calibration(model: WorldModel) -> list[tuple[torch.Tensor, ...]]:
    """The denoiser's inputs in a short dream of the checkpoint's own game, on the
    torch modules and the play sampler: CALIBRATION[0] resets (seeds 0, 1, ...) of the real game,
    each dreamed CALIBRATION[1] frames on sticky random actions, at 1, 2, 4 and 8 steps in turn, so
    every timestep play uses is seen. What play feeds the network, and only the checkpoint needed."""
    from worldgame.engine.dream import Dream  # the engine imports this module's package: import on use
    from worldgame.engine.lockstep import LockstepGame
    from worldgame.games import make_game
    from worldgame.models.sampler import Sampler

    denoised = []

    def denoise(*inputs: torch.Tensor) -> torch.Tensor:
        denoised.append(tuple(x.clone() for x in inputs))
        return model.denoiser(*inputs)

    try:
        game = LockstepGame(make_game(model.metadata["game_config"]), model.context_length)
    except Exception as e:  # a gym game whose package is missing, ...
        raise WorldgameError(f"precision=int8 calibrates on the checkpoint's game, which cannot start "
                             f"({type(e).__name__}: {_first_line(e)})") from e
    sampler = Sampler(model)
    sampler.accelerate(1, denoise)
    dream, rng = Dream(model, sampler=sampler), np.random.default_rng(0)
    for seed in range(CALIBRATION[0]):
        dream.start(game.reset(seed), seed)
        dream.set_steps((1, 2, 4, 8)[seed % 4])
        action = 0
        for _ in range(CALIBRATION[1]):
            if rng.random() > 0.8:  # sticky random actions, as collect's random policy
                action = int(rng.integers(len(model.action_names)))
            dream.step(action)
    return denoised


def _quantize(model: WorldModel, blobs: dict[str, bytes]) -> dict[str, bytes]:
    """The fp32 export with its denoiser statically quantized to int8 (see the module docstring),
    calibrated on :func:`_calibration`; the decoder stays as it is."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as e:
        raise WorldgameError("precision=int8 needs onnxruntime's quantization tools (pip install 'onnxruntime>=1.17' "
                             "onnx), or use precision=fp32") from e
    print("calibrating and quantizing to int8 (first run only, ~15-30 s) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    denoised = _calibration(model)

    class Reader(CalibrationDataReader):
        def __init__(self, names: tuple[str, ...], samples: list) -> None:
            self._feeds = iter([{n: x.numpy() for n, x in zip(names, sample)} for sample in samples])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    import onnx

    out = dict(blobs)
    part = "denoiser.onnx"
    convs = [n.name for n in onnx.load_from_string(blobs[part]).graph.node if n.op_type == "Conv"]
    with tempfile.TemporaryDirectory(prefix="worldgame-int8-") as tmp, _quiet_logging():
        src, dst = Path(tmp) / part, Path(tmp) / f"int8-{part}"
        src.write_bytes(blobs[part])
        try:
            quantize_static(str(src), str(dst), Reader(DENOISER_INPUTS, denoised), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=[convs[0], convs[-1]])
        except Exception as e:
            raise WorldgameError(f"int8 quantization failed ({type(e).__name__}: {_first_line(e)}); "
                                 "use precision=fp32") from e
        out[part] = dst.read_bytes()
    print(f"int8 made in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return out


@contextlib.contextmanager
def _quiet_logging():
    """quantize_static warns on the root logger (pre-processing hints, norm biases): noise in the CLI."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# --- the cache: untrusted input, in folders only this user can write -------------------------------
def _private_cache(folder: Path) -> Path | None:
    """``folder`` and the cache folders above it that worldgame makes, created 0700 where missing;
    None (with a note naming the folder) where one of them is another user's or writable by others:
    its files could be anyone's, so this run exports in memory and caches nothing."""
    for level in (folder.parent.parent, folder.parent, folder):
        reason = _unsafe_folder(level)
        if reason:
            print(f"note: ONNX cache folder {level} {reason}; not used, the export is made again each run",
                  file=sys.stderr)
            return None
    return folder


def _unsafe_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot hold the cache, or None; a missing one is created private."""
    try:
        _mkdirs_private(folder)
        st = os.stat(folder)  # a symlink counts as what it points to: its target must be safe too
    except OSError as e:
        return f"cannot be created ({e.strerror or e}; set XDG_CACHE_HOME to a writable folder)"
    fix = "remove it or set XDG_CACHE_HOME to a private folder"
    if not stat.S_ISDIR(st.st_mode):
        return f"is not a folder ({fix})"
    if os.name != "posix":  # no uids, and st_mode reports every folder as writable by all
        return None
    if st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid}; {fix})"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {stat.S_IMODE(st.st_mode):o}; {fix})"
    return None


def _mkdirs_private(folder: Path) -> None:
    """Create ``folder`` and each missing folder above it 0700 (mode & ~umask: private under any
    umask, 000 included), not with the umask's default as ``mkdir(parents=True)`` would."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: checked after
            os.mkdir(f, 0o700)


def _part_cap(model: WorldModel) -> int:
    """The most bytes a cached part may have: 4x the float32 weights of the modules it is
    exported from, plus room for the graph. A real export is ~1x; the cap keeps a crafted file
    from being read into memory."""
    n = sum(t.numel() for m in (model.denoiser, model.vae) for t in m.state_dict().values())
    return 4 * 4 * n + (16 << 20)


def _read_cache(model: WorldModel, folder: Path) -> dict[str, bytes] | None:
    """The cached export when every part is a regular file under the size cap and matches the
    sha256 its manifest records, else None (with a note saying why; it is exported again)."""
    manifest = folder / "manifest.json"
    if not os.path.lexists(manifest):
        return None
    hint = "it is exported again"
    try:
        recorded = read_json_object(manifest, 1 << 16, str(manifest), hint).get("sha256")
        blobs = {p: read_bounded(folder / p, _part_cap(model), str(folder / p), hint) for p in _parts(model)}
    except WorldgameError as e:
        print(f"note: cached ONNX export unusable: {e}", file=sys.stderr)
        return None
    if not isinstance(recorded, dict) or any(recorded.get(p) != hashlib.sha256(b).hexdigest() for p, b in blobs.items()):
        print(f"note: {folder}: a cached ONNX file does not match its recorded sha256; exporting again", file=sys.stderr)
        return None
    return blobs


def _write_cache(folder: Path, blobs: dict[str, bytes], key: str, precision: str = "fp32") -> None:
    """Cache an export that passed the check: the parts first, the manifest last (atomically)."""
    try:
        for p, b in blobs.items():
            atomic_write(folder / p, b)
        atomic_write_json(folder / "manifest.json", {
            "weights_sha256": key, "format": FORMAT, "opset": OPSET, "precision": precision, "torch": torch.__version__,
            "sha256": {p: hashlib.sha256(b).hexdigest() for p, b in blobs.items()}})
    except WorldgameError as e:  # a read-only home: the export in memory still serves this run
        print(f"note: cannot cache the ONNX export ({e}); it is made again next time", file=sys.stderr)
