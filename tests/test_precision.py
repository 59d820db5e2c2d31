"""precision=int8 (models/backends.py): ONNX Runtime static quantization of the export, calibrated on
a short dream of the game, cached under its own key, checked against torch like the fp32 export.

Real code paths: a tiny untrained checkpoint of the built-in game, real onnxruntime quantization;
the cache goes to a temporary XDG_CACHE_HOME.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import onnx
import pytest
import torch

from worldgame.engine.model_engine import ModelEngine
from worldgame.errors import WorldgameError
from worldgame.models import WorldModel, backends
from worldgame.models.sampler import Sampler

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(backends, "CALIBRATION", (2, 6))  # a shorter calibration dream: the path, not the figures
    return tmp_path / "xdg" / "worldgame" / "onnx"


@pytest.fixture
def quantized(monkeypatch):
    """Counts the int8 exports made (calibration + quantization)."""
    made = []
    real = backends._quantize
    monkeypatch.setattr(backends, "_quantize", lambda *a: made.append(1) or real(*a))
    return made


def _load(path) -> WorldModel:
    return WorldModel.from_pretrained(path, device="cpu")


def _probe(model, seed=3, t=500):
    g = torch.Generator().manual_seed(seed)
    z, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 2, 4, 16, 16, generator=g)
    return z, torch.tensor([t]), ctx, torch.tensor([[1, 5]]), torch.full((1,), 0.05)


def test_int8_export_is_quantized_and_matches_fp32_within_its_tolerance(tiny_checkpoint, cache):
    model = _load(tiny_checkpoint)
    fp32, int8 = backends.OnnxRunner(model, 1, "fp32"), backends.OnnxRunner(model, 1, "int8")
    assert int8.precision == "int8" and 0 < int8.max_abs_diff <= backends.INT8_TOLERANCE[0]
    folder = backends.cache_dir(backends.weights_key(model, "int8"))
    # the denoiser: int8 weights behind QDQ pairs, its first and last convolutions left fp32
    graph = onnx.load_from_string((folder / "denoiser.onnx").read_bytes()).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert all(n.input[1] in {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
               for n in (convs[0], convs[-1]))
    decoder = onnx.load_from_string((folder / "decoder.onnx").read_bytes()).graph  # the decoder: fp32
    assert "QuantizeLinear" not in {n.op_type for n in decoder.node}
    with torch.inference_mode():
        for t in (999, 500, 19):
            args = _probe(model, t, t)
            a, b = int8.denoise(*args).clone(), fp32.denoise(*args).clone()
            assert 0 < (a - b).abs().mean() <= backends.INT8_TOLERANCE[1]
            a, b = int8.decode(args[0]).clone(), fp32.decode(args[0]).clone()
            assert (a - b).abs().max() <= backends.CHECK_TOLERANCE
        # eval's any-batch path: a batch is the batch-1 session run on each sample
        each = backends._each(int8.denoise)
        batch = [torch.cat([p[i] for p in (_probe(model, s) for s in (1, 2, 3))]) for i in range(5)]
        got = each(*batch)
        for i in range(3):
            assert torch.equal(got[i : i + 1], int8.denoise(*(x[i : i + 1] for x in batch)))


def test_engine_plays_int8_and_records_it(tiny_checkpoint):
    engine = ModelEngine(_load(tiny_checkpoint), seed=1, backend="onnx", precision="int8")
    assert engine.backend == "onnx" and engine.dream.sampler.precision == "int8"
    engine.reset(1)
    for action in (4, 4, 1):
        frame = engine.step(action).frame
        assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
    assert ModelEngine(_load(tiny_checkpoint), backend="onnx", precision="fp32").dream.sampler.precision == "fp32"


def test_cache_key_has_the_precision_and_a_tampered_int8_file_is_made_again(tiny_checkpoint, cache, quantized, capfd):
    model = _load(tiny_checkpoint)
    keys = {p: backends.weights_key(model, p) for p in backends.PRECISIONS}
    assert len(set(keys.values())) == len(keys)  # an int8 file never answers for fp32, nor the other way
    assert backends.attach(Sampler(model), "onnx", precision="int8") == "onnx" and len(quantized) == 1
    folder = backends.cache_dir(keys["int8"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["weights_sha256"] == keys["int8"]
    assert backends.attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8") == "onnx"
    assert len(quantized) == 1  # loaded from the cache

    good = (folder / "denoiser.onnx").read_bytes()
    (folder / "denoiser.onnx").write_bytes(good[:-64] + bytes(64))  # damaged or tampered: never used
    capfd.readouterr()
    assert backends.attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8") == "onnx"
    assert "does not match its recorded sha256" in capfd.readouterr().err and len(quantized) == 2
    assert hashlib.sha256((folder / "denoiser.onnx").read_bytes()).hexdigest() == \
        json.loads((folder / "manifest.json").read_text())["sha256"]["denoiser.onnx"]

    # consistent with its manifest but another model's (here: the fp32 decoder of other weights):
    # the check against torch rejects it, and it is made again
    other = _load(tiny_checkpoint)
    with torch.no_grad():
        for p in other.vae.decoder.parameters():
            p.mul_(-1.5)
    foreign = backends._fresh_export(other)["decoder.onnx"]
    (folder / "decoder.onnx").write_bytes(foreign)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"]["decoder.onnx"] = hashlib.sha256(foreign).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    capfd.readouterr()
    assert backends.attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8") == "onnx"
    err = capfd.readouterr().err
    assert "cached ONNX export rejected" in err and "export differs from torch" in err and len(quantized) == 3
    assert (folder / "decoder.onnx").read_bytes() != foreign


def test_bad_precision_settings_say_what_to_do(tiny_checkpoint, monkeypatch, capfd):
    with pytest.raises(WorldgameError, match=r"precision=int8 runs on ONNX Runtime only: use backend=onnx"):
        backends.attach(Sampler(_load(tiny_checkpoint)), "torch", precision="int8")
    with pytest.raises(WorldgameError, match=r"precision='bf16': choose one of fp32, int8"):
        backends.attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="bf16")
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # an onnxruntime without its quantization tools
    with pytest.raises(WorldgameError, match=r"precision=int8 needs onnxruntime's quantization tools"):
        backends.attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8")
    sampler = Sampler(_load(tiny_checkpoint))
    assert backends.attach(sampler, "auto", precision="int8") == "onnx" and sampler.precision == "fp32"
    assert "precision=int8" in capfd.readouterr().err  # auto: one note, then the fp32 export


def test_bench_reports_the_precision_and_int8_on_torch_is_one_line(tiny_checkpoint, run_cli):
    r = run_cli("bench", f"checkpoint={tiny_checkpoint}", "steps=[1]", "frames=3", "warmup=1", "precision=int8")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(res["backend"], res["precision"]) for res in report["results"]] == [("onnx", "int8")]
    r = run_cli("bench", f"checkpoint={tiny_checkpoint}", "backend=torch", "precision=int8")
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "precision=int8 runs on ONNX Runtime only" in r.stderr
