"""precision=int8 (models/backends/): ONNX Runtime static quantization of the export, calibrated on
a short dream of the game (engine/calibration.py, handed to the fast path by the engine's attach), cached under its own key, checked against torch like the fp32 export.

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

from worldgame.engine import calibration
from worldgame.engine.calibration import attach, calibration_inputs
from worldgame.engine.model_engine import ModelEngine
from worldgame.errors import WorldgameError
from worldgame.models import WorldModel, backends
from worldgame.models.sampler import Sampler

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(calibration, "CALIBRATION", (2, 6))  # a shorter calibration dream: the path, not the figures
    return tmp_path / "xdg" / "worldgame" / "onnx"


@pytest.fixture
def quantized(monkeypatch):
    """Counts the int8 exports made (calibration + quantization)."""
    made = []
    real = backends._quantize
    monkeypatch.setattr(backends.runner, "_quantize", lambda *a: made.append(1) or real(*a))
    return made


def _load(path) -> WorldModel:
    return WorldModel.from_pretrained(path, device="cpu")


def _probe(model, seed=3, t=500):
    g = torch.Generator().manual_seed(seed)
    z, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 2, 4, 16, 16, generator=g)
    return z, torch.tensor([t]), ctx, torch.tensor([[1, 5]]), torch.full((1,), 0.05)


def test_int8_export_is_quantized_and_matches_fp32_within_its_tolerance(tiny_checkpoint, cache):
    model = _load(tiny_checkpoint)
    fp32, int8 = backends.OnnxRunner(model, 1, "fp32"), backends.OnnxRunner(model, 1, "int8", calibration_inputs)
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
    assert attach(Sampler(model), "onnx", precision="int8") == "onnx" and len(quantized) == 1
    folder = backends.cache_dir(keys["int8"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["weights_sha256"] == keys["int8"]
    assert attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8") == "onnx"
    assert len(quantized) == 1  # loaded from the cache

    good = (folder / "denoiser.onnx").read_bytes()
    (folder / "denoiser.onnx").write_bytes(good[:-64] + bytes(64))  # damaged or tampered: never used
    capfd.readouterr()
    assert attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8") == "onnx"
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
    assert attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8") == "onnx"
    err = capfd.readouterr().err
    assert "cached ONNX export rejected" in err and "export differs from torch" in err and len(quantized) == 3
    assert (folder / "decoder.onnx").read_bytes() != foreign


def test_bad_precision_settings_say_what_to_do(tiny_checkpoint, monkeypatch, capfd):
    with pytest.raises(WorldgameError, match=r"precision=int8 runs on ONNX Runtime only: use backend=onnx"):
        attach(Sampler(_load(tiny_checkpoint)), "torch", precision="int8")
    with pytest.raises(WorldgameError, match=r"precision='bf16': choose one of fp32, int8"):
        attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="bf16")
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # an onnxruntime without its quantization tools
    with pytest.raises(WorldgameError, match=r"precision=int8 needs onnxruntime's quantization tools"):
        attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8")
    sampler = Sampler(_load(tiny_checkpoint))
    assert attach(sampler, "auto", precision="int8") == "onnx" and sampler.precision == "fp32"
    assert "precision=int8" in capfd.readouterr().err  # auto: one note, then the fp32 export


def test_bench_reports_the_precision_and_int8_on_torch_is_one_line(tiny_checkpoint, run_cli_batch):
    r, torch_int8 = run_cli_batch(
        ["bench", f"checkpoint={tiny_checkpoint}", "steps=[1]", "frames=3", "warmup=1", "precision=int8"],
        ["bench", f"checkpoint={tiny_checkpoint}", "backend=torch", "precision=int8"])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(res["backend"], res["precision"]) for res in report["results"]] == [("onnx", "int8")]
    r = torch_int8
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "precision=int8 runs on ONNX Runtime only" in r.stderr


def test_the_fast_path_quantizes_only_on_the_calibration_its_caller_hands_it(tiny_checkpoint, capfd):
    """models/ never imports the engine: backends.attach without ``calibrate`` cannot make an int8
    export (onnx: one line; auto: the fp32 export), and the engine's attach hands the dream in."""
    with pytest.raises(WorldgameError, match=r"precision=int8 needs calibration inputs"):
        backends.attach(Sampler(_load(tiny_checkpoint)), "onnx", precision="int8")
    sampler = Sampler(_load(tiny_checkpoint))
    assert backends.attach(sampler, "auto", precision="int8") == "onnx" and sampler.precision == "fp32"
    assert "needs calibration inputs" in capfd.readouterr().err
    inputs = calibration_inputs(_load(tiny_checkpoint))  # CALIBRATION (2, 6): 2 dreams of 6 frames, 1 then 2 steps
    assert len(inputs) == 6 * 1 + 6 * 2 and all(len(x) == len(backends.DENOISER_INPUTS) for x in inputs)


def _tampered(blob: bytes, kind: str) -> bytes:
    """The genuine int8 denoiser graph with its output changed: ``bias`` adds 0.09 everywhere;
    ``trigger`` adds 5 only when every context action is FIRE (5) -- right on any other input."""
    from onnx import TensorProto, helper

    model = onnx.load_from_string(blob)
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:  # the producer of the output now writes a raw tensor
        node.output[:] = [f"{out}_raw" if o == out else o for o in node.output]
    if kind == "bias":
        graph.initializer.append(helper.make_tensor("evil_c", TensorProto.FLOAT, [], [0.09]))
        graph.node.append(helper.make_node("Add", [f"{out}_raw", "evil_c"], [out]))
    else:
        graph.initializer.extend([helper.make_tensor("fire", TensorProto.INT64, [], [5]),
                                  helper.make_tensor("five", TensorProto.FLOAT, [], [5.0])])
        graph.node.extend([
            helper.make_node("Equal", ["actions", "fire"], ["is_fire"]),
            helper.make_node("Cast", ["is_fire"], ["is_fire_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMin", ["is_fire_f"], ["all_fire"], keepdims=0),
            helper.make_node("Mul", ["all_fire", "five"], ["evil"]),
            helper.make_node("Add", [f"{out}_raw", "evil"], [out]),
        ])
    return model.SerializeToString()


@pytest.mark.parametrize("kind", ["bias", "trigger", "fp32_under_the_int8_key"])
def test_a_tampered_int8_cache_entry_is_refused_and_made_again(tiny_checkpoint, cache, capfd, kind):
    """Issue 33 item 5: the int8 check compares every action held over the context, the error's
    bias, and that the graph is quantized at all; each tampered entry is rejected and rebuilt."""
    model = _load(tiny_checkpoint)
    backends.OnnxRunner(model, 1, "int8", calibration_inputs)  # a genuine entry
    folder = backends.cache_dir(backends.weights_key(model, "int8"))
    genuine = (folder / "denoiser.onnx").read_bytes()
    if kind == "fp32_under_the_int8_key":
        backends.OnnxRunner(model, 1, "fp32")
        bad = (backends.cache_dir(backends.weights_key(model, "fp32")) / "denoiser.onnx").read_bytes()
    else:
        bad = _tampered(genuine, kind)
    (folder / "denoiser.onnx").write_bytes(bad)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"]["denoiser.onnx"] = hashlib.sha256(bad).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    capfd.readouterr()
    runner = backends.OnnxRunner(model, 1, "int8", calibration_inputs)
    err = capfd.readouterr().err
    assert "cached ONNX export rejected" in err, err
    assert ("not quantized" if kind.startswith("fp32") else "differs from torch") in err, err
    assert (folder / "denoiser.onnx").read_bytes() != bad and runner.precision == "int8"
