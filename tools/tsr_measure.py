"""How the in-between frames of temporal super-resolution (tsr.py) were chosen: ghosting, added
content and cost of three ways to make the frame halfway between two model frames.

    python tools/tsr_measure.py [CHECKPOINT] [FRAMES] [BACKEND]

dreams FRAMES frames (default 400) from the checkpoint (default: the shipped Bouncer model) at 4
LCM steps on the bench's held-key script, with the real game beside it, and for every pair of
consecutive frames makes the midpoint three ways:

* ``latent``: decode the lerp of the two predicted latents (the model's own decoder);
* ``blend``: the two frames mixed 50/50;
* ``warp``: tsr.py's motion-compensated frame.

Per method, means over the pairs: ``ghost`` — of the pixels that change between the two frames
(by more than 48 levels), the share the midpoint shows halfway between both (a moving object seen
twice, half-transparent); ``new_px`` — pixels a frame whose colour is more than 16 levels outside
the range of its two model frames at that pixel (content in neither: artifacts, flicker);
``ms`` — the cost of one midpoint frame. The warp and the blend are also run on the real game's frames.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np


def midpoint_metrics(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """(ghost share, new pixels) of midpoint ``m`` between frames ``a`` and ``b`` (see the module docstring)."""
    a, b, m = (x.astype(np.int16) for x in (a, b, m))
    outside = (np.maximum(m - np.maximum(a, b), 0) + np.maximum(np.minimum(a, b) - m, 0)).max(-1)
    change = np.abs(a - b).max(-1)
    changed = change > 48
    nearest = np.minimum(np.abs(m - a).max(-1), np.abs(m - b).max(-1))
    ghost = float((nearest > 0.25 * change)[changed].mean()) if changed.any() else float("nan")
    return ghost, float((outside > 16).sum())


def _ms(fn: Callable[[], object], n: int = 300) -> float:
    for _ in range(10):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def measure(checkpoint: str | None = None, frames: int = 400, backend: str = "auto") -> dict[str, dict[str, float]]:
    import torch

    from worldgame.commands.bench import held_keys
    from worldgame.engine.engines import Wants
    from worldgame.engine.factory import load_model, model_engine
    from worldgame.frontend.tsr import Interpolator
    from worldgame.games import make_game

    model = load_model(checkpoint, "cpu", None, None if checkpoint else make_game({"_target_": "worldgame.games.bouncer.Bouncer"}))
    engine = model_engine(model, 3, backend=backend, steps=4, fusion="off")
    engine.want(Wants(real=True))
    engine.reset(3)
    names, keys = engine.action_names, held_keys()
    key_action = {"right": "RIGHT", "left": "LEFT", "up": "UP", "down": "DOWN", "space": "FIRE"}
    pairs, last = [], None
    for _ in range(frames):
        held = [key_action[k] for k in next(keys) if key_action[k] in names]
        result = engine.step(names.index(held[0]) if held else 0)
        now = (engine.dream.context[0, -1].clone(), result.frame.copy(), result.real.copy())
        if last is not None:
            pairs.append((last, now))
        last = now
    warp, blend = Interpolator("warp"), Interpolator("blend")

    def interpolate(how: Interpolator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        how.start(a, b)
        return how.frame(0.5).copy()

    def latent(za: torch.Tensor, zb: torch.Tensor) -> np.ndarray:
        return model.decode(torch.lerp(za, zb, 0.5)[None])[0].cpu().numpy()

    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in ("latent", "blend", "warp", "blend, real game", "warp, real game")}
    for (za, fa, ra), (zb, fb, rb) in pairs:
        rows["latent"].append(midpoint_metrics(fa, fb, latent(za, zb)))
        rows["blend"].append(midpoint_metrics(fa, fb, interpolate(blend, fa, fb)))
        rows["warp"].append(midpoint_metrics(fa, fb, interpolate(warp, fa, fb)))
        rows["blend, real game"].append(midpoint_metrics(ra, rb, interpolate(blend, ra, rb)))
        rows["warp, real game"].append(midpoint_metrics(ra, rb, interpolate(warp, ra, rb)))
    (za, fa, _), (zb, fb, _) = pairs[0]
    cost = {"latent": _ms(lambda: latent(za, zb)), "blend": _ms(lambda: interpolate(blend, fa, fb)),
            "warp": _ms(lambda: interpolate(warp, fa, fb))}
    report = {}
    for name, values in rows.items():
        ghost, new = np.nanmean(np.array(values), axis=0)
        report[name] = {"ghost": round(float(ghost), 3), "new_px": round(float(new), 2)}
        if name in cost:
            report[name]["ms"] = round(cost[name], 3)
    print(f"{len(pairs)} frame pairs, backend {engine.backend}, {torch.get_num_threads()} thread(s)")
    for name, row in report.items():
        print(f"  {name:18s} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    measure(args[0] if args else None, int(args[1]) if len(args) > 1 else 400, args[2] if len(args) > 2 else "auto")
