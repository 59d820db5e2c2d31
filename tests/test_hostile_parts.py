"""Hostile parts, round three (issue 33 item 2): checkpoint parts that pass the loader's older
checks and then crashed play, and the settings that trained them. Each case goes through the real
CLI in one driver subprocess (tests/hostile/driver.py) and must end in one line naming the thing.

* an ``events/`` or ``agent/`` part that sees more frames than the denoiser keeps (``frames_seen``
  > K) -- play, replay and agent training indexed past the context;
* a part whose weights file holds other tensors than its config builds (the old check compared
  element counts, so one unused tensor of the right size passed);
* an event head whose end threshold ends every game at frame 1;
* ``worldgame.json`` ``key_bindings`` naming an unknown action, an empty combo, an 8 MB key name or a
  key the window does not know; ``native_size`` 4096:1 (no window that shape opens);
* ``train stage=agent model.agent.frames_seen=64`` (said before any data loads), and
  ``train.teacher.init`` from a teacher holding NaN (the play loader refuses those too).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_hostile import assert_one_line, run_driver

from worldgame.models import WorldModel
from worldgame.models.agent import Agent
from worldgame.models.events import EventHead

CASE_SECONDS = 10
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _with_part(tiny: Path, folder: Path, name: str, **config) -> Path:
    """A copy of the tiny checkpoint (K = 2) with an events/ or agent/ part of ``config``."""
    base = WorldModel.from_pretrained(tiny, device="cpu")
    shape = {"latent_channels": base.denoiser.config.latent_channels, "latent_size": base.denoiser.config.latent_size,
             "num_actions": len(base.action_names)}
    part = (EventHead if name == "events" else Agent)(**shape, **config)
    setattr(base, name, part)
    base.save_pretrained(folder)
    return folder


def _part_config(folder: Path, part: str, text_change) -> Path:
    """``folder``'s ``part``/config.json edited as text (a 400-digit integer is valid JSON)."""
    config = folder / part / "config.json"
    config.write_text(text_change(config.read_text()))
    return folder


def _meta(tiny: Path, folder: Path, **changes) -> Path:
    shutil.copytree(tiny, folder)
    meta = json.loads((folder / "worldgame.json").read_text())
    meta.update(changes)
    (folder / "worldgame.json").write_text(json.dumps(meta))
    return folder


def _weights(tiny: Path, folder: Path, change) -> Path:
    shutil.copytree(tiny, folder)
    file = folder / "denoiser" / WEIGHTS
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file)
    return folder


def _renamed_tensor(tensors: dict) -> None:
    """Same element count as before, but one tensor under a name the module does not have."""
    key = next(k for k in tensors if k.endswith("weight"))
    tensors["unused." + key] = tensors.pop(key)


