"""The chance code's contract (issue 30): a game where after each step one object appears at one of
two places by a fair draw. Without the code a 1-step sample draws the blend (both places part-lit);
with it every sampled frame shows exactly one whole object, and each place is chosen about half the
time. Trained for real (a tiny denoiser and chance code, the teacher stage's loss pieces), sampled
through play's own Sampler (the prior's draw, then one LCM step)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from worldgame.errors import WorldgameError
from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel
from worldgame.models.chance import ChanceCode, diversity_loss, draw, rate, straight_through, usage
from worldgame.models.sampler import Sampler
from worldgame.models.schedulers import train_scheduler

C, S, K, N_ACTIONS = 4, 8, 1, 2
PLACES = ((slice(0, 3), slice(0, 3)), (slice(5, 8), slice(5, 8)))  # the two 3x3 places an object can take
DRAWS = 256


def _batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context: an empty field (K frames); target: one object at a place chosen by a fair coin."""
    context = torch.zeros(n, K, C, S, S) - 1
    target = torch.zeros(n, C, S, S) - 1
    place = torch.randint(0, 2, (n,), generator=gen)
    for i, p in enumerate(place.tolist()):
        target[i, :, PLACES[p][0], PLACES[p][1]] = 1
    return context, torch.zeros(n, K, dtype=torch.long), target


def _train(with_code: bool | str, steps: int = 300) -> WorldModel:
    """with_code: False (none), True (the code as a vector beside the actions) or "map" (its map too)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    groups = 1 if with_code else 0
    net = ActionDenoiser(num_actions=N_ACTIONS, context_length=K, latent_channels=C, latent_size=S,
                         block_out_channels=(16, 16), action_dim=8, norm_num_groups=8,
                         chance_groups=groups, chance_values=4, chance_map=2 if with_code == "map" else 0)
    chance = ChanceCode(N_ACTIONS, K, C, S, groups=1, values=4, width=8, hidden=32) if with_code else None
    params = list(net.parameters()) + (list(chance.parameters()) if chance is not None else [])
    opt = torch.optim.AdamW(params, lr=2e-3)
    noise = train_scheduler("sample")
    for _ in range(steps):
        context, actions, z0 = _batch(32, gen)
        t = torch.randint(0, 1000, (32,), generator=gen)
        zt = noise.add_noise(z0, torch.randn(z0.shape, generator=gen), t)
        code, prior_loss = None, 0.0
        if chance is not None:  # the teacher stage's pieces (train/teacher.py)
            posterior = chance.posterior(context, actions, z0)
            code = straight_through(posterior, gen, noise=False)  # the stage's default: the posterior's likeliest value
            prior_loss = F.cross_entropy(chance.prior(context, actions).flatten(0, 1), code.argmax(-1).flatten())
        loss = (net(zt, t, context, actions, torch.zeros(32), code) - z0).square().mean() + prior_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = {"game": "two_places", "frame_size": 32, "action_names": ["NOOP", "FIRE"], "context_noise": 0.0,
            "prediction_type": "sample", "context_length": K}
    vae = TinyAutoencoder(latent_channels=C, width=8, encoder_blocks=1, decoder_blocks=1)
    return WorldModel(vae, net, meta, chance=chance)


@pytest.fixture(scope="module")
def models() -> dict[bool, WorldModel]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~10 s for both; two threads beside anything else stall for minutes
    try:
        return {False: _train(False), True: _train(True), "map": _train("map")}
    finally:
        torch.set_num_threads(threads)


def _sample(model: WorldModel, temperature: float = 1.0) -> tuple[torch.Tensor, Sampler]:
    """DRAWS one-step samples from the empty field, each with its own generator state; (n, 2) the
    mean brightness at each place, in [0, 1]."""
    sampler = Sampler(model, "lcm")
    sampler.chance_temperature = temperature
    context, actions, _ = _batch(DRAWS, torch.Generator().manual_seed(1))
    z = sampler.step(context, actions, steps=1, generator=torch.Generator().manual_seed(2))
    lit = torch.stack([z[:, :, r, c].mean((1, 2, 3)) for r, c in PLACES], 1)
    return ((lit + 1) / 2).clamp(0, 1), sampler


def _clean(lit: torch.Tensor) -> torch.Tensor:
    """Per sample: one place whole (> 0.8) and the other empty (< 0.2)."""
    return (lit.max(1).values > 0.8) & (lit.min(1).values < 0.2)


def test_without_the_code_one_step_draws_the_blend(models) -> None:
    """The mean of the two outcomes: both places part-lit in many frames (measured 50 %; the start
    noise tilts the rest one way or the other), one clean object in few (measured 36 %)."""
    lit, _ = _sample(models[False])
    both_part_lit = ((lit > 0.2) & (lit < 0.8)).all(1).float().mean()
    assert both_part_lit > 0.3, lit[:4]
    assert _clean(lit).float().mean() < 0.6


@pytest.mark.parametrize("code", [True, "map"], ids=["vector", "map"])
def test_with_the_code_each_frame_shows_one_whole_object_at_fair_odds(models, code) -> None:
    lit, sampler = _sample(models[code])
    assert _clean(lit).all(), lit[~_clean(lit)][:4]  # measured: 256 of 256
    first = (lit[:, 0] > lit[:, 1]).float().mean()
    assert 0.35 <= first <= 0.65, first
    assert sampler.last_code.shape == (DRAWS, 1)
    assert usage(sampler.last_code, 4)[0] > 1.5  # the code is alive: more than one value drawn


def test_temperature_zero_takes_the_most_likely_code(models) -> None:
    model = models[True]
    context, actions, _ = _batch(8, torch.Generator().manual_seed(3))
    logits = model.chance.prior(context, actions)
    sampler = Sampler(model, "lcm")
    sampler.chance_temperature = 0.0
    sampler.step(context, actions, steps=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sampler.last_code, logits.argmax(-1))
    g0, g1 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    draw(logits, g0, 0.0)
    draw(logits, g1, 1.0)
    assert torch.equal(g0.get_state(), g1.get_state())  # the temperature never shifts the sampling noise after it


def test_a_forced_code_replaces_the_draw_and_keeps_the_generator_in_step(models) -> None:
    """What a recorded session's regeneration relies on."""
    model = models[True]
    context, actions, _ = _batch(1, torch.Generator().manual_seed(6))
    sampler = Sampler(model, "lcm")
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    sampler.step(context, actions, steps=1, generator=g1)
    drawn = sampler.last_code.clone()
    other = (drawn + 1) % 4
    sampler.force_code(other)
    sampler.step(context, actions, steps=1, generator=g2)
    assert torch.equal(sampler.last_code, other)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_a_mismatched_chance_part_is_one_line(tmp_path, models) -> None:
    model = models[True]
    bad = ChanceCode(N_ACTIONS, K, C, S, groups=2, values=4, width=8, hidden=32)
    broken = WorldModel(model.vae, model.denoiser, {**model.metadata, "game_config": {}}, chance=bad)
    from worldgame.models.checkpoint_checks import check_chance

    with pytest.raises(WorldgameError, match="mixes parts"):
        check_chance(tmp_path / "worldgame.json", broken.denoiser, broken.chance)
    with pytest.raises(WorldgameError, match="no chance/"):
        check_chance(tmp_path / "worldgame.json", model.denoiser, None)


