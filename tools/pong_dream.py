"""Pong played inside the dream by the tracker, as a gif and a few counts (issue 21).

    python tools/pong_dream.py [CHECKPOINT=checkpoints/pong] [--frames 400] [--seed 10000]
                               [--sampler NAME] [--steps 4] [--out runs/pong_dream.gif] [--scale 4]

The dream starts from K real frames of a held-out game; from then on the tracker (the policy the
data was collected with, data/policies.py) looks at each *dreamed* frame, finds the ball and its
paddle there and steers, so the paddle meets the ball only if the dream keeps both. Prints one JSON
line: frames with a ball, the ball's returns off the right (ours) and left paddle (its horizontal
motion reversing next to them), and frames where the ball was lost in mid-field (seen, then not,
away from both goals). The gif shows every frame at ``scale`` (nearest), at the game's 15 Hz.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldgame.data.policies import TrackerPolicy
from worldgame.engine.dream import Dream
from worldgame.eval.rollout import held_out_episode
from worldgame.games import make_game
from worldgame.models.sampler import Sampler
from worldgame.models.world_model import WorldModel


def ball_column(frame: np.ndarray) -> float | None:
    """The ball's column in native (160-wide) units, by the tracker's own colour rule."""
    h, w = frame.shape[:2]
    sy, sx = h / TrackerPolicy.NATIVE[0], w / TrackerPolicy.NATIVE[1]
    field = frame[int(np.ceil(TrackerPolicy.FIELD_ROWS[0] * sy)):int(TrackerPolicy.FIELD_ROWS[1] * sy)]
    cols = np.argwhere(field[..., 2] >= TrackerPolicy.BALL_MIN_BLUE)[:, 1]
    return float(cols.mean()) / sx if len(cols) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default="checkpoints/pong")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--seed", type=int, default=10000)
    ap.add_argument("--sampler", default=None, help="lcm | ddim | dpmsolver (default: the checkpoint's play default)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="runs/pong_dream.gif")
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)

    model = WorldModel.from_pretrained(args.checkpoint, device="cpu")
    game_cfg = model.metadata["game_config"]
    k = model.context_length
    real, _ = held_out_episode(game_cfg, args.seed, 400)
    seen = [ball_column(f) is not None for f in real]
    start = next((t for t in range(k + 5, len(real)) if all(seen[t - 5:t + 1])), len(real) - 1)  # a rally under way
    real = real[start + 1 - k:start + 1]
    dream = Dream(model, sampler=Sampler(model, args.sampler), seed=args.seed)
    dream.set_steps(args.steps)
    dream.start(real[-k:], args.seed)
    shown: list[np.ndarray] = [real[-1]]
    policy = TrackerPolicy(make_game(game_cfg), seed=args.seed, see=lambda: shown[-1])
    frames, returns_ours, returns_theirs, lost = [], 0, 0, 0
    last_x, last_dx = None, 0.0
    for _ in range(args.frames):
        frame = dream.step(policy()).frame.copy()
        shown.append(frame)
        frames.append(frame)
        x = ball_column(frame)
        if x is None:
            lost += last_x is not None and 30 < last_x < 130  # vanished mid-field, not through a goal
        elif last_x is not None and x != last_x:
            dx = x - last_x
            if last_dx > 0 and dx < 0 and x > 110:
                returns_ours += 1
            if last_dx < 0 and dx > 0 and x < 50:
                returns_theirs += 1
            last_dx = dx
        last_x = x
    seen = sum(ball_column(f) is not None for f in frames)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    big = [Image.fromarray(f).resize((f.shape[1] * args.scale, f.shape[0] * args.scale), Image.NEAREST) for f in frames]
    big[0].save(out, save_all=True, append_images=big[1:], duration=int(1000 / model.metadata.get("tick_hz", 15)), loop=0)
    print(json.dumps({"checkpoint": args.checkpoint, "frames": args.frames, "sampler": dream.sampler.name,
                      "steps": args.steps, "ball_seen_frac": round(seen / len(frames), 3),
                      "returns_right_paddle": returns_ours, "returns_left_paddle": returns_theirs,
                      "ball_lost_midfield": lost, "gif": str(out)}))


if __name__ == "__main__":
    main()