def _nan_teacher(tiny: Path, folder: Path) -> Path:
    shutil.copytree(tiny, folder)
    shutil.copytree(folder / "denoiser", folder / "teacher")
    file = folder / "teacher" / WEIGHTS
    tensors = load_file(file)
    key = next(iter(tensors))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, file)
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_checkpoint):
    work = tmp_path_factory.mktemp("hostile_parts")
    play = ["frames=2", "fps=0", "backend=torch"]
    ck = {
        "events_sees_6": _with_part(tiny_checkpoint, work / "ev6", "events", frames_seen=6),
        "agent_sees_64": _with_part(tiny_checkpoint, work / "ag64", "agent", frames_seen=64),
        "events_threshold_ends_all": _with_part(tiny_checkpoint, work / "evthr", "events", end_threshold=-65536.0),
        "weights_renamed": _weights(tiny_checkpoint, work / "renamed", _renamed_tensor),
        "weights_extra_tensor": _weights(tiny_checkpoint, work / "extra",
                                         lambda t: t.__setitem__("spare", torch.zeros(4, 4))),
        "events_sees_10e400": _part_config(_with_part(tiny_checkpoint, work / "ev400", "events"), "events",
                                           lambda t: t.replace('"frames_seen": 2', '"frames_seen": 1' + "0" * 400)),
        "events_threshold_text": _part_config(_with_part(tiny_checkpoint, work / "evtxt", "events"), "events",
                                              lambda t: t.replace('"end_threshold": 0.0', '"end_threshold": "2"')),
        "bindings_unknown_action": _meta(tiny_checkpoint, work / "kb1", key_bindings={"JUMP": ["space"]}),
        "bindings_empty_combo": _meta(tiny_checkpoint, work / "kb2", key_bindings={"UP": [""]}),
        "bindings_8mb_key": _meta(tiny_checkpoint, work / "kb3", key_bindings={"UP": ["k" * (8 << 20)]}),
        "bindings_unknown_key": _meta(tiny_checkpoint, work / "kb4", key_bindings={"UP": ["notakey"]}),
        "native_4096_by_1": _meta(tiny_checkpoint, work / "ns", native_size=[4096, 1]),
    }
    needles = {"events_sees_6": "sees 6 frames", "agent_sees_64": "sees 64 frames",
               "events_threshold_ends_all": "end_threshold", "events_sees_10e400": "frames_seen",
               "events_threshold_text": "end_threshold", "weights_renamed": "do not match config.json",
               "weights_extra_tensor": "do not match config.json", "bindings_unknown_action": "JUMP",
               "bindings_empty_combo": "key_bindings", "bindings_8mb_key": "key_bindings",
               "bindings_unknown_key": "notakey", "native_4096_by_1": "native_size"}
    cases = [("warmup", ["play", f"checkpoint={tiny_checkpoint}", *play])]
    cases += [(name, ["play", f"checkpoint={folder}", *play]) for name, folder in ck.items()]
    cases += [(f"{name}:agent", ["play", f"checkpoint={folder}", "agent=true", *play])
              for name, folder in ck.items() if name == "agent_sees_64"]
    small = ["train=tiny", "model=tiny", "progress=false"]
    nan = _nan_teacher(tiny_checkpoint, work / "nan_teacher")
    needles |= {"train_agent_sees_64": "frames_seen=64", "train_events_sees_9": "frames_seen=9",
                "train_init_nan": "NaN", "agent_sees_64:agent": "sees 64 frames"}
    cases += [
        ("train_agent_sees_64", ["train", "stage=agent", f"data={work / 'nothing_here'}", f"out={work / 'r1'}",
                                 "model.agent.frames_seen=64", *small]),
        ("train_events_sees_9", ["train", "stage=events", f"data={work / 'nothing_here'}", f"out={work / 'r2'}",
                                 "model.events.frames_seen=9", *small]),
    ]
    return ck, needles, cases, nan, work


def test_crafted_parts_end_in_one_line_within_10_s(results, collected_data):
    _, needles, cases, nan, work = results
    shutil.copytree(nan / "vae", work / "r3" / "vae")  # the teacher stage trains on an autoencoder's latents
    cases = [*cases, ("train_init_nan", ["train", "stage=teacher", f"data={collected_data}", f"out={work / 'r3'}",
                                         f"train.teacher.init={nan}", "train=tiny", "model=tiny", "progress=false",
                                         "model.denoiser.context_length=2", "model.denoiser.block_out_channels=[16,16]"])]
    got = run_driver(cases, work, timeout=600)
    assert got["warmup"]["rc"] == 0, got["warmup"]["stderr"][-2000:]
    for name, _ in cases[1:]:
        line = assert_one_line(got[name], needle=needles[name])
        assert len(line) < 400, line  # an 8 MB key name is never printed whole
        assert got[name]["seconds"] < CASE_SECONDS, (name, got[name]["seconds"])


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> tuple[dict, Path]:
    """The collect and every train of the two tests below, in order, in one driver process (torch and
    hydra load once): {case: result} and the folder they ran in."""
    tmp_path = tmp_path_factory.mktemp("untrained")
    data = tmp_path / "pointless"
    small = ["train=tiny", "model=tiny", "progress=false", f"data={data}"]
    # an agent asked for on a head whose own training saw no point (its record in worldgame.json)
    pointless_head = tmp_path / "agent"
    pointless_head.mkdir()
    (pointless_head / "worldgame.json").write_text(json.dumps(
        {"game": "bouncer", "frame_size": 64, "action_names": ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "FIRE"],
         "training": {"events": {"history": [{"step": 10, "plus_events": 0, "score": 0.5}]}}}))
    got = run_driver([("collect", ["collect", f"out={data}", "episodes=2", "steps=6", "progress=false"]),
                      *((stage, ["train", f"stage={stage}", f"out={tmp_path / stage}", *small]) for stage in ("events", "agent")),
                      ("all", ["train", "stage=all", f"out={tmp_path / 'all'}", *small, "train.vae.steps=2",
                               "train.teacher.steps=2"]),
                      # a new user's first `worldgame train` before any `collect`
                      ("no_data", ["train", f"data={tmp_path / 'data' / 'bouncer'}", f"out={tmp_path / 'runs' / 'bouncer'}",
                                   "train=tiny", "model=tiny"])],
                     tmp_path, timeout=300)
    return got, tmp_path


