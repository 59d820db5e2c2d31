"""The play samplers (issue 17): prepared DDIM and DPM-Solver++ 2M plans mirror diffusers' schedulers bit
for bit and allocate nothing in a tick; sampler= and spacing= reach play, bench, eval and serve;
sessions record the sampler and regenerate bit-identically (old LCM sessions too); a checkpoint names
its own play default.

Real code paths: tiny untrained networks, the real diffusers schedulers as the reference, real
play loop, real session files.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hostile.batch import run_driver

from worldgame.engine.model_engine import ModelEngine
from worldgame.errors import WorldgameError
from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel
from worldgame.models.sampler import Sampler
from worldgame.models.schedulers import play_scheduler
from worldgame.models.world_model import scheduler_sample

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a private ONNX cache


def _model(prediction_type: str, dtype=torch.float32) -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(
        TinyAutoencoder(width=16, encoder_blocks=1, decoder_blocks=1),
        ActionDenoiser(num_actions=6, context_length=2, block_out_channels=(16, 16), norm_num_groups=8),
        metadata={"game": "bouncer", "game_config": {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
                  "frame_size": 64, "action_names": ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE"],
                  "context_noise": 0.05, "prediction_type": prediction_type},
        dtype=dtype,
    )


@pytest.mark.parametrize("sampler,spacing", [("ddim", "leading"), ("ddim", "trailing"), ("dpmsolver", "trailing"),
                                             ("dpmsolver", "linspace")])
@pytest.mark.parametrize("prediction_type", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_prepared_sampler_is_bit_identical_to_its_diffusers_scheduler(sampler, spacing, prediction_type, dtype):
    model = _model(prediction_type, dtype)
    prepared = Sampler(model, sampler, spacing)
    if dtype == torch.float32:
        prepared.trace(1)  # batch 1 through the traced graph, batch 3 eager
    for batch in (1, 3):
        context = torch.randn(batch, 2, 4, 16, 16).to(dtype)
        actions = torch.randint(0, 6, (batch, 2))
        for steps in (1, 2, 3, 4, 8):
            g_ref, g_new = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
            with torch.inference_mode():
                ref = scheduler_sample(model.denoiser, play_scheduler(sampler, spacing, prediction_type), context, actions,
                                       steps, g_ref, model.context_noise)
                assert torch.equal(model.reference_step(context, actions, steps, torch.Generator().manual_seed(7),
                                                        sampler, spacing), ref)
            seen: list[int] = []
            new = prepared.step(context, actions, steps, g_new, lambda i, d, seen=seen: seen.append(i))
            assert torch.equal(new, ref), (batch, steps)
            assert seen == list(range(steps))
            assert torch.equal(g_new.get_state(), g_ref.get_state())  # context noise and start latent only
    assert prepared.timesteps(4) == prepared.plan(4, context).timestep_values


@pytest.mark.parametrize("sampler", ["lcm", "ddim", "dpmsolver"])
def test_a_non_contiguous_context_samples_as_the_reference_loop(sampler):
    """Eval's contexts are views of the encoder's output: the context noise must land where the
    reference loop's ``randn(shape)`` puts it, whatever the context's strides."""
    model = _model("sample")
    context = torch.randn(3, 4, 16, 16, 2).permute(0, 4, 1, 2, 3)  # (B, K, C, h, w), not contiguous
    actions = torch.randint(0, 6, (3, 2))
    ref = model.reference_step(context, actions, 4, torch.Generator().manual_seed(2), sampler)
    assert not context.is_contiguous()
    assert torch.equal(Sampler(model, sampler).step(context, actions, 4, torch.Generator().manual_seed(2)), ref)


def test_samplers_differ_and_spacing_sets_the_timesteps():
    model = _model("sample")
    context, actions = torch.randn(1, 2, 4, 16, 16), torch.zeros(1, 2, dtype=torch.long)
    out = {}
    for sampler, spacing in [("lcm", None), ("ddim", "leading"), ("ddim", "trailing"), ("dpmsolver", None)]:
        out[sampler, spacing] = Sampler(model, sampler, spacing).step(context, actions, 4, torch.Generator().manual_seed(1))
    assert len({tuple(v.flatten()[:8].tolist()) for v in out.values()}) == 4
    assert Sampler(model, "ddim", "leading").timesteps(4) == [750, 500, 250, 0]
    assert Sampler(model, "ddim", "trailing").timesteps(4) == [999, 749, 499, 249]
    dpm = Sampler(model, "dpmsolver")  # its default spacing: trailing
    assert dpm.spacing == "trailing" and dpm.timesteps(4) == [999, 749, 499, 249]
    with pytest.raises(WorldgameError, match="spacing="):
        Sampler(model, "lcm", "trailing")
    with pytest.raises(WorldgameError, match="spacing="):
        Sampler(model, "ddim", "sideways")


@pytest.mark.parametrize("sampler", ["ddim", "dpmsolver"])
def test_a_tick_allocates_no_sampler_state(tiny_checkpoint, sampler):
    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    engine = ModelEngine(model, steps=4, backend="torch", sampler=sampler)
    engine.reset(0)
    prepared = engine.dream.sampler
    plans = dict(prepared._plans)
    assert prepared.name == sampler and {k[0] for k in plans} >= {1, 2, 4, 8}  # every key's plan prepared at start
    buffers = {k: (p.latents.data_ptr(), p.x0.data_ptr(), p.noise.data_ptr()) for k, p in plans.items()}
    for steps in (1, 2, 4, 8, 4):
        engine.set_steps(steps)
        engine.step(4)
    assert prepared._plans == plans
    assert {k: (p.latents.data_ptr(), p.x0.data_ptr(), p.noise.data_ptr()) for k, p in plans.items()} == buffers
    # and no tensor is made per step in float32: count allocations of the sampler's own ops
    plan = prepared.plan(4, engine.dream.context)
    out = torch.empty_like(plan.latents)
    made = []

    def net(z, t, c, a, n):  # a network that allocates nothing either: the plan's own ops are left
        return plan.tmp.mul_(0).add_(z)

    with torch.inference_mode(), _count_allocations(made):
        plan.sample(net, engine.dream.context, engine.dream.actions, torch.Generator().manual_seed(0), None, out)
    assert made == []


class _count_allocations(torch.overrides.TorchFunctionMode):
    """Records every torch function that returned a tensor not among its inputs' or ``out=`` storages."""

    def __init__(self, made: list) -> None:
        super().__init__()
        self.made = made

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        given = {a.untyped_storage().data_ptr() for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)}
        if isinstance(result, torch.Tensor) and result.dim() > 0 and result.untyped_storage().data_ptr() not in given:
            self.made.append(getattr(func, "__name__", str(func)))
        return result


