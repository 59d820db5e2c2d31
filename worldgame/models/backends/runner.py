"""ONNX Runtime sessions for the exported parts (:class:`OnnxRunner`) and for the small heads
(:class:`_HeadRunner`), run through IO binding on torch tensors, and the check of every load against
torch.

Every load, cached or fresh, is checked against torch on CHECK_PROBES random inputs with random
timesteps spread over the schedule, and on one probe per action held over the whole context (int8:
against the looser INT8_TOLERANCE): a cached export that fails is exported again and checked again;
only an export that passes is cached. If the fresh one fails too, ``auto`` falls back (int8 to fp32,
fp32 to torch) with one line and ``onnx`` fails with one line naming the cache folder (choice.py).

The runner is where a load is made when the cache (cache.py) has none that passes: the export
(export.py's ``_export``) and int8's ``_quantize`` are looked up in this module, so a test that
patches them patches them here."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldgame.errors import WorldgameError
from worldgame.models.backends.cache import _private_cache, _read_cache, _write_cache, cache_dir, weights_key
from worldgame.models.backends.export import (
    CONTEXT_INPUTS,
    DENOISER_INPUTS,
    SPLIT_PARTS,
    _export,
    _first_line,
    _part_specs,
    _parts,
)
from worldgame.models.backends.int8 import INT8_BIAS, INT8_TOLERANCE, Calibrate, _quantize
from worldgame.models.chance import example_conditions
from worldgame.models.frame_denoiser import SplitDenoiser

if TYPE_CHECKING:
    from worldgame.models.world_model import WorldModel

CHECK_TOLERANCE = 1e-3  # max |onnx - torch| on the probes; measured ~1e-5 (docs/results.md, tests/test_backends.py)
CHECK_PROBES = 3  # random inputs each load is checked on, one per third of the timestep schedule
_NP = {torch.float32: np.float32, torch.int64: np.int64}


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


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


class OnnxRunner:
    """ONNX Runtime sessions for the denoiser and the decoder, with their preallocated outputs.

    ``denoise`` and ``decode`` take and return torch tensors like the modules they stand for; a
    returned tensor is a buffer overwritten by the next call (the sampler and ``WorldModel.decode``
    consume it at once). ``network`` is what the sampler runs: ``denoise``, or for the feature_cache
    denoiser a :class:`SplitDenoiser` of its two sessions (``context_features``, ``step``), whose
    features stay valid until the next frame's ``context_features``. ``calibrate``: see :func:`attach`."""

    def __init__(self, model: WorldModel, threads: int = 1, precision: str = "fp32",
                 calibrate: Calibrate | None = None) -> None:
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
            blobs = _quantize(model, blobs, calibrate)
        try:
            self._load_and_check(model, blobs)
        except WorldgameError as e:
            where = f"remove {folder} and retry" if folder else "retry"
            raise WorldgameError(f"{e}, even freshly exported; {where}, or use backend=torch") from None
        if folder:
            _write_cache(folder, blobs, key, precision)

    def _load_and_check(self, model: WorldModel, blobs: dict[str, bytes]) -> None:
        """Open the sessions on ``blobs`` and compare them with torch on fresh random probes."""
        if self.precision == "int8" and not all(b"DequantizeLinear" in blobs[p] for p in self.parts if p != "decoder.onnx"):
            raise WorldgameError("the int8 entry holds a graph that is not quantized (no QDQ nodes)")
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
        probes += [_action_probe(model, g, a) for a in range(len(model.action_names))]
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
                    bias = abs(float((a - b).mean())) if part == "denoiser" and self.precision == "int8" else 0.0
                    if not (diff <= most and avg <= mean and bias <= INT8_BIAS):  # also catches NaN (which max() would drop)
                        bound = f"at most {most}" + (f", mean {mean}" if mean != math.inf else "")
                        raise WorldgameError(f"the ONNX export differs from torch by {diff:.3g} (mean {avg:.3g}, bias "
                                             f"{bias:.3g}; {self.precision} {part}: {bound}) at timestep {int(probe[1])}")
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
    ``outputs`` (float32, or the chance prior's int64 code) in place, no copies either way."""
    binding = session.io_binding()
    for name, x in inputs.items():
        x = x.contiguous()
        binding.bind_input(name, "cpu", 0, _NP[x.dtype], tuple(x.shape), x.data_ptr())
    for name, out in outputs.items():
        binding.bind_output(name, "cpu", 0, _NP[out.dtype], tuple(out.shape), out.data_ptr())
    session.run_with_iobinding(binding)


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


def _action_probe(model: WorldModel, g: torch.Generator, action: int) -> tuple[torch.Tensor, ...]:
    """A random probe whose K context actions are all ``action`` (a graph wrong only when one
    action is held -- a trigger -- is caught); its timestep anywhere in the schedule."""
    probe = list(_random_probe(model, g, action % CHECK_PROBES))
    probe[3] = probe[3].clone()
    probe[3][:, : model.context_length] = action  # a chance code, if any, stays as drawn after them
    return tuple(probe)


def _fresh_export(model: WorldModel) -> dict[str, bytes]:
    """Export the denoiser and decoder now (in memory; the caller caches them once they pass the check)."""
    # first run with these weights only (2.4 s on the 2-core target): say so, it is not a hang
    print("preparing the ONNX Runtime fast path for these weights (first run only, a few seconds) ...",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    blobs = {p: _export(spec.module, spec.args, spec.inputs, spec.outputs) for p, spec in _part_specs(model).items()}
    print(f"fast path exported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return blobs
