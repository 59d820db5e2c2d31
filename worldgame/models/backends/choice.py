"""Which backend runs the model: ``torch`` (the modules; traced on CPU) or ``onnx`` (ONNX Runtime on
the CPU for the denoiser and the VAE decoder; encoding, done only at reset and re-sync, stays on
torch), and at which precision.

The engine calls :func:`attach` once; it routes its prepared sampler's batch-1 denoiser and decoder
calls through the chosen backend (``Sampler.accelerate``) and says which one is in use. ``auto`` is
onnx on the CPU when onnxruntime imports and the export works and matches torch, else torch;
CUDA, half precision and the teacher sampler (the export is of the denoiser/) always stay on torch.
An export that fails its check even freshly made: ``auto`` falls back (int8 to fp32, fp32 to torch)
with one line, ``onnx`` fails with one line naming the cache folder. With onnx in use, the chance
prior and the dream's heads run on ONNX Runtime too (exported in memory, never cached)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import torch

from worldgame.errors import WorldgameError
from worldgame.models.backends.runner import CHECK_TOLERANCE, OnnxRunner, _as_tuple, _HeadRunner
from worldgame.models.frame_denoiser import SplitDenoiser, has_context_features
from worldgame.models.sampler import ANY_BATCH

if TYPE_CHECKING:
    from worldgame.models.backends.int8 import Calibrate
    from worldgame.models.heads import Heads
    from worldgame.models.sampler import Sampler

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("fp32", "int8")
DEFAULT_PRECISION = "fp32"  # precision=null on ONNX Runtime (docs/results.md "Precision": int8 measured against it)


def attach(sampler: Sampler, backend: str = "auto", threads: int | None = None, precision: str | None = None,
           any_batch: bool = False, heads: Heads | None = None, calibrate: Calibrate | None = None) -> str:
    """Run ``sampler``'s batch-1 denoiser and decoder on ``backend``; return the backend in use
    (``torch`` or ``onnx``; ``sampler.precision`` says fp32 or int8). ``threads``: ONNX Runtime's
    intra-op threads, by default torch's current count (play and bench set it: 1 on a CPU, the
    ``threads=`` setting). ``precision``: fp32 | int8 on ONNX Runtime, None = DEFAULT_PRECISION
    (torch runs the model's own dtype). ``any_batch``: every batch size runs through the batch-1
    sessions, one sample at a time (eval's batched dreams measure what play computes). ``heads``:
    the dream's event head and agent (models/heads.py), run on ONNX Runtime (fp32) too when it is in use.
    ``calibrate``: the int8 calibration inputs of a model (engine/calibration.py), needed to make an
    int8 export that is not cached yet."""
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
            runner = OnnxRunner(model, threads or torch.get_num_threads(), p, calibrate)
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
    """The chance prior's batch-1 draw on ONNX Runtime (exported in memory, as the heads are; the
    noise and temperature are its inputs), checked against torch on random latents; one that fails
    keeps torch, with a note."""
    model = sampler.model
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    g, v = sampler.chance.config.groups, sampler.chance.config.values
    args = (torch.zeros(1, k, c, s, s), torch.zeros(1, k, dtype=torch.long), torch.zeros(1, g, v), torch.tensor(1.0))
    if sampler.chance.draws_in_two:
        event = _checked_runner("chance prior's event", _Method(sampler.chance, "draw_event"), args, ("event",), threads)
        one = torch.ones(1, 1, dtype=torch.long)  # checked drawing a place (with no event it is not run)
        places = _checked_runner("chance prior's place", _Method(sampler.chance, "draw_places"),
                                 args[:2] + (one,) + args[2:], ("places",), threads)
        runner = _TwoStageDraw(event, places, g) if event is not None and places is not None else None
    else:
        runner = _checked_runner("chance prior", sampler.chance, args, ("code",), threads)
    if runner is not None:
        sampler.accelerate_prior(1, runner)


class _Method(torch.nn.Module):
    """One method of ``owner`` as a module of its own: what an export traces."""

    def __init__(self, owner: torch.nn.Module, name: str) -> None:
        super().__init__()
        self.owner, self.name = owner, name

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.owner, self.name)(*args)


class _TwoStageDraw:
    """A gated code's batch-1 draw (``ChanceCode.draws_in_two``): the event's graph every frame, the
    place's only on a frame with an event -- the same code as the prior's forward, at half its cost
    on most frames. The returned code is a buffer overwritten by the next call."""

    def __init__(self, event: _HeadRunner, places: _HeadRunner, groups: int) -> None:
        self.event, self.places = event, places
        self.code = torch.zeros(1, groups, dtype=torch.long)

    def __call__(self, context: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor,
                 temperature: torch.Tensor) -> torch.Tensor:
        event = self.event(context, actions, noise, temperature)
        self.code[:, :1] = event
        if int(event[0, 0]):
            self.code[:, 1:] = self.places(context, actions, event, noise, temperature)
        else:
            self.code[:, 1:] = 0
        return self.code


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


class _Policy(torch.nn.Module):
    """The agent's policy logits alone (the value is for training)."""

    def __init__(self, agent: torch.nn.Module) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return self.agent(window)[0]