@pytest.mark.parametrize("sampler,spacing", [("ddim", None), ("dpmsolver", "leading"), ("lcm", None)])
def test_a_session_records_its_sampler_and_regenerates_identically(tiny_checkpoint, play_config, tmp_path, sampler, spacing):
    from worldgame.commands.play import play
    from worldgame.data.episode import read_episode
    from worldgame.engine.session import regenerate
    from worldgame.frontend.controls import tap

    extra = [f"spacing={spacing}"] if spacing else []
    cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=0", "seed=3", "record=true", f"sessions={tmp_path}",
                      f"sampler={sampler}", *extra, "steps=2", "backend=torch")
    moves = [{"right"}] * 3 + [{"up", "space"}] * 2
    summary = play(cfg, script=moves + [tap("4")] + moves + [tap("8"), tap("f")] + moves + [tap("backspace")] + moves)
    (path,) = summary.sessions
    ep = read_episode(path)
    assert ep.metadata["sampler"] == sampler and ep.metadata["spacing"] == (spacing or {"ddim": "leading"}.get(sampler))
    assert regenerate(path, device="cpu")["identical"]


def test_an_old_session_without_a_sampler_regenerates_as_lcm(tiny_checkpoint, play_config, tmp_path, monkeypatch):
    """Sessions recorded before samplers were chosen carry no sampler: they were LCM, and stay so even
    when the checkpoint now names another play default."""
    from worldgame.commands import play as play_module
    from worldgame.data.episode import read_episode
    from worldgame.engine.session import regenerate

    def as_before(cfg, seed, kind="model", game=None):  # the metadata sessions had before this change
        engine, metadata = make_engine(cfg, seed, kind, game)
        assert metadata.pop("sampler") == "lcm" and metadata.pop("spacing") is None
        return engine, metadata

    make_engine = play_module.make_engine
    monkeypatch.setattr(play_module, "make_engine", as_before)
    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, checkpoint)
    cfg = play_config(f"checkpoint={checkpoint}", "fps=0", "seed=4", "record=true", f"sessions={tmp_path / 's'}",
                      "frames=12", "backend=torch")
    (path,) = play_module.play(cfg, script=[{"left"}] * 12).sessions
    assert "sampler" not in read_episode(path).metadata
    meta_file = checkpoint / "worldgame.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "play": {"sampler": "ddim", "spacing": "trailing"}}))
    assert Sampler(WorldModel.from_pretrained(checkpoint, device="cpu")).name == "ddim"  # the new default...
    result = regenerate(path, device="cpu")
    assert result["identical"] and result.get("checkpoint_changed") is None  # ...but the session replays with LCM


