"""`worldgame collect`: run a game under a policy and write episodes to disk."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from worldgame.data.episode import SUFFIX, EpisodeWriter
from worldgame.data.policies import make_policy
from worldgame.errors import WorldgameError
from worldgame.games import make_game


def run(cfg: DictConfig) -> dict[str, float]:
    """Write ``cfg.episodes`` episodes of at most ``cfg.steps`` steps each to ``cfg.out``."""
    out = Path(cfg.out)
    game = make_game(cfg.game)
    start = _next_index(out)  # append, never overwrite
    total = cfg.episodes * (cfg.steps + 1)
    t0 = time.perf_counter()
    frames = 0
    with tqdm(total=total, unit="frame", desc=f"collect {game.name}", disable=not cfg.progress) as bar:
        for e in range(cfg.episodes):
            seed = cfg.seed + start + e
            policy = make_policy(cfg.policy, game, cfg.sticky, seed)
            meta = {
                "game": game.name,
                "game_config": OmegaConf.to_container(cfg.game, resolve=True),
                "seed": seed,
                "frame_size": game.frame_size,
                "action_names": list(game.action_names),
                "policy": cfg.policy,
            }
            writer = None
            try:
                writer = EpisodeWriter(out / f"ep_{start + e:06d}{SUFFIX}", meta)
                with writer:
                    writer.add(game.reset(seed), 0)
                    for _ in range(cfg.steps):
                        action = policy()
                        frame, reward, done, _ = game.step(action)
                        writer.add(frame, action, reward, done)
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
            bar.update(writer.rows)
    seconds = time.perf_counter() - t0
    stats = {"episodes": cfg.episodes, "frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 1)}
    print(f"wrote {frames} frames in {cfg.episodes} episodes to {out} ({stats['fps']:.0f} frames/s)")
    return stats


def _next_index(out: Path) -> int:
    """One past the highest ``ep_NNNNNN`` in ``out`` (0 for a new folder), so gaps left by deleted
    episodes are never reused and an existing file is never hit."""
    indices = [int(p.stem[3:]) for p in out.glob(f"ep_*{SUFFIX}") if p.stem[3:].isdigit()] if out.is_dir() else []
    return max(indices, default=-1) + 1
