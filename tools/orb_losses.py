"""Why do dreamed orbs disappear? Classify each lasting orb loss in a few Bouncer dreams.

    python tools/orb_losses.py CHECKPOINT [frames] [dreams] [sampler] [spacing]

(sampler and spacing: the play sampler the dreams are drawn with; by default the checkpoint's play default)

A loss is *lasting* when the orb count does not come back within 15 frames. It is put down to a
**shot** when a bolt was within 6 px of the lost orb in the 3 frames before, to a **hit** when the
player was that close, to a **merge** when another orb was, and otherwise to **fading**. In the
real game a shot or hit sends the orb to a random place (a respawn), a merge is temporary. A loss
where a **coin** was that close is put down to it (the game draws the orb over the coin; a dream
that blends the two keeps the coin).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from scipy import ndimage

from worldgame.eval import bouncer_checks as bc
from worldgame.eval.objects import colour_mask
from worldgame.eval.rollout import closed_loop, held_out_episode
from worldgame.games.bouncer import BOLT, COIN, ORB
from worldgame.models import WorldModel
from worldgame.models.sampler import Sampler


def blobs(frame: np.ndarray, colour, hud: int = 5) -> list[tuple[float, float]]:
    labels, n = ndimage.label(colour_mask(frame[hud:], colour), structure=np.ones((3, 3), bool))
    centres = ndimage.center_of_mass(np.ones_like(labels), labels, range(1, n + 1)) if n else []
    return [(x, y + hud) for y, x in centres]


def _near(o: tuple[float, float], points: list, reach: float = 6) -> bool:
    return any(np.hypot(o[0] - p[0], o[1] - p[1]) <= reach for p in points)


def held_out_dreams(checkpoint: str, frames: int, dreams: int, sampler_name: str | None = None,
                    spacing: str | None = None) -> tuple[Sampler, np.ndarray, np.ndarray]:
    """``dreams`` dreams of ``frames`` frames from the held-out Bouncer episode eval's long dreams start
    from (its first 4 frames, then its actions), each with its own sampling noise, on one thread.
    Returns the sampler, the episode's frames and the dreams (dreams, frames, H, W, 3)."""
    torch.set_num_threads(1)
    sampler = Sampler(WorldModel.from_pretrained(checkpoint, device="cpu"), sampler_name, spacing)
    sampler.trace(dreams)
    real, actions = held_out_episode({"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64}, 11000, frames + 4)
    return sampler, np.asarray(real), closed_loop(sampler, real, actions, [4] * dreams, frames, 4, 0).numpy()


def main(checkpoint: str, frames: int = 1000, dreams: int = 2, sampler_name: str | None = None,
         spacing: str | None = None) -> None:
    sampler, _, made = held_out_dreams(checkpoint, frames, dreams, sampler_name, spacing)
    causes = {"shot": 0, "hit": 0, "merge": 0, "coin": 0, "fading": 0}
    for d in made:
        orbs = bc.orbs_per_frame(d)
        track = bc.player_track(d)
        for t in np.flatnonzero(np.diff(orbs) < 0) + 1:
            if orbs[t : t + 15].max() >= orbs[t - 1]:
                continue  # back within 15 frames: a flicker, not a loss
            now = blobs(d[t], ORB)
            lost = [o for o in blobs(d[t - 1], ORB) if all(np.hypot(o[0] - p[0], o[1] - p[1]) > 4 for p in now)] or blobs(d[t - 1], ORB)[:1]
            o = lost[0]
            bolts = [p for s in range(max(0, t - 3), t) for p in blobs(d[s], BOLT)]
            players = [track[s] for s in range(max(0, t - 3), t + 1) if track[s] is not None]
            others = [p for p in blobs(d[t - 1], ORB) if p != o]
            coins = [p for s in range(max(0, t - 3), t + 1) for p in blobs(d[s], COIN)]
            cause = ("shot" if _near(o, bolts) else "hit" if _near(o, players) else "merge" if _near(o, others)
                     else "coin" if _near(o, coins) else "fading")
            causes[cause] += 1
    print({"checkpoint": checkpoint, "frames": frames, "dreams": dreams, "sampler": sampler.name, "lasting_orb_losses": causes})


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]), *sys.argv[4:6])