def test_data_without_points_trains_no_head_that_cannot_score(untrained):
    """Random or scripted play that never scores: stage=events and stage=agent refuse in one line
    naming what to do; stage=all leaves them out with a note (issue 33 item 6)."""
    from worldgame.data.episode import list_episodes, read_episode

    got, tmp_path = untrained
    data = tmp_path / "pointless"
    assert got["collect"]["rc"] == 0, got["collect"]["stderr"][-2000:]
    assert not any((read_episode(f).rewards > 0).any() for f in list_episodes(data))  # the premise
    line = assert_one_line(got["events"], needle="holds no points")
    assert "record your own play" in line and "worldgame collect" in line
    assert "trained on data holding no points" in assert_one_line(got["agent"], needle="stage=agent")
    r = got["all"]
    assert r["rc"] == 0 and r["escaped"] is None, r["stderr"][-2000:]
    assert "skipping the events and agent stages" in r["stdout"] + r["stderr"]
    assert not (tmp_path / "all" / "events").exists() and not (tmp_path / "all" / "agent").exists()
    assert (tmp_path / "all" / "denoiser").is_dir()


@pytest.fixture(scope="module")
def collected_data(tmp_path_factory, run_cli_module):
    out = tmp_path_factory.mktemp("collected") / "bouncer"
    r = run_cli_module("collect", f"out={out}", "episodes=2", "steps=40", "progress=false")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def run_cli_module():
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
        return subprocess.run([sys.executable, "-m", "worldgame.cli", *args], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    return run


def test_the_shipped_checkpoints_pass_the_part_checks():
    """The stricter checks refuse nothing we ship (keys and shapes equal, frames_seen <= K, thresholds)."""
    for game in ("bouncer", "boxing", "pong"):
        model = WorldModel.from_pretrained(Path(__file__).resolve().parent.parent / "checkpoints" / game, device="cpu", teacher=True)
        assert model.denoiser is not None


def test_train_without_data_says_collect_first_and_leaves_no_folder(untrained):
    """A new user's first `worldgame train` before any `collect`: one line saying what comes first,
    and no empty run folder holding only a lock file (issue 31's rough edges)."""
    got, tmp_path = untrained
    out = tmp_path / "runs" / "bouncer"
    r = got["no_data"]
    lines = [x for x in r["stderr"].splitlines() if x.strip()]
    assert r["escaped"] is None and r["rc"] == 1 and len(lines) == 1 and "worldgame collect out=" in lines[0], r["stderr"]
    assert not out.exists()


def test_a_mistyped_checkpoint_is_said_before_anything_loads(run_cli_module):
    """`checkpoint=checkpoints/bouncr` is a bad setting (exit 2), said with the folder meant."""
    r = run_cli_module("play", "checkpoint=checkpoints/bouncr", "frames=1")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "no such folder; did you mean checkpoints/bouncer?" in lines[0]
    r = run_cli_module("eval", "checkpoint=nowhere_near_anything")
    assert r.returncode == 2 and "the shipped ones are checkpoints/bouncer" in r.stderr, r.stderr
