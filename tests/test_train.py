"""Training: every stage of a tiny config runs and learns; checkpoints round-trip; LCM step counts run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from worldgame.data import EpisodeWriter
from worldgame.data.policies import ScriptedPolicy
from worldgame.errors import WorldgameError
from worldgame.games.bouncer import Bouncer
from worldgame.models import WorldModel
from worldgame.models.sampler import Sampler
from worldgame.settings import load
from worldgame.train import loop


def _episodes(folder: Path, n: int = 3, steps: int = 120, first: int = 0, appeared: bool = False) -> None:
    """Bouncer episodes written as `worldgame collect` writes them (``appeared``: with the column that says
    when a coin appeared, which episodes collected before it lack)."""
    game = Bouncer(lives=100)
    for e in range(first, first + n):
        meta = {"game": game.name, "game_config": {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
                "seed": e, "frame_size": 64, "action_names": list(game.action_names), "policy": "scripted"}
        policy = ScriptedPolicy(game, seed=e)
        with EpisodeWriter(folder / f"ep_{e:06d}.wgep", meta) as w:
            w.add(game.reset(e), 0)
            for _ in range(steps):
                a = policy()
                frame, r, d, info = game.step(a)
                w.add(frame, a, r, d, {"appeared": float(info["appeared"])} if appeared else None)


def _cfg(data: Path, out: Path, *extra: str):
    return load("train", [f"data={data}", f"out={out}", "train=tiny", "model=tiny", "progress=false", "threads=1", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("train")
    _episodes(root / "data", first=2)  # seeds 2 and 3 score within 120 steps (the event head needs points)
    report = loop.run(_cfg(root / "data", root / "run", "train.vae.steps=60", "train.teacher.steps=60",
                           "train.distill.steps=30", "train.distill.val_every=10",
                           "train.rollout.steps=40", "train.rollout.lr=1e-3", "train.rollout.val_every=20"))
    return root, report


def test_every_stage_learns(trained: tuple[Path, dict]) -> None:
    _, report = trained
    for stage in ("vae", "teacher"):
        assert report[stage]["loss_end"] < report[stage]["loss_start"], stage
    assert report["distill"]["steps"] == 30 and report["distill"]["loss_end"] == report["distill"]["loss_end"]
    # the fourth objective: the student fine-tuned on its own rollouts learns too
    assert report["rollout"]["steps"] == 40 and report["rollout"]["loss_end"] < report["rollout"]["loss_start"]
    assert "fg_recall" in report["rollout"]["history"][-1]  # validated on a dream's objects, not PSNR alone
    # the fifth: the event head, validated by the F1 of each event kind on held-out windows
    assert report["events"]["steps"] == 30 and report["events"]["loss_end"] < report["events"]["loss_start"]
    assert {"plus_f1", "minus_f1", "end_f1", "score"} <= set(report["events"]["history"][-1])
    # the sixth: the agent, trained in the dream and validated on held-out dreams (tests/test_agent_train.py)
    assert report["agent"]["steps"] == 6 and {"points_per_1k", "minus_per_1k", "entropy"} <= set(report["agent"]["history"][-1])


@pytest.mark.parametrize("stage", ["teacher", "distill", "rollout"])
def test_resume_restores_ema_and_target_exactly(trained: tuple[Path, dict], tmp_path: Path, stage: str) -> None:
    """Interrupted at step 10 and resumed to 20 == run straight to 20: weights, optimizer, the
    teacher's EMA and the distillation target network included."""
    import shutil

    root, _ = trained
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for out in (straight, resumed):
        shutil.copytree(root / "run", out, ignore=shutil.ignore_patterns("state_*.pt"))
    common = (f"stage={stage}", f"train.{stage}.val_every=100", "save_every=10", "overwrite=true")  # retrains a copy
    loop.run(_cfg(root / "data", straight, *common, f"train.{stage}.steps=20"))
    loop.run(_cfg(root / "data", resumed, *common, f"train.{stage}.steps=10"))
    loop.run(_cfg(root / "data", resumed, *common, f"train.{stage}.steps=20"))
    a = torch.load(straight / f"state_{stage}.pt", weights_only=True)
    b = torch.load(resumed / f"state_{stage}.pt", weights_only=True)
    assert a["step"] == b["step"] == 20
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    extra_a, extra_b = a["extra"], b["extra"]
    if stage == "teacher":
        shadow_a, shadow_b = extra_a["ema"]["shadow_params"], extra_b["ema"]["shadow_params"]
        assert len(shadow_a) > 0 and all(torch.equal(x, y) for x, y in zip(shadow_a, shadow_b))
        assert extra_a["ema"]["optimization_step"] == extra_b["ema"]["optimization_step"] == 20
    elif stage == "distill":
        assert all(torch.equal(extra_a["target"][k], extra_b["target"][k]) for k in extra_a["target"])
        assert not all(torch.equal(extra_a["target"][k], a["model"][k]) for k in a["model"])  # a lagging EMA copy
    else:
        assert extra_a == extra_b == {"steps_done": 20}


