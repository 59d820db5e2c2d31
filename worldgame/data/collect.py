"""`worldgame collect`: run a game under a policy and write episodes to disk."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from worldgame.data.episode import SUFFIX, EpisodeWriter, read_metadata
from worldgame.data.policies import make_policy
from worldgame.errors import WorldgameError, shorten
from worldgame.games import game_metadata, make_game
from worldgame.games.registry import folder_name
from worldgame.settings import CollectSettings


def run(cfg: CollectSettings) -> dict[str, float]:
    """Write ``cfg.episodes`` episodes of at most ``cfg.steps`` steps each to ``cfg.out``."""
    game = make_game(cfg.game)
    out = Path(cfg.out) if cfg.out else default_folder(game.name)
    start = _next_index(out)  # append, never overwrite
    first = game_metadata(game, cfg.game)
    if start:
        _check_same_game(out, first)
    total = cfg.episodes * (cfg.steps + 1)
    t0 = time.perf_counter()
    frames = 0
    with tqdm(total=total, unit="frame", desc=f"collect {game.name}", disable=not cfg.progress) as bar:
        for e in range(cfg.episodes):
            seed = cfg.seed + start + e
            policy = make_policy(cfg.policy, game, cfg.sticky, seed)
            writer = None
            try:
                frame = game.reset(seed)
                meta = {**game_metadata(game, cfg.game), "seed": seed, "policy": cfg.policy}
                writer = EpisodeWriter(out / f"ep_{start + e:06d}{SUFFIX}", meta)
                with writer:
                    writer.add(frame, 0)
                    for _ in range(cfg.steps):
                        action = policy()
                        frame, reward, done, info = game.step(action)
                        # an object the game's chance put on the field with no reward (Bouncer's coin): a
                        # chance code's event group names it (models/chance.py EVENT_APPEARED)
                        column = {"appeared": float(info["appeared"])} if "appeared" in info else None
                        writer.add(frame, action, reward, done, column)
                        if done:
                            break
            except WorldgameError as err:
                # a full disk or a game error: collected data is whole episodes, so the cut one
                # is removed and the finished ones stay (Ctrl-C keeps it, readable as unfinished)
                if writer is not None:  # None: the writer refused to start and left nothing
                    writer.path.unlink(missing_ok=True)
                reason = getattr(err, "reason", str(err))
                raise WorldgameError(f"{reason} (the cut episode was removed; the {e} complete ones before it are kept)") from err
            frames += writer.rows
            bar.total -= cfg.steps + 1 - writer.rows  # an episode the game ended early: the bar ends at 100 %
            bar.update(writer.rows)
    seconds = time.perf_counter() - t0
    stats = {"episodes": cfg.episodes, "frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1)}
    print(f"wrote {frames} frames in {cfg.episodes} episodes to {out} ({stats['fps']:.0f} frames/s)")
    return stats


def default_folder(game_name: str) -> Path:
    """``data/bouncer``, ``data/breakout`` for ALE/Breakout-v5: one folder per game, so games
    never mix (and collect refuses to append another game or other settings to a folder)."""
    return Path("data") / folder_name(game_name)


def _check_same_game(out: Path, mine: dict) -> None:
    """Appending to a folder of another game, or of other game settings, would make data no
    model can learn from: refuse with one line, before anything is written, naming exactly the
    settings that differ and both their values."""
    last = max(out.glob(f"ep_*{SUFFIX}"))
    theirs = read_metadata(last)
    differ = [d for key in ("game", "game_config", "action_names") if key in theirs
              for d in _differences(key, theirs[key], mine[key])]
    if differ:
        raise WorldgameError(f"out={out} holds episodes of {shorten(theirs.get('game'), 40)} with other settings "
                             f"({last.name} vs now): {'; '.join(differ[:6])}{'; ...' if len(differ) > 6 else ''}; "
                             "collect into another out= (or the default, one folder per game)")


def _differences(name: str, theirs: object, mine: object) -> list[str]:
    """``name=THEIRS there, MINE now`` for each setting that differs, nested dicts by dotted key."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        return [d for key in sorted(set(theirs) | set(mine), key=str)
                for d in _differences(f"{name}.{key}", theirs.get(key, "(unset)"), mine.get(key, "(unset)"))]
    if theirs == mine:
        return []
    return [f"{name}={shorten(theirs, 60)} there, {shorten(mine, 60)} now"]


def _next_index(out: Path) -> int:
    """One past the highest ``ep_NNNNNN`` in ``out`` (0 for a new folder), so gaps left by deleted
    episodes are never reused and an existing file is never hit."""
    indices = [int(p.stem[3:]) for p in out.glob(f"ep_*{SUFFIX}") if p.stem[3:].isdigit()] if out.is_dir() else []
    return max(indices, default=-1) + 1
