"""The fast path: inference backends for play and bench, ``torch`` (the modules; traced on CPU) or
``onnx`` (ONNX Runtime on the CPU for the denoiser and the VAE decoder; encoding, done only at reset
and re-sync, stays on torch), at ``precision`` fp32 or int8.

The engine calls :func:`attach` once (through engine/calibration.py, which hands in the int8
calibration dream: models/ never imports the engine). One concern a file, each importing only the
ones listed after it:

* choice.py: :func:`attach`, the auto/onnx/torch and precision decision and its fallbacks; the
  chance prior and the dream's heads on ONNX Runtime beside the denoiser;
* runner.py: :class:`OnnxRunner`, its sessions through IO binding, and the check of every load
  against torch on random probes;
* cache.py: the untrusted on-disk cache of the exports (private folders, bounded reads, sha256
  manifests), keyed by the weights;
* int8.py: the int8 recipe, static quantization of the denoiser's export;
* export.py: the parts a model exports as, their inputs, and the ONNX export itself.

This package re-exports the names its callers and tests use. A test that patches a function does it
where that function is looked up (``_export`` and ``_quantize``: in runner.py)."""

from worldgame.models.backends.cache import cache_dir, weights_key
from worldgame.models.backends.choice import (
    BACKENDS,
    DEFAULT_PRECISION,
    PRECISIONS,
    _each,
    accelerate_heads,
    attach,
)
from worldgame.models.backends.export import (
    CONTEXT_INPUTS,
    DENOISER_INPUTS,
    FORMAT,
    OPSET,
    PARTS,
    SPLIT_PARTS,
    _export,
    _probe,
)
from worldgame.models.backends.int8 import (
    INT8_BIAS,
    INT8_RECIPE,
    INT8_TOLERANCE,
    QUANTIZED_OPS,
    Calibrate,
    _quantize,
)
from worldgame.models.backends.runner import (
    CHECK_PROBES,
    CHECK_TOLERANCE,
    OnnxRunner,
    _fresh_export,
    _HeadRunner,
    _random_probe,
)

# the public names, and the private ones the tests call (a patch goes where the name is looked up)
__all__ = [
    "BACKENDS",
    "CHECK_PROBES",
    "CHECK_TOLERANCE",
    "CONTEXT_INPUTS",
    "DEFAULT_PRECISION",
    "DENOISER_INPUTS",
    "FORMAT",
    "INT8_BIAS",
    "INT8_RECIPE",
    "INT8_TOLERANCE",
    "OPSET",
    "PARTS",
    "PRECISIONS",
    "QUANTIZED_OPS",
    "SPLIT_PARTS",
    "Calibrate",
    "OnnxRunner",
    "_HeadRunner",
    "_each",
    "_export",
    "_fresh_export",
    "_probe",
    "_quantize",
    "_random_probe",
    "accelerate_heads",
    "attach",
    "cache_dir",
    "weights_key",
]
