"""``precision=int8``: ONNX Runtime static quantization of the denoiser's export (per-channel int8
weights, uint8 activations, QDQ format), of its Conv and Gemm nodes only (quantizing the
GroupNorm/SiLU glue between them too gave ~10x the error), its first and last convolution kept fp32
(they see the latents themselves), calibrated on its inputs in a short dream of the game itself,
started from its own reset frames: the checkpoint and the game are all it needs, no data folder.
That dream is the engine's (engine/calibration.py): the caller hands it in as ``calibrate`` (the
engine's ``attach`` does), so this package never imports the engine. The decoder stays fp32:
quantized, its noise alone cost 1.3 dB of teacher-forced PSNR on Bouncer, for 0.3 ms a frame. Made
once per weights (~15 s) and cached like the fp32 export, under its own key (cache.py); each load is
checked against torch like the fp32 one, to the looser INT8_TOLERANCE (runner.py)."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from worldgame.errors import WorldgameError
from worldgame.models.backends.export import DENOISER_INPUTS, _first_line

if TYPE_CHECKING:
    from worldgame.models.world_model import WorldModel

# the int8 denoiser against torch on the same probes: (max, mean) |int8 - torch|. Measured over 30
# random probes on the shipped checkpoints (docs/results.md "Precision"): max 0.74 / mean 0.050 at worst
# (Bouncer max 0.74, mean 0.030 typical; Boxing 0.30 / 0.031; outputs have std ~0.7); a foreign
# model is off by ~0.5 on average.
# Issue 33: also probed with each action held over the whole context (30 random + one per action on
# each shipped checkpoint): max 0.84, mean 0.051, |mean signed error| 0.0037 at worst. A graph
# biased everywhere (+0.09) or wrong for one action pattern is refused by these.
INT8_TOLERANCE = (2.0, 0.08)
INT8_BIAS = 0.02  # |mean(int8 - torch)| on a probe: quantization error is unbiased (measured <= 0.0037)
INT8_RECIPE = 2  # part of the int8 cache key: bump when the quantization recipe changes
QUANTIZED_OPS = ["Conv", "Gemm"]
# a model -> the denoiser's inputs to calibrate int8 on (engine/calibration.py: a short dream of its game)
Calibrate = Callable[["WorldModel"], list[tuple[torch.Tensor, ...]]]


def _quantize(model: WorldModel, blobs: dict[str, bytes], calibrate: Calibrate | None) -> dict[str, bytes]:
    """The fp32 export with its denoiser statically quantized to int8 (see the module docstring),
    calibrated on ``calibrate(model)``; the decoder stays as it is."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as e:
        raise WorldgameError("precision=int8 needs onnxruntime's quantization tools (pip install 'onnxruntime>=1.17' "
                             "onnx), or use precision=fp32") from e
    if calibrate is None:
        raise WorldgameError("precision=int8 needs calibration inputs to quantize (the engine's attach, "
                             "engine/calibration.py, hands them in), or use precision=fp32")
    print("calibrating and quantizing to int8 (first run only, ~15-30 s) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    denoised = calibrate(model)

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
