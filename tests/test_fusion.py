"""φ-decay fusion: the maths, the window, off = identity, and the model's context never fused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from worldgame.engine.fusion import PHI, FusionMode, TemporalFusion, decay_weights


def test_weights_are_normalised_phi_decay():
    w = decay_weights(4)
    assert len(w) == 5 and sum(w) == pytest.approx(1.0)
    for a, b in itertools.pairwise(w):
        assert a / b == pytest.approx(PHI)
    assert decay_weights(4, available=2) == pytest.approx([PHI / (PHI + 1), 1 / (PHI + 1)])
    assert decay_weights(3, base=2.0) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])
    with pytest.raises(ValueError):
        decay_weights(-1)


def test_fusion_matches_formula_over_the_window():
    fusion = TemporalFusion(window=2, base=PHI)
    xs = [torch.full((2, 3), float(v)) for v in (1.0, 5.0, -2.0, 7.0, 0.5)]
    for t, x in enumerate(xs):
        before = x.clone()
        y = fusion(x)
        torch.testing.assert_close(x, before)  # the input is never modified
        past = xs[max(0, t - 2) : t + 1][::-1]  # newest first, at most N + 1 = 3 frames
        raw = [PHI ** (-i) for i in range(len(past))]
        expected = sum(r * p for r, p in zip(raw, past)) / sum(raw)
        torch.testing.assert_close(y, expected)
        assert fusion.weights == pytest.approx([r / sum(raw) for r in raw])
    fusion.reset()
    torch.testing.assert_close(fusion(xs[0]), xs[0])  # history forgotten


def test_window_zero_and_constant_input_are_identity():
    x = torch.randn(4, 16, 16)
    assert torch.equal(TemporalFusion(window=0)(x), x)
    fusion = TemporalFusion(window=4)
    for _ in range(7):
        torch.testing.assert_close(fusion(x), x)


def test_state_round_trip():
    a, b = TemporalFusion(window=3), TemporalFusion(window=3)
    for v in range(5):
        a(torch.full((3,), float(v)))
    b.load_state(a.state(), "cpu", torch.float32)
    x = torch.tensor([10.0, 11.0, 12.0])
    torch.testing.assert_close(a(x), b(x))


def test_mode_cycle_and_parse():
    assert [FusionMode.off.next(), FusionMode.pixel.next(), FusionMode.latent.next()] == [
        FusionMode.pixel, FusionMode.latent, FusionMode.off,
    ]
    assert FusionMode.parse("latent") is FusionMode.latent and FusionMode.parse(2) is FusionMode.pixel
    assert FusionMode.latent.label == "φ latent"


@pytest.mark.usefixtures("torch_one_thread")
def test_model_context_is_never_fused(tiny_checkpoint):
    """Same seed, fusion off vs latent vs pixel: the model's own context stays identical."""
    from worldgame.engine.model_engine import ModelEngine
    from worldgame.models import WorldModel

    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    engines = {m: ModelEngine(model, steps=2, fusion=m, seed=7) for m in ("off", "latent", "pixel")}
    shown = {m: [] for m in engines}
    for m, engine in engines.items():
        engine.reset(7)
        for a in [4, 4, 1, 1, 5, 0, 3, 2]:
            shown[m].append(engine.step(a).frame.copy())
    contexts = {m: e.dream.context.clone() for m, e in engines.items()}
    torch.testing.assert_close(contexts["off"], contexts["latent"], rtol=0, atol=0)
    torch.testing.assert_close(contexts["off"], contexts["pixel"], rtol=0, atol=0)
    # ... while what is shown differs once there is history to fuse
    assert not np.array_equal(shown["off"][-1], shown["latent"][-1])
    assert not np.array_equal(shown["off"][-1], shown["pixel"][-1])
    np.testing.assert_array_equal(shown["off"][0], shown["pixel"][0])  # one frame: nothing to fuse yet
