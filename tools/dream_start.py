"""How Bouncer dreams begin: the orb count of each dream's first frames, and a strip of them.

    python tools/dream_start.py CHECKPOINT [frames] [dreams] [sampler] [spacing] [strip.png]

The dreams start, as `worldgame eval`'s long ones do, from the held-out episode's first 4 frames and
follow its actions, each with its own sampling noise. Prints the game's count and each dream's for
the first 40 frames and where it first falls below three; the strip (3x scale) shows the game and
the dream that loses an orb first, frame by frame, its first 16 frames in two rows.
"""

from __future__ import annotations

import sys

import numpy as np
from orb_losses import held_out_dreams  # tools/ is on the path when a tool runs
from PIL import Image

from worldgame.eval import bouncer_checks as bc


def main(checkpoint: str, frames: int = 120, dreams: int = 8, sampler_name: str | None = None,
         spacing: str | None = None, strip: str = "dream_start.png") -> None:
    _, real, made = held_out_dreams(checkpoint, frames, dreams, sampler_name, spacing)
    game = real[4 : 4 + frames]
    print("game ", bc.orbs_per_frame(game)[:40].tolist())
    first = []
    for i, dream in enumerate(made):
        counts = bc.orbs_per_frame(dream)
        first.append(int(np.flatnonzero(counts < 3)[0]) if (counts < 3).any() else frames)
        print(f"dream {i}", counts[:40].tolist(), "first below three:", first[-1] if first[-1] < frames else None)
    big = lambda f: np.kron(f, np.ones((3, 3, 1), np.uint8))
    dream = made[int(np.argmin(first))]
    rows = [np.concatenate([big(game[t]) for t in range(0, 16, 2)], 1),
            np.concatenate([big(dream[t]) for t in range(0, 16, 2)], 1),
            np.concatenate([big(dream[t]) for t in range(1, 16, 2)], 1)]
    Image.fromarray(np.concatenate(rows, 0)).save(strip)
    print(f"strip: {strip} (the game's even frames; the dream's even frames; its odd frames)")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]), *sys.argv[4:7])
