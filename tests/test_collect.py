"""`worldgame collect` end to end through the real command line."""

from __future__ import annotations

import numpy as np

from worldgame.data.episode import list_episodes, read_episode
from worldgame.games.bouncer import ACTIONS


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_collect_writes_episodes(tmp_path, run_cli):
    out = tmp_path / "data"
    r = run_cli("collect", "episodes=2", "steps=30", f"out={out}", "progress=false")
    assert r.returncode == 0, r.stderr
    files = list_episodes(out)
    assert [f.name for f in files] == ["ep_000000.wgep", "ep_000001.wgep"]
    seeds = set()
    for f in files:
        ep = read_episode(f)
        assert ep.complete
        assert 1 < len(ep) <= 31
        assert ep.frames.shape[1:] == (64, 64, 3) and ep.frames.dtype == np.uint8
        assert ep.metadata["game"] == "bouncer"
        assert ep.metadata["policy"] == "scripted"
        assert ep.metadata["frame_size"] == 64
        assert ep.metadata["action_names"] == list(ACTIONS)
        assert ep.actions[0] == 0 and ep.actions.min() >= 0 and ep.actions.max() < len(ACTIONS)
        seeds.add(ep.metadata["seed"])
    assert len(seeds) == 2  # each episode is its own game
    assert "wrote" in r.stdout


def test_collect_records_when_a_coin_appeared(tmp_path, run_cli):
    """No reward says a coin appeared, so collect writes the game's own word for it per row (the
    ``appeared`` column a chance code's event group names): the same steps replayed say the same, and
    every such row shows a coin that the row before did not."""
    from worldgame.eval.bouncer_checks import coins_per_frame
    from worldgame.games.bouncer import Bouncer

    out = tmp_path / "data"
    assert run_cli("collect", "episodes=2", "steps=300", f"out={out}", "progress=false").returncode == 0
    total = 0
    for f in list_episodes(out):
        ep = read_episode(f)
        column = ep.timings_ms["appeared"]
        game = Bouncer()
        game.reset(ep.metadata["seed"])
        said = [float(game.step(int(a))[3]["appeared"]) for a in ep.actions[1:]]
        assert np.isnan(column[0]) and column[1:].tolist() == said  # row 0 is the reset: no transition
        rows = np.flatnonzero(column == 1)
        coins = coins_per_frame(ep.frames)
        assert (coins[rows] >= coins[rows - 1]).all() and (coins[rows] > coins[rows - 1]).mean() > 0.5
        total += len(rows)
    assert total >= 2


def test_collect_random_policy(tmp_path, run_cli):
    r = run_cli("collect", "policy=random", "episodes=1", "steps=20", f"out={tmp_path}", "progress=false")
    assert r.returncode == 0, r.stderr
    (f,) = list_episodes(tmp_path)
    ep = read_episode(f)
    assert ep.metadata["policy"] == "random"
    assert len(ep) <= 21 and len(set(ep.actions[1:].tolist())) > 1


def test_bad_override_is_one_line(tmp_path, run_cli):
    r = run_cli("collect", "stepz=3", f"out={tmp_path}", "progress=false")
    assert r.returncode == 2
    lines = _lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "stepz" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_unknown_game_is_one_line(tmp_path, run_cli):
    r = run_cli("collect", "game=nope", f"out={tmp_path}", "progress=false")
    assert r.returncode != 0
    lines = _lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert "nope" in lines[0]


def test_collect_appends_never_overwrites(tmp_path, run_cli):
    args = ("collect", "episodes=2", "steps=10", f"out={tmp_path}", "progress=false")
    assert run_cli(*args).returncode == 0
    before = {f.name: f.read_bytes() for f in list_episodes(tmp_path)}
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    files = list_episodes(tmp_path)
    assert len(files) == 4
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data
    seeds = [read_episode(f).metadata["seed"] for f in files]
    assert len(set(seeds)) == 4  # the new episodes are new games, not repeats


def test_collect_after_a_deleted_episode(tmp_path, run_cli):
    args = ("collect", "episodes=2", "steps=5", f"out={tmp_path}", "progress=false")
    assert run_cli(*args).returncode == 0
    (tmp_path / "ep_000000.wgep").unlink()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert [f.name for f in list_episodes(tmp_path)] == ["ep_000001.wgep", "ep_000002.wgep", "ep_000003.wgep"]


def test_progress_ends_at_100_percent_when_episodes_end_early(tmp_path, run_cli):
    # one life: each episode ends long before 2,000 steps; the bar still ends full
    r = run_cli("collect", "episodes=2", "steps=2000", "game.lives=1", f"out={tmp_path}", "progress=true")
    assert r.returncode == 0, r.stderr
    frames = sum(len(read_episode(f)) for f in list_episodes(tmp_path))
    assert frames < 2 * 2001
    last = r.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert "100%" in last and f"{frames}/{frames}" in last, r.stderr


def test_other_game_settings_name_what_differs(tmp_path, run_cli):
    assert run_cli("collect", "episodes=1", "steps=5", f"out={tmp_path}", "progress=false").returncode == 0
    r = run_cli("collect", "episodes=1", "steps=5", "game.num_orbs=5", f"out={tmp_path}", "progress=false")
    assert r.returncode != 0
    (line,) = _lines(r.stderr)
    assert "game_config.num_orbs=3 there, 5 now" in line, line
    assert len(list_episodes(tmp_path)) == 1  # nothing written