# --- a checkpoint with a code, through the commands a user runs ---------------------------------------

def test_a_session_with_drawn_codes_regenerates_bit_identically(tmp_path, run_cli, tiny_chance_checkpoint) -> None:
    """`play record=true` records each frame's code (the ``chance`` column); `replay regenerate=true`
    forces the recorded codes and reproduces every frame."""
    import json

    from worldgame.data.episode import read_episode

    r = run_cli("play", f"checkpoint={tiny_chance_checkpoint}", "fps=0", "frames=20", "record=true",
                f"sessions={tmp_path / 'sessions'}", "seed=1", timeout=300)
    assert r.returncode == 0, r.stderr
    (session,) = (tmp_path / "sessions").glob("*.wgep")
    codes = read_episode(session).timings_ms["chance"][1:]
    assert len(set(codes.tolist())) > 1 and (codes == codes.round()).all()  # drawn, not one code for all
    r = run_cli("replay", f"path={session}", "regenerate=true", "device=cpu", timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["identical"] and result["max_abs_diff"] == 0


@pytest.fixture(scope="module")
def tiny_where_checkpoint(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint with a 3 x 16 ``where`` code (an event group, then a place) whose prior
    draws an event about half the time, so that the place drawn only with an event is exercised."""
    torch.manual_seed(2)
    base = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    n = len(base.action_names)
    denoiser = ActionDenoiser(num_actions=n, context_length=2, block_out_channels=(16, 16), norm_num_groups=8,
                              chance_groups=3, chance_values=16, chance_map=2)
    chance = ChanceCode(n, context_length=2, groups=3, values=16, width=8, hidden=32, event_group=True,
                        prior_net="local", prior_chain=True, posterior_net="where")
    for p in chance.parameters():
        p.data.mul_(4)
    with torch.no_grad():
        chance.prior_event.head[-1].weight.zero_()
        chance.prior_event.head[-1].bias.copy_(torch.tensor([1.0] + [-1.0] * 5 + [0.0] * 10))
    path = tmp_path_factory.mktemp("checkpoints") / "tiny_where"
    WorldModel(base.vae, denoiser, dict(base.metadata), chance=chance).save_pretrained(path)
    return path


@pytest.mark.parametrize(("checkpoint", "net"), [("tiny_chance_checkpoint", "flat"), ("tiny_events_checkpoint", "local"),
                                                 ("tiny_where_checkpoint", "local")])
def test_the_prior_on_onnx_equals_torch(request, checkpoint, net) -> None:
    """The prior's draw (its forward: logits, Gumbel noise and temperature in, the code out; the
    chained prior's groups one after another; a ``where`` code's place only with an event) on ONNX
    Runtime draws the codes torch draws."""
    from worldgame.models.backends import attach
    from worldgame.models.chance import code_noise

    model = WorldModel.from_pretrained(request.getfixturevalue(checkpoint), device="cpu")
    assert model.chance.config.prior_net == net and model.chance.chained == (net == "local")
    sampler = Sampler(model)
    assert attach(sampler, "onnx", threads=1) == "onnx"
    prior = sampler._prior_fast[1]
    g = torch.Generator().manual_seed(0)
    drawn = set()
    with torch.inference_mode():
        for i in range(48):
            context = torch.randn(1, 2, 4, 16, 16, generator=g)
            actions = torch.randint(0, len(model.action_names), (1, 2), generator=g)
            noise, t = code_noise(model.chance, 1, g), torch.tensor((0.0, 1.0, 3.0)[i % 3])
            code = model.chance(context, actions, noise, t)
            assert torch.equal(prior(context, actions, noise, t), code)
            drawn.add(tuple(code[0].tolist()))
    assert len(drawn) > 4  # the draws differ: the comparison is not of one constant code
    if model.chance.draws_in_two:  # the place's graph run and skipped: frames with an event and without
        assert type(prior).__name__ == "_TwoStageDraw" and {c[0] > 0 for c in drawn} == {True, False}
    # and the dream draws through it: the same code as the torch prior from the same generator state
    torch_sampler = Sampler(model)
    for s in (sampler, torch_sampler):
        s.step(context, actions, steps=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sampler.last_code, torch_sampler.last_code)


def test_a_denoiser_with_a_code_but_no_chance_part_is_one_line(tmp_path, run_cli, tiny_chance_checkpoint) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_chance_checkpoint, broken)
    shutil.rmtree(broken / "chance")
    r = run_cli("play", f"checkpoint={broken}", "fps=0", "frames=2", timeout=300)
    assert r.returncode != 0
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert "no chance/" in lines[-1] and "Traceback" not in r.stderr


@pytest.mark.parametrize("damage", ["nan", "class", "shape", "net", "chain", "where", "posterior"])
def test_a_crafted_chance_part_is_one_line(tmp_path, run_cli, tiny_chance_checkpoint, damage) -> None:
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_chance_checkpoint, broken)
    part = broken / "chance"
    if damage == "nan":
        (weights,) = part.glob("*.safetensors")
        tensors = load_file(weights)
        first = next(iter(tensors))
        tensors[first] = torch.full_like(tensors[first], float("nan"))
        save_file(tensors, weights)
    else:
        config = json.loads((part / "config.json").read_text())
        config.update({"class": {"_class_name": "os.system"}, "shape": {"width": 4096},
                       "net": {"prior_net": "os.system"},
                       "chain": {"prior_chain": True},  # a chain the flat net cannot draw
                       "where": {"posterior_net": "where"},  # a place its 2 x 4 code cannot name
                       "posterior": {"posterior_net": "os.system"}}[damage])
        (part / "config.json").write_text(json.dumps(config))
    r = run_cli("play", f"checkpoint={broken}", "fps=0", "frames=2", timeout=300)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "chance" in r.stderr.strip().splitlines()[-1], r.stderr


def test_the_rate_is_what_the_posterior_says_beyond_the_prior() -> None:
    """KL(posterior || prior) per frame: 0 where they agree, log V for a sure code the prior thinks
    uniform, and its gradient reaches the posterior only (the prior learns from its own loss)."""
    sure = torch.full((2, 1, 4), -30.0)
    sure[:, 0, 1] = 30.0
    prior = torch.zeros(2, 1, 4, requires_grad=True)
    assert rate(sure, sure).item() == pytest.approx(0.0, abs=1e-6)
    assert rate(sure, prior).item() == pytest.approx(math.log(4), abs=1e-4)
    posterior, leaning = torch.zeros(2, 1, 4, requires_grad=True), torch.tensor([2.0, 0, 0, 0]).repeat(2, 1, 1)
    rate(posterior, leaning.requires_grad_()).backward()
    assert leaning.grad is None and posterior.grad.abs().sum() > 0


def test_the_diversity_loss_is_zero_when_every_value_is_used_and_largest_for_one() -> None:
    even = torch.zeros(4, 2, 4)  # a flat posterior: the batch's mean uses every value
    one = torch.full((4, 2, 4), -30.0)
    one[..., 0] = 30.0  # every frame the same value: a dead code
    assert diversity_loss(even) < 1e-6 and diversity_loss(one) > 1.3  # log 4 = 1.39


def test_a_teacher_without_a_code_warm_starts_one_with_it(tiny_checkpoint, tmp_path):
    """train.teacher.init from a code-less teacher: every shared weight copied, the code's columns of
    cond_proj zero, so at step 0 the coded model predicts exactly what the old one did, whatever the
    code (issue 30's warm start); a differently shaped model is still refused."""
    import shutil

    from worldgame.train.teacher import _init_weights

    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    shutil.copytree(folder / "denoiser", folder / "teacher")
    old = WorldModel.from_pretrained(folder, device="cpu", teacher=True).teacher
    shape = {k: v for k, v in old.config.items() if not k.startswith(("_", "chance_"))}
    coded = _init_weights(folder, ActionDenoiser(**shape, chance_groups=2, chance_values=4, chance_dim=8, chance_map=2))
    assert coded.unet.conv_in.weight[:, -2:].abs().sum() == 0  # the map's input channels start silent
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 2, 4, 16, 16, generator=g)
    actions, t, noise = torch.randint(0, 6, (3, 2), generator=g), torch.tensor([10, 500, 900]), torch.full((3,), 0.05)
    with torch.no_grad():
        want = old(x, t, ctx, actions, noise)
        for code in ([0, 0], [3, 1]):
            got = coded(x, t, ctx, torch.cat([actions, torch.tensor([code] * 3)], 1), noise)
            assert torch.equal(got, want)
    wider = {**shape, "action_dim": shape["action_dim"] * 2}
    with pytest.raises(WorldgameError, match="another shape"):
        _init_weights(folder, ActionDenoiser(**wider, chance_groups=2, chance_values=4, chance_dim=8))


def test_a_continued_teacher_keeps_its_posterior_and_a_new_prior_net_starts_afresh(tmp_path) -> None:
    """train.teacher.init from a teacher with a code: the posterior continues (the denoiser reads the
    codes it names), the prior too if it is the same net, a prior of another net starts afresh; a
    code of another shape is refused in one line."""
    from worldgame.models.chance import ChanceCode
    from worldgame.train.teacher import _init_chance

    shape = {"num_actions": 3, "context_length": 2, "groups": 2, "values": 8, "width": 8, "hidden": 32, "event_group": True}
    torch.manual_seed(0)
    ChanceCode(**shape).save_pretrained(tmp_path / "chance")  # flat: what a config without prior_net means
    old = ChanceCode.from_pretrained(tmp_path / "chance")
    for net in ("flat", "local"):
        torch.manual_seed(1)
        new = ChanceCode(**shape, prior_net=net)
        fresh = {k: v.clone() for k, v in new.state_dict().items()}
        _init_chance(tmp_path, new)
        for name, value in new.state_dict().items():
            kept = name.startswith("posterior") or net == "flat"
            assert torch.equal(value, old.state_dict()[name] if kept else fresh[name]), (net, name)
    # a chained prior continues an unchained one of its net: every weight it shares, the new ones at zero
    new.save_pretrained(tmp_path / "chance")
    chained = ChanceCode(**shape, prior_net="local", prior_chain=True)
    _init_chance(tmp_path, chained)
    for name, value in chained.state_dict().items():
        want = new.state_dict().get(name, torch.zeros_like(value))
        assert torch.equal(value, want), name
    assert {"prior_learnt.given.weight"} <= set(chained.state_dict()) - set(new.state_dict())
    with pytest.raises(WorldgameError, match="another code"):
        _init_chance(tmp_path, ChanceCode(**{**shape, "values": 16}))
