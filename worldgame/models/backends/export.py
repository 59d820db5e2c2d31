"""The ONNX export the fast path runs: which parts (graphs) a model has, their inputs and outputs,
the fixed example each is traced on, and the export itself. The bottom of the package: the
runner, the int8 recipe and the cache all name these parts, and this file imports none of them."""

from __future__ import annotations

import inspect
import io
import warnings
from typing import TYPE_CHECKING, NamedTuple

import torch

from worldgame.errors import WorldgameError
from worldgame.models.chance import example_conditions
from worldgame.models.frame_denoiser import ContextGraph, StepGraph, has_context_features

if TYPE_CHECKING:
    from worldgame.models.world_model import WorldModel

FORMAT = 1  # part of the cache key: bump when the export changes (inputs, opset, wrapped modules)
OPSET = 17
DENOISER_INPUTS = ("noisy", "timesteps", "context", "actions", "context_noise")
PARTS = ("denoiser.onnx", "decoder.onnx")
# the feature_cache denoiser (denoiser_cached.py) exports as two graphs: its context path, run once a
# frame, and its step, run at every sampling step on the features the first one gave
SPLIT_PARTS = ("context.onnx", "step.onnx", "decoder.onnx")
CONTEXT_INPUTS = ("context", "actions", "context_noise")


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


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else ""