def test_the_checkpoint_names_its_play_default(tiny_checkpoint, tmp_path, play_config):
    from worldgame.commands.play import make_engine

    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, checkpoint)
    meta_file = checkpoint / "worldgame.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "play": {"sampler": "dpmsolver", "spacing": None, "steps": 2}}))
    prepared = Sampler(WorldModel.from_pretrained(checkpoint, device="cpu"))
    assert (prepared.name, prepared.spacing) == ("dpmsolver", "trailing")
    # its steps too: play's steps=null takes them, a steps= setting overrides them, and without them play runs 4
    for args, want in (((), 2), (("steps=8",), 8)):
        engine, _ = make_engine(play_config(f"checkpoint={checkpoint}", "fps=0", "backend=torch", *args), 0)
        assert engine.steps == want
    engine, _ = make_engine(play_config(f"checkpoint={tiny_checkpoint}", "fps=0", "backend=torch"), 0)
    assert engine.steps == 4
    # every command line in one driver process (tests/hostile/driver.py: the real CLI, torch imported once)
    bad_plays = ({"sampler": "euler"}, {"sampler": ["ddim"]}, {"sampler": "ddim", "spacing": {"a": 1}}, "ddim",
                 {"sampler": "ddim", "steps": 3}, {"sampler": "ddim", "steps": "2"})
    cases = [("default", ["bench", f"checkpoint={checkpoint}", "steps=[2]", "frames=3", "warmup=1", "backend=onnx"]),
             ("chosen", ["bench", f"checkpoint={checkpoint}", "sampler=ddim", "spacing=linspace", "steps=[2]", "frames=3",
                         "warmup=1"])]
    for i, play in enumerate(bad_plays):
        bad = tmp_path / f"bad{i}"
        shutil.copytree(tiny_checkpoint, bad)
        (bad / "worldgame.json").write_text(json.dumps({**meta, "play": play}))
        cases.append((f"bad{i}", ["bench", f"checkpoint={bad}", "steps=[2]", "frames=3"]))
    (tmp_path / "driver").mkdir()
    got = run_driver(cases, tmp_path / "driver", cap=None)
    r = got["default"]
    assert r["rc"] == 0, r["stderr"]
    (result,) = json.loads(r["stdout"].strip().splitlines()[-1])["results"]
    assert (result["sampler"], result["spacing"], result["backend"]) == ("dpmsolver", "trailing", "onnx")
    r = got["chosen"]
    assert r["rc"] == 0, r["stderr"]
    (result,) = json.loads(r["stdout"].strip().splitlines()[-1])["results"]
    assert (result["sampler"], result["spacing"]) == ("ddim", "linspace")

    for i, play in enumerate(bad_plays):
        r = got[f"bad{i}"]
        assert r["rc"] == 1 and "play" in r["stderr"] and "Traceback" not in r["stderr"], (play, r["stderr"])
        assert len(r["stderr"].strip().splitlines()) == 1


def test_bad_sampler_settings_are_one_line(tiny_checkpoint, run_cli):
    for args, what in [(["sampler=euler"], "sampler"), (["sampler=lcm", "spacing=trailing"], "spacing"),
                       (["sampler=ddim", "spacing=sideways"], "spacing"), (["sampler=ddim", "steps=[3]"], "steps")]:
        r = run_cli("bench", f"checkpoint={tiny_checkpoint}", *args, "frames=3")
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = run_cli("serve", f"checkpoint={tiny_checkpoint}", "sampler=teacher")
    assert r.returncode == 2 and "sampler" in r.stderr and "Traceback" not in r.stderr


def test_eval_measures_the_chosen_sampler(tiny_checkpoint, run_cli, tmp_path):
    r = run_cli("eval", f"checkpoint={tiny_checkpoint}", "sampler=dpmsolver", "episodes=1", "episode_frames=24", "samples=2",
                "teacher_steps=2", "steps=[1]", "rollout_frames=8", "long_rollouts=2", "horizons=[1]", "horizon_rollouts=1",
                "object_horizons=[8]", "control_contexts=2", "control_frames=3", f"out={tmp_path}")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["rollout"]["sampler"] == report["teacher_forced"]["sampler"] == "dpmsolver"
    assert report["rollout"]["spacing"] == "trailing" and report["objects"]["dreams"] == 2
    orbs = report["objects"]["bouncer"]
    assert {"no_orbs_frac", "invented_frac"} <= set(orbs) and "dream_mean" in report["objects"]["blobs"]


@pytest.mark.parametrize("sampler,spacing", [("euler", None), ("lcm", "leading"), ("ddim", "x" * 10_000), (["ddim"], None)])
def test_a_session_naming_a_sampler_we_lack_is_one_clear_error(tiny_checkpoint, play_config, tmp_path, monkeypatch,
                                                               sampler, spacing):
    """Sessions are files from elsewhere: a sampler or spacing that is not ours is refused by name."""
    from worldgame.commands import play as play_module
    from worldgame.engine.session import regenerate

    def hostile(cfg, seed, kind="model", game=None):
        engine, metadata = make_engine(cfg, seed, kind, game)
        metadata.update(sampler=sampler, spacing=spacing)
        return engine, metadata

    make_engine = play_module.make_engine
    monkeypatch.setattr(play_module, "make_engine", hostile)
    cfg = play_config(f"checkpoint={tiny_checkpoint}", "fps=0", "seed=4", "record=true", f"sessions={tmp_path}",
                      "frames=4", "backend=torch")
    (path,) = play_module.play(cfg, script=[{"left"}] * 4).sessions
    with pytest.raises(WorldgameError, match="cannot be regenerated") as e:
        regenerate(path, device="cpu")
    assert len(str(e.value)) < 400 and "\n" not in str(e.value)