def test_out_folder_is_a_checkpoint(trained: tuple[Path, dict]) -> None:
    root, _ = trained
    out = root / "run"
    meta = json.loads((out / "worldgame.json").read_text())
    assert meta["game"] == "bouncer" and meta["frame_size"] == 64 and len(meta["action_names"]) == 6
    assert meta["key_bindings"]["LEFT"] == ["left", "a"]
    for part in ("vae", "denoiser", "teacher", "scheduler"):
        assert (out / part).is_dir(), part
    assert list((out / "denoiser").glob("*.safetensors"))


def test_save_load_gives_identical_outputs(trained: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = trained
    model = WorldModel.from_pretrained(root / "run", device="cpu")
    model.save_pretrained(tmp_path / "copy", half=False)
    again = WorldModel.from_pretrained(tmp_path / "copy", device="cpu")
    frames = Bouncer().reset(3)[None].repeat(2, 0)
    z = model.encode(frames)
    assert torch.equal(z, again.encode(frames))
    ctx = z[:, None].repeat(1, model.context_length, 1, 1, 1)
    acts = torch.zeros(2, model.context_length, dtype=torch.long)
    a = Sampler(model).step(ctx, acts, 4, torch.Generator().manual_seed(1))
    b = Sampler(again).step(ctx, acts, 4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(model.decode(a), again.decode(b))


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_lcm_step_counts_run(trained: tuple[Path, dict], steps: int) -> None:
    root, _ = trained
    model = WorldModel.from_pretrained(root / "run", device="cpu")
    seen: list[int] = []
    ctx = torch.zeros(1, model.context_length, 4, 16, 16)
    out = Sampler(model).step(ctx, torch.zeros(1, model.context_length, dtype=torch.long), steps, on_step=lambda i, _: seen.append(i))
    assert out.shape == (1, 4, 16, 16) and torch.isfinite(out).all()
    assert seen == list(range(steps))


def test_training_resumes(trained: tuple[Path, dict]) -> None:
    root, _ = trained
    report = loop.run(_cfg(root / "data", root / "run", "stage=vae", "train.vae.steps=70"))
    assert report["vae"]["steps"] == 70  # continued from 60, did not start over


def test_missing_stage_input_is_one_clear_error(tmp_path: Path) -> None:
    _episodes(tmp_path / "data", n=2, steps=20)
    with pytest.raises(WorldgameError, match="stage=vae"):
        loop.run(_cfg(tmp_path / "data", tmp_path / "run", "stage=teacher"))


def test_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorldgameError, match="no .wgep episodes"):
        loop.run(_cfg(tmp_path / "empty", tmp_path / "run"))


def test_damaged_checkpoint_is_one_clear_error(trained: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    root, _ = trained
    shutil.copytree(root / "run", tmp_path / "ck", ignore=shutil.ignore_patterns("*.pt"))
    weights = next((tmp_path / "ck" / "denoiser").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(WorldgameError, match="damaged"):
        WorldModel.from_pretrained(tmp_path / "ck", device="cpu")
    with pytest.raises(WorldgameError, match="no such folder"):
        WorldModel.from_pretrained(tmp_path / "nope", device="cpu")
    model = WorldModel.from_pretrained(root / "run", device="cpu")
    with pytest.raises(WorldgameError, match="not gym:x"):
        model.check_game("gym:x", 64)


def test_refuses_to_train_into_another_games_checkpoint(trained: tuple[Path, dict], tmp_path: Path) -> None:
    import shutil

    root, _ = trained
    shutil.copytree(root / "run", tmp_path / "other", ignore=shutil.ignore_patterns("*.pt"))
    meta_file = tmp_path / "other" / "worldgame.json"
    meta = json.loads(meta_file.read_text())
    meta.update(game="gym:ALE/Pong-v5", action_names=["NOOP", "FIRE"])
    meta_file.write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in (tmp_path / "other").rglob("*") if p.is_file()}
    with pytest.raises(WorldgameError, match="holds a checkpoint of gym:ALE/Pong-v5"):
        loop.run(_cfg(root / "data", tmp_path / "other", "stage=teacher", "overwrite=true"))
    assert before == {p: p.read_bytes() for p in (tmp_path / "other").rglob("*") if p.is_file()}  # nothing touched


def test_state_files_hold_no_pickled_objects(trained: tuple[Path, dict]) -> None:
    """Resumable state loads with weights_only=True: tensors and plain containers, never code."""
    root, _ = trained
    for stage in ("teacher", "distill", "rollout"):
        state = torch.load(root / "run" / f"state_{stage}.pt", weights_only=True)
        assert state["step"] > 0 and "extra" in state


def test_batches_draw_rare_windows_around_events_and_keep_the_clean_context(tmp_path: Path) -> None:
    from worldgame.train.data import load_frame_data

    _episodes(tmp_path / "data", n=2)
    train, _ = load_frame_data(tmp_path / "data", 2, 0.5)
    events = torch.nonzero(train.events).flatten()
    assert len(events) > 0  # the scripted player scores, shoots and gets hit in 120 frames
    rare = train.rare_ends(2)
    assert 0 < len(rare) < len(train.ends)
    for t in rare.tolist():
        assert bool(train.events[max(0, t - 2) : t + 3].any())
    others = train.ends[~torch.isin(train.ends, rare)]
    assert not any(bool(train.events[max(0, t - 2) : t + 3].any()) for t in others.tolist())
    assert len(train.rare_ends(0)) <= len(rare) <= len(train.rare_ends(5))
    # a batch's first rare_share comes from those windows; each window weighs 1 / its sampling odds,
    # so the chance code's prior (and with rare_unbiased the denoiser) learns the game's own odds of
    # events (else it would draw them too often): the data's mean weight is 1 (an unbiased loss)
    from worldgame.train.latents import LatentBatches

    latents = torch.zeros(len(train.frames), 4, 4, 4)
    batch = LatentBatches(train, latents, 2, 0.0, torch.device("cpu"), rare_share=0.25, rare_radius=2).sample(
        16, torch.Generator().manual_seed(0))
    batches = LatentBatches(train, latents, 2, 0.0, torch.device("cpu"), rare_share=0.25, rare_radius=2)
    is_rare = torch.isin(train.ends, rare)
    odds = torch.where(is_rare, 0.25 * len(train.ends) / len(rare) + 0.75, torch.tensor(0.75))
    weights = torch.where(is_rare, batches.rare_weight, batches.plain_weight)
    assert torch.allclose(odds * weights, torch.ones(len(train.ends)))
    assert torch.equal(batch["weight"][:4], torch.full((4,), batches.rare_weight))
    # the denoiser's context is noised; the chance prior's is the context as play gives it, never noised
    latents, cpu, ends = torch.randn(len(train.frames), 4, 4, 4), torch.device("cpu"), train.ends[:8]
    noised = LatentBatches(train, latents, 2, 0.3, cpu).at(ends, torch.Generator().manual_seed(0))
    plain = LatentBatches(train, latents, 2, 0.0, cpu).at(ends, None)
    assert not torch.equal(noised["context"], plain["context"])
    assert torch.equal(noised["clean_context"], plain["context"]) and torch.equal(plain["clean_context"], plain["context"])


def test_a_longer_teacher_starts_from_the_checkpoint_oversamples_and_resumes_exactly(trained: tuple[Path, dict],
                                                                                       tmp_path: Path) -> None:
    """train.teacher.init continues a trained teacher; rare_share draws windows around events; the
    loss falls and a run stopped at 10 steps and resumed equals one run straight to 20."""
    import shutil

    from worldgame.models import ActionDenoiser

    root, _ = trained
    start = ActionDenoiser.from_pretrained(root / "run" / "teacher")
    straight, resumed, still = tmp_path / "straight", tmp_path / "resumed", tmp_path / "still"
    for out in (straight, resumed, still):
        shutil.copytree(root / "run", out, ignore=shutil.ignore_patterns("state_*.pt"))
    common = ("stage=teacher", f"train.teacher.init={root / 'run'}", "train.teacher.rare_share=0.5",
              "train.teacher.val_every=100", "save_every=10", "overwrite=true", "train.teacher.lr=3e-3")
    report = loop.run(_cfg(root / "data", straight, *common, "train.teacher.steps=20"))["teacher"]
    assert report["loss_end"] < report["loss_start"]
    loop.run(_cfg(root / "data", resumed, *common, "train.teacher.steps=10"))
    loop.run(_cfg(root / "data", resumed, *common, "train.teacher.steps=20"))
    a = torch.load(straight / "state_teacher.pt", weights_only=True)
    b = torch.load(resumed / "state_teacher.pt", weights_only=True)
    assert a["step"] == b["step"] == 20 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # with no learning the continued teacher is the one it started from: init really loads the weights
    loop.run(_cfg(root / "data", still, *common[:-1], "train.teacher.lr=1e-12", "train.teacher.steps=2"))
    kept = ActionDenoiser.from_pretrained(still / "teacher")
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(kept.parameters(), start.parameters()))
    shutil.copytree(root / "run", tmp_path / "bad", ignore=shutil.ignore_patterns("state_*.pt"))
    with pytest.raises(WorldgameError, match="train.teacher.init"):  # a folder without a teacher/: one line
        loop.run(_cfg(root / "data", tmp_path / "bad", "stage=teacher", f"train.teacher.init={tmp_path}", "overwrite=true",
                      "train.teacher.steps=2"))


def test_a_non_finite_loss_stops_the_run_before_anything_is_saved(tmp_path: Path) -> None:
    """Losses are read at logging steps only (no host sync per step); a non-finite one still stops the
    run with one line naming the step, before the spoilt weights reach a state or a checkpoint."""
    _episodes(tmp_path / "data", n=2, steps=60)
    with pytest.raises(WorldgameError, match=r"^vae: loss became (nan|inf|-inf) at step \d; lower vae.lr$"):
        cfg = _cfg(tmp_path / "data", tmp_path / "run", "stage=vae", "train.vae.steps=30", "train.vae.val_every=10",
                   "save_every=10")
        cfg.train.vae.lr = 1e30  # past the setting's range (le=10): set on the typed object, as a library caller can
        loop.run(cfg)
    assert not (tmp_path / "run" / "state_vae.pt").exists() and not (tmp_path / "run" / "vae").exists()


def test_every_stage_is_an_objective(trained: tuple[Path, dict]) -> None:
    """The loop knows the stages only through the Objective protocol: each exports its resume state
    and its checkpoint weights the same way."""
    from worldgame.train.data import load_frame_data
    from worldgame.train.objective import Objective

    root, _ = trained
    cfg = _cfg(root / "data", root / "run")
    train, val = load_frame_data(root / "data", cfg.model.denoiser.context_length, cfg.val_fraction)
    for stage in loop.STAGES:
        objective = loop.build(stage, cfg, train, val, root / "run", torch.device("cpu"))
        assert isinstance(objective, Objective), stage
        before = [p.clone() for p in objective.trainable().parameters()]
        with objective.checkpoint_weights() as net:
            assert isinstance(net, torch.nn.Module)
        assert all(torch.equal(p, q) for p, q in zip(before, objective.trainable().parameters())), stage  # lent back
        assert isinstance(objective.resume_state(), dict)
        assert objective.checkpoint_parts(root / "run")[0] in ("vae", "teacher", "denoiser", "events", "agent")


def test_a_finished_checkpoint_is_never_replaced_and_one_run_writes_an_out_folder(trained: tuple[Path, dict],
                                                                                   tmp_path: Path) -> None:
    """Retraining a stage a folder already holds (no state to resume) is refused unless overwrite=true,
    with every file left as it was; a second run on an out= another run holds is refused at once;
    out= a file is one line."""
    import shutil

    root, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(root / "run", copy, ignore=shutil.ignore_patterns("state_*.pt"))
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".train.lock"}
    for stage in ("vae", "all", "teacher"):
        with pytest.raises(WorldgameError, match=r"already holds a trained \w+ stage \(no state_\w+\.pt to resume\); "
                                                 r".*overwrite=true"):
            loop.run(_cfg(root / "data", copy, f"stage={stage}", "train.vae.steps=2", "train.teacher.steps=2"))
    assert before == {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".train.lock"}
    with loop.out_lock(copy), pytest.raises(WorldgameError, match="being written by another `worldgame train` run"):
        loop.run(_cfg(root / "data", copy, "stage=vae", "overwrite=true", "train.vae.steps=2"))
    assert before == {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != ".train.lock"}
    report = loop.run(_cfg(root / "data", copy, "stage=vae", "overwrite=true", "train.vae.steps=2", "save_every=1"))
    assert report["vae"]["steps"] == 2  # asked: replaced, and the lock was let go
    with pytest.raises(WorldgameError, match="already holds a trained vae stage \\(resume=false\\)"):
        loop.run(_cfg(root / "data", copy, "stage=vae", "resume=false", "train.vae.steps=2"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorldgameError, match="out=.*file is a file, not a folder"):
        loop.run(_cfg(root / "data", tmp_path / "file", "stage=vae"))


# --- the chance code (models/chance.py): trained inside the teacher stage ------------------------------

CHANCE = ("model.denoiser.chance_groups=2", "model.denoiser.chance_values=4", "model.chance.width=8", "model.chance.hidden=32")


EVENT_GROUP = ("model.denoiser.chance_values=8", "model.chance.event_group=true", "train.teacher.rare_share=0.25",
               "train.teacher.prior_batch=16")


WHERE = ("model.denoiser.chance_groups=3", "model.denoiser.chance_values=16", "model.chance.posterior_net=where")


@pytest.mark.parametrize("kind", ["learnt", "event_group", "where"])
def test_the_teacher_stage_with_a_chance_code_learns_resumes_exactly_and_plays(trained: tuple[Path, dict],
                                                                              tmp_path: Path, kind: str) -> None:
    """The denoiser, posterior and prior train together: the loss falls, the validation reports the
    code's health, an interrupted run resumes to the same weights (EMA included), the checkpoint
    holds chance/ and plays through the Sampler, drawing a code per frame. With an event group (and
    the prior's extra windows, drawn around events too), the same, and its group 0 is an event; with
    a ``where`` posterior (an event group and two groups naming a place), the same."""
    import shutil

    root, _ = trained
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for out in (straight, resumed):
        out.mkdir()
        shutil.copytree(root / "run" / "vae", out / "vae")
    events = kind != "learnt"
    common = ("stage=teacher", "train.teacher.val_every=20", "save_every=10", *CHANCE, *(EVENT_GROUP if events else ()),
              *(WHERE if kind == "where" else ()))
    report = loop.run(_cfg(root / "data", straight, *common, "train.teacher.steps=40"))["teacher"]
    assert report["loss_end"] < report["loss_start"]
    assert {"code_ppl0", "code_ppl1", "prior_ce", "psnr1_posterior", "psnr1_likely"} <= set(report["history"][-1])
    assert ("event_ce" in report["history"][-1]) == events
    loop.run(_cfg(root / "data", resumed, *common, "train.teacher.steps=20"))
    loop.run(_cfg(root / "data", resumed, *common, "train.teacher.steps=40", "resume=true"))
    a = torch.load(straight / "state_teacher.pt", weights_only=True)
    b = torch.load(resumed / "state_teacher.pt", weights_only=True)
    assert a["step"] == b["step"] == 40
    assert any(k.startswith("chance.") for k in a["model"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert all(torch.equal(x, y) for x, y in zip(a["extra"]["ema"]["shadow_params"], b["extra"]["ema"]["shadow_params"]))
    model = WorldModel.from_pretrained(straight, device="cpu")
    groups = 3 if kind == "where" else 2
    assert model.chance is not None and model.denoiser.config.chance_groups == groups
    assert model.chance.config.get("posterior_net", "flat") == ("where" if kind == "where" else "flat")
    sampler = Sampler(model)
    context = model.encode(Bouncer().reset(3)[None].repeat(2, 0))[None]
    sampler.step(context, torch.zeros(1, 2, dtype=torch.long), steps=1, generator=torch.Generator().manual_seed(0))
    assert sampler.last_code.shape == (1, groups)
    assert model.draws_events == events and (int(sampler.last_code[0, 0]) < 6 or not events)
    if kind != "event_group":
        return
    # prior_only: a prior of another net learns the settled code; the denoiser and posterior stay as they were
    prior = tmp_path / "prior"
    prior.mkdir()
    shutil.copytree(root / "run" / "vae", prior / "vae")
    report = loop.run(_cfg(root / "data", prior, *common, "train.teacher.steps=20", f"train.teacher.init={straight}",
                           "train.teacher.prior_only=true", "model.chance.prior_net=flat", "model.chance.prior_chain=false",
                           "train.teacher.lr=3e-3"))["teacher"]
    assert report["loss_end"] < report["loss_start"]
    before, after = WorldModel.from_pretrained(straight, device="cpu", teacher=True), WorldModel.from_pretrained(prior, device="cpu", teacher=True)
    assert after.chance.config.prior_net == "flat" != before.chance.config.prior_net
    for x, y in zip(before.teacher.state_dict().values(), after.teacher.state_dict().values()):
        assert torch.equal(x, y)
    posterior = lambda m: {k: v for k, v in m.chance.state_dict().items() if k.startswith("posterior")}
    assert all(torch.equal(v, posterior(after)[k]) for k, v in posterior(before).items())


def test_a_where_code_grows_an_event_for_an_object_that_appeared(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """Bouncer's coin appears by chance with no reward: with model.chance.appeared the event group names
    it (a value of its own, read from the data's appeared column), so the gated where code names its
    place. A code trained without it grows it: the new value starts as "nothing happened" in the
    denoiser (its embedding and map copied) and the prior; data without the column is refused in one line."""
    import shutil

    from worldgame.models.chance import EVENT_APPEARED
    from worldgame.train.data import load_frame_data
    from worldgame.train.latents import LatentBatches

    root, _ = trained
    data = tmp_path / "data"
    _episodes(data, n=3, steps=200, appeared=True)
    code = ("stage=teacher", "train.teacher.val_every=100", *CHANCE, *EVENT_GROUP, *WHERE, "model.denoiser.chance_map=2")
    train, _ = load_frame_data(data, 2, 0.3)
    came = train.ends[train.appeared[train.ends] & (train.rewards[train.ends] == 0) & ~train.dones[train.ends]]
    assert len(came) and int(train.appeared.sum()) < len(train.frames) // 5  # a coin now and then, not always
    events = LatentBatches(train, torch.zeros(len(train.frames), 4, 16, 16), 2, 0.0, torch.device("cpu"), appeared=True)
    assert (events.at(came, None)["events"] == EVENT_APPEARED).all()
    plain = LatentBatches(train, torch.zeros(len(train.frames), 4, 16, 16), 2, 0.0, torch.device("cpu"))
    assert (plain.at(came, None)["events"] == 0).all()  # without it, "nothing happened" as before

    first, grown = tmp_path / "first", tmp_path / "grown"
    for out in (first, grown):
        out.mkdir()
        shutil.copytree(root / "run" / "vae", out / "vae")
    with pytest.raises(WorldgameError, match="does not record when an object appeared.*collect them again"):
        loop.run(_cfg(root / "data", first, *code, "model.chance.appeared=true", "train.teacher.steps=2"))
    loop.run(_cfg(data, first, *code, "train.teacher.steps=10"))
    loop.run(_cfg(data, grown, *code, "model.chance.appeared=true", "train.teacher.steps=10", f"train.teacher.init={first}",
                  "train.teacher.prior_only=true"))
    before, after = (WorldModel.from_pretrained(p, device="cpu", teacher=True) for p in (first, grown))
    assert after.chance.config.appeared and not before.chance.config.get("appeared", False)
    for table in ("chance_embedding", "chance_map_embedding"):
        new, old = getattr(after.teacher, table).weight, getattr(before.teacher, table).weight
        assert torch.equal(new[EVENT_APPEARED], old[0]) and not torch.equal(old[EVENT_APPEARED], old[0]), table
    sampler = Sampler(after)
    context = after.encode(Bouncer().reset(3)[None].repeat(2, 0))[None]
    drawn = set()
    for seed in range(40):
        sampler.step(context, torch.zeros(1, 2, dtype=torch.long), steps=1, generator=torch.Generator().manual_seed(seed))
        drawn.add(int(sampler.last_code[0, 0]))
    assert max(drawn) <= EVENT_APPEARED  # the grown value may be drawn; nothing past it


def test_student_stages_refuse_a_chance_model_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(WorldgameError, match="train.distill.steps=10: the distill stage does not train a model with a chance code"):
        loop.run(_cfg(tmp_path / "data", tmp_path / "run", "stage=all", *CHANCE))


def test_the_teacher_learns_from_its_own_dream(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """train.teacher.own_share: that share of a batch's windows gets the model's own dream of the last
    ``unroll`` frames as its context (the frames before them real, slid along), as play makes it;
    the other windows and those too near their episode's start keep the real one, and the noise the
    loss reads is laid over the dream, while the prior keeps the real context. A run with it trains
    and resumes exactly."""
    import shutil

    from worldgame.train.data import load_frame_data

    root, _ = trained
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for out in (straight, resumed):
        out.mkdir()
        shutil.copytree(root / "run" / "vae", out / "vae")
    common = ("stage=teacher", "save_every=5", "train.teacher.val_every=100", *CHANCE, *EVENT_GROUP, *WHERE,
              "train.teacher.own_share=0.5", "train.teacher.unroll=2", "train.teacher.unroll_steps=1")
    cfg = _cfg(root / "data", straight, *common, "train.teacher.unroll=1")
    train, val = load_frame_data(root / "data", cfg.model.denoiser.context_length, cfg.val_fraction)
    objective = loop.build("teacher", cfg, train, val, straight, torch.device("cpu"))
    batch = objective.batches.sample(16, torch.Generator().manual_seed(0))
    real = {k: v.clone() for k, v in batch.items() if k in ("context", "clean_context")}
    clean = {**batch, "context_noise": torch.zeros_like(batch["context_noise"])}  # the same dream, no noise over it
    objective._own_context(batch, torch.Generator().manual_seed(1))
    objective._own_context(clean, torch.Generator().manual_seed(1))
    dreamed = (clean["context"] != real["context"]).flatten(1).any(1)
    assert 0 < int(dreamed.sum()) <= 8  # at most half the windows
    assert torch.equal(batch["clean_context"], real["clean_context"])  # the prior learns on the real context
    k = batch["context"].shape[1]
    near_start = ~objective.batches.has_room(batch["ends"], 1)
    assert not dreamed[near_start].any()
    ends = batch["ends"][dreamed]
    dream = clean["context"][dreamed]
    # one frame dreamed: the real frames before it slide along, the dream is the newest frame and not the real one
    assert torch.equal(dream[:, :-1], objective.batches.latents[ends[:, None] + torch.arange(-k, -1)].float())
    assert not torch.equal(dream[:, -1], objective.batches.latents[ends - 1].float())
    assert torch.isfinite(dream).all()
    level = batch["context_noise"][dreamed]
    level = (level if level.dim() == 2 else level[:, None].expand(-1, k))[:, :, None, None, None]
    offset = (batch["context"][dreamed] - dream).flatten(2).std(2)  # (rows, K)
    assert torch.allclose(offset, level.flatten(1), rtol=0.2, atol=1e-6)  # training's context noise, over the dream
    assert torch.equal(batch["context"][~dreamed], real["context"][~dreamed])

    report = loop.run(_cfg(root / "data", straight, *common, "train.teacher.steps=10"))["teacher"]
    assert math.isfinite(report["loss_end"])
    loop.run(_cfg(root / "data", resumed, *common, "train.teacher.steps=5"))
    loop.run(_cfg(root / "data", resumed, *common, "train.teacher.steps=10", "resume=true"))
    a = torch.load(straight / "state_teacher.pt", weights_only=True)
    b = torch.load(resumed / "state_teacher.pt", weights_only=True)
    assert a["step"] == b["step"] == 10
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_the_teacher_weighs_the_cells_that_hold_objects(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """train.teacher.foreground_weight: the denoiser's loss weighs the latent cells where the next or the
    last frame departs from the game's background (and their neighbours) that many times the rest,
    each frame's weights averaging 1; the cell that changed most from the last frame to the next (a
    moving object) is among them. A run with it trains."""
    import shutil

    from worldgame.train.data import load_frame_data

    root, _ = trained
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(root / "run" / "vae", out / "vae")
    common = ("stage=teacher", "train.teacher.val_every=100", "train.teacher.foreground_weight=10")
    cfg = _cfg(root / "data", out, *common)
    train, val = load_frame_data(root / "data", cfg.model.denoiser.context_length, cfg.val_fraction)
    objective = loop.build("teacher", cfg, train, val, out, torch.device("cpu"))
    b = objective.batches.sample(32, torch.Generator().manual_seed(0))
    last = b["clean_context"][:, -1]
    weight = objective._cell_weights(b["target"], last)
    assert weight.shape == (32, 1, *b["target"].shape[2:])
    assert torch.allclose(weight.mean((2, 3)), torch.ones(32, 1))
    flat = weight.flatten(1)
    assert torch.allclose(flat.amax(1) / flat.amin(1), torch.full((32,), 10.0))  # objects and background in every frame
    away = (b["target"] - objective.background).square().mean(1) > objective.departure
    assert away.any() and (away.flatten(1).float().mean(1) < 0.5).all()  # objects, not the whole frame
    assert (weight[:, 0][away] == flat.amax(1)[:, None, None].expand_as(away)[away]).all()
    change = (b["target"] - last).square().mean(1).flatten(1)
    assert (flat.gather(1, change.argmax(1)[:, None])[:, 0] == flat.amax(1)).all()
    report = loop.run(_cfg(root / "data", out, *common, "train.teacher.steps=10"))["teacher"]
    assert math.isfinite(report["loss_end"])
