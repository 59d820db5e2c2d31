"""Frame sizes above 64 at the same denoiser cost: the autoencoder's downscale follows the frame size
(64 -> 4, 96 -> 6, 128 -> 8) so the denoiser keeps its 16x16 latent; a tiny 96 px Bouncer collects,
trains, plays, benches, evals and exports through the CLI; every mismatch is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from worldgame.errors import WorldgameError
from worldgame.models.autoencoder import downscale_for

TINY_TRAIN = ("train=tiny", "model=tiny", "progress=false", "threads=1", "train.vae.steps=4", "train.vae.val_every=2",
              "train.teacher.steps=4", "train.teacher.val_every=2", "train.distill.steps=0", "train.rollout.steps=0")


def _one_line(r: dict) -> str:
    """The one stderr line of a failed run (a driver result: rc, stderr, escaped)."""
    lines = [line for line in r["stderr"].splitlines() if line.strip()]
    assert r["escaped"] is None and r["rc"] != 0 and len(lines) == 1 and "Traceback" not in r["stderr"], r["stderr"]
    return lines[0]


def test_downscale_follows_the_frame_size() -> None:
    assert [downscale_for(fs, 16) for fs in (32, 64, 96, 128)] == [2, 4, 6, 8]
    assert downscale_for(128, 16, 8) == 8  # given and right: kept
    with pytest.raises(WorldgameError, match=r"100px .* game\.frame_size=96 or 112, or set model\.denoiser\.latent_size"):
        downscale_for(100, 16)
    with pytest.raises(WorldgameError, match=r"model\.vae\.downscale=4 .* 128px .* unset \(null\)"):
        downscale_for(128, 16, 4)


@pytest.fixture(scope="module")
def cli96(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict:
    """Every command line of this module, in order, in one driver process (tests/hostile/driver.py runs
    the real CLI in-process, so torch and hydra import once): 96 px Bouncer episodes collected and a tiny
    model trained on them, then played, replayed, benched and evaluated, then the mismatches."""
    from hostile.batch import run_driver

    root = tmp_path_factory.mktemp("fs96")
    data, run, work = root / "data", root / "run", root / "work"
    shutil.copytree(tiny_checkpoint, work / "ck64")
    sessions = work / "sessions"
    cases = [
        ("collect96", ["collect", "game.frame_size=96", "episodes=3", "steps=60", f"out={data}", "progress=false"]),
        ("train96", ["train", f"data={data}", f"out={run}", *TINY_TRAIN]),
        ("play", ["play", f"checkpoint={run}", "frames=6", "fps=0", "record=true", f"sessions={sessions}"]),
        # the folder holds the one session just played
        ("replay", ["replay", f"path={sessions}", f"export={work / 'dream.gif'}", "progress=false"]),
        ("bench", ["bench", f"checkpoint={run}", "steps=[1]", "frames=3", "warmup=0"]),
        ("eval", ["eval", f"checkpoint={run}", "episodes=1", "episode_frames=24", "samples=8", "steps=[1]",
                  "teacher_steps=2", "rollout_frames=12", "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1",
                  "object_horizons=[10]", "event_games=0", "agent_games=0", f"out={work / 'eval'}"]),
        # training 96 px data into a folder that holds a 64 px checkpoint
        ("train_into_64", ["train", f"data={data}", f"out={work / 'ck64'}", "overwrite=true", *TINY_TRAIN]),
        # playing the 96 px checkpoint on the 64 px game
        ("play_at_64", ["play", f"checkpoint={run}", "game.frame_size=64", "frames=2", "fps=0"]),
        # an explicit downscale that does not give the denoiser its latent
        ("train_downscale_4", ["train", f"data={data}", f"out={work / 'r'}", "model.vae.downscale=4", *TINY_TRAIN]),
        # a frame size that does not fold
        ("collect100", ["collect", "game.frame_size=100", "episodes=2", "steps=10", f"out={work / 'd100'}",
                        "progress=false"]),
        ("train100", ["train", f"data={work / 'd100'}", f"out={work / 'r100'}", *TINY_TRAIN]),
    ]
    (root / "driver").mkdir()
    results = run_driver(cases, root / "driver", cap=None, timeout=600)
    return {**results, "data": data, "run": run, "work": work}


@pytest.fixture(scope="module")
def run96(cli96: dict) -> tuple[Path, Path]:
    """96 px Bouncer episodes collected and a tiny model trained on them, both through the CLI."""
    for case in ("collect96", "train96"):
        assert cli96[case]["rc"] == 0, cli96[case]["stderr"]
    return cli96["data"], cli96["run"]


def test_a_96px_model_keeps_the_16x16_latent(run96: tuple[Path, Path]) -> None:
    _, run = run96
    vae = json.loads((run / "vae" / "config.json").read_text())
    denoiser = json.loads((run / "denoiser" / "config.json").read_text())
    meta = json.loads((run / "worldgame.json").read_text())
    assert vae["downscale"] == 6 and denoiser["latent_size"] == 16 and meta["frame_size"] == 96
    assert meta["training"]["vae"]["model"]["vae"]["downscale"] == 6  # the resolved value is recorded


def test_a_96px_model_plays_benches_evals_and_exports(run96: tuple[Path, Path], cli96: dict) -> None:
    from worldgame.data.episode import list_episodes

    work = cli96["work"]
    r = cli96["play"]
    assert r["rc"] == 0, r["stderr"]
    (session,) = list_episodes(work / "sessions")  # the one session replay was given
    gif = work / "dream.gif"
    r = cli96["replay"]
    assert r["rc"] == 0 and gif.stat().st_size > 0, r["stderr"]
    assert str(session) in r["stdout"]
    r = cli96["bench"]
    assert r["rc"] == 0, r["stderr"]
    assert json.loads(r["stdout"].strip().splitlines()[-1])["results"][0]["fps"] > 0
    r = cli96["eval"]
    assert r["rc"] == 0, r["stderr"]
    result = json.loads(r["stdout"].strip().splitlines()[-1])
    small = result["small_objects"]
    assert small["max_px"] == 16 and {"recall", "objects"} <= set(small["vae"])
    assert set(small["teacher_forced"]["recall"]) == {"copy_last", "1", "teacher"}
    assert {"shown_frac", "invented_frac", "real_frac"} <= set(small["dream"])
    assert "small objects (<= 16 px)" in r["stdout"] and "## Small objects" in (work / "eval" / "report.md").read_text()


def test_checkpoint_and_data_of_other_frame_sizes_are_one_line(run96: tuple[Path, Path], cli96: dict) -> None:
    # training 96 px data into a folder that holds a 64 px checkpoint
    line = _one_line(cli96["train_into_64"])
    assert "64px" in line and "96px" in line and "another out=" in line
    # playing the 96 px checkpoint on the 64 px game
    line = _one_line(cli96["play_at_64"])
    assert "at 96px" in line and "at 64px" in line
    # an explicit downscale that does not give the denoiser its latent
    line = _one_line(cli96["train_downscale_4"])
    assert "model.vae.downscale=4" in line and "96px" in line


def test_a_frame_size_that_does_not_fold_is_one_line(cli96: dict) -> None:
    r = cli96["collect100"]
    assert r["rc"] == 0, r["stderr"]
    line = _one_line(cli96["train100"])
    assert "100px" in line and "game.frame_size=96 or 112" in line and not (cli96["work"] / "r100" / "vae").exists()


def test_a_checkpoint_mixing_autoencoder_and_denoiser_sizes_is_refused(run96: tuple[Path, Path], tiny_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    from worldgame.models import WorldModel

    _, run = run96
    shutil.copytree(run, tmp_path / "mixed", ignore=shutil.ignore_patterns("*.pt"))
    shutil.rmtree(tmp_path / "mixed" / "vae")
    shutil.copytree(tiny_checkpoint / "vae", tmp_path / "mixed" / "vae")  # a 64 px autoencoder (downscale 4)
    with pytest.raises(WorldgameError, match=r"vae/ folds 96px frames by 4, not into its denoiser's 16x16 latent"):
        WorldModel.from_pretrained(tmp_path / "mixed", device="cpu")
