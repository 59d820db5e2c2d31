"""Bouncer with the player standing still, measured as a user meets it (issue 17).

    python tools/standing_still.py [CHECKPOINT=checkpoints/bouncer] [--seeds 11 12 13 14] [--frames 2000]
                                   [--out runs/standing_still] [--play KEY=VALUE ...]

For each seed, ``worldgame play frames=N fps=0 record=true seed=S`` runs headless (SDL's dummy
video driver: no key is ever pressed, so every action is NOOP) on the model and on the real game,
and the orbs in every recorded frame are counted by colour (eval/bouncer_checks.py). Prints a
few lines per seed and, last, one JSON object: orbs on average, at frames 1,000 and 2,000, and the
shares of frames with all orbs, none, and more than the game has -- dream and real. Extra play
settings (``sampler=lcm``, ``steps=2`` ...) go after ``--play``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from worldgame.data.episode import list_episodes, read_episode
from worldgame.eval.bouncer_checks import orbs_per_frame


def record(engine: str, checkpoint: str, seed: int, frames: int, folder: Path, extra: list[str]) -> np.ndarray:
    """Play one headless session and return its recorded frames."""
    if folder.exists():
        shutil.rmtree(folder)
    args = [sys.executable, "-m", "worldgame.cli", "play", f"engine={engine}", f"checkpoint={checkpoint}",
            f"frames={frames}", "fps=0", "record=true", f"seed={seed}", f"sessions={folder}", *extra]
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    r = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"standing_still: {' '.join(args[3:])} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    (path,) = list_episodes(folder)
    episode = read_episode(path)
    if int(np.count_nonzero(episode.actions)):
        sys.exit(f"standing_still: {path} holds actions other than NOOP; was a key pressed?")
    return episode.frames


def shares(orbs: np.ndarray, n: int) -> dict:
    def at(frame: int) -> float | None:
        return round(float(orbs[:, frame - 1].mean()), 3) if orbs.shape[1] >= frame else None

    return {"orbs_mean": round(float(orbs.mean()), 3), "orbs_at_1000": at(1000), "orbs_at_2000": at(2000),
            "all_frac": round(float((orbs >= n).mean()), 4), "none_frac": round(float((orbs == 0).mean()), 4),
            "invented_frac": round(float((orbs > n).mean()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?", default="checkpoints/bouncer")
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--out", default="runs/standing_still")
    ap.add_argument("--play", nargs="*", default=[], help="play settings for the model sessions, e.g. sampler=lcm")
    a = ap.parse_args()
    meta = json.loads((Path(a.checkpoint) / "worldgame.json").read_text())
    n = int(meta["game_config"].get("num_orbs", 3))
    dream, real = [], []
    for seed in a.seeds:
        d = orbs_per_frame(record("model", a.checkpoint, seed, a.frames, Path(a.out) / f"model_{seed}", a.play))
        r = orbs_per_frame(record("real", a.checkpoint, seed, a.frames, Path(a.out) / f"real_{seed}", []))
        m = min(len(d), len(r))
        dream.append(d[:m])
        real.append(r[:m])
        print(f"seed {seed}: dream {d.mean():.2f} orbs, real {r.mean():.2f} over {m} frames", flush=True)
    m = min(len(x) for x in dream)
    dream_a, real_a = np.stack([x[:m] for x in dream]), np.stack([x[:m] for x in real])
    print(json.dumps({"checkpoint": a.checkpoint, "overrides": a.play, "seeds": a.seeds, "frames": m,
                      "dream": shares(dream_a, n), "real": shares(real_a, n)}))


if __name__ == "__main__":
    main()
