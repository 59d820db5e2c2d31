"""Does a checkpoint's chance code carry the game's chance? Its figures on held-out windows whose
target frame holds an event (a point, a life lost, an end: where the game draws) beside ordinary ones:
the prior's cross-entropy on the posterior's code (nats; low = the prior foresees it), and 1-step
teacher-forced PSNR told the posterior's code, given the prior's likeliest, and drawn from the prior.
A working code is nearly certain on ordinary windows and uncertain, and worth decibels, on events.

On Bouncer, one more line for the windows whose target is a hit (an orb respawns far from the
player): the orbs in the real next frame against those in the 4-step sample (DDIM, leading) told the
posterior's code and drawn from the prior, and how far apart the respawned orbs of the training
data's hits lie under one value of the code against under any (``place_spread_per_code`` against
``place_spread``, rms px): a code that says where the respawn goes gathers its places.
And a line for the windows where a coin appeared with nothing else happening (data collected with the
``appeared`` column): coins in the real next frame, told and drawn, there and on as many quiet
coinless windows where none appeared (a dream that averages the coin's chance draws none, or many).

    python tools/chance_probe.py CHECKPOINT DATA [WINDOWS]     # e.g. runs/bouncer_map_last data/bouncer 256

One JSON line per kind of window. Reads the checkpoint through the same loader as play (every check).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from worldgame.errors import WorldgameError
from worldgame.models import WorldModel
from worldgame.models.schedulers import lcm_scheduler
from worldgame.train.data import load_frame_data
from worldgame.train.latents import LatentBatches, encode_all, teacher_forced_psnr
from worldgame.train.sampling import sample
from worldgame.train.teacher import chance_figures, expected_next


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python tools/chance_probe.py CHECKPOINT DATA [WINDOWS]", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    try:
        model = WorldModel.from_pretrained(Path(argv[0]), device="cpu", half=False, teacher=True)
        if model.chance is None:
            raise WorldgameError(f"checkpoint {argv[0]} has no chance code (chance/)")
        _, val = load_frame_data(argv[1], model.context_length, 0.05)
    except WorldgameError as e:
        print(f"chance_probe: {e}", file=sys.stderr)
        return 2
    n = int(argv[2]) if len(argv) == 3 else 256
    net = model.teacher if model.teacher is not None else model.denoiser
    appeared = bool(model.chance.config.get("appeared", False))
    if appeared and val.appeared is None:
        print(f"chance_probe: {argv[1]} does not record when a coin appeared; collect it again", file=sys.stderr)
        return 2
    batches = LatentBatches(val, encode_all(model.vae, val.frames, torch.device("cpu")).float(), model.context_length,
                            0.0, torch.device("cpu"), bool(net.config.noise_per_frame), appeared=appeared)
    lcm, drawer = lcm_scheduler(model.prediction_type), model.chance.drawer()  # the code drawn as play draws it
    ordinary = val.ends[torch.randperm(len(val.ends), generator=torch.Generator().manual_seed(0))[:n]]
    for kind, ends in (("event", val.rare_ends(0)[:n]), ("ordinary", ordinary)):
        if not len(ends):
            continue
        batch = batches.at(ends, None)
        with torch.no_grad():
            figures = chance_figures(net, model.chance, lcm, model.vae, batch)
            figures["psnr1_drawn"] = teacher_forced_psnr(lambda c, a: sample(net, lcm, c, a, 1, draw_code=drawer), model.vae, batch)
        print(json.dumps({"windows": kind, "count": len(ends), **{k: round(v, 3) for k, v in figures.items()}}), flush=True)
    if model.metadata.get("game") == "bouncer":
        figures = respawns(model, net, val, batches, n)
        print(json.dumps({"windows": "hit", **{k: round(v, 3) for k, v in figures.items()}}), flush=True)
        if val.appeared is not None:
            figures = appearances(model, net, val, batches, n)
            print(json.dumps({"windows": "coin appeared", **{k: round(v, 3) for k, v in figures.items()}}), flush=True)
    return 0


@torch.no_grad()
def respawns(model: WorldModel, net, val, batches: LatentBatches, n: int) -> dict[str, float]:
    """Does the code draw a hit's respawned orb? (the module's docstring)."""
    from orb_losses import blobs

    from worldgame.eval import bouncer_checks
    from worldgame.games.bouncer import ORB
    from worldgame.models.schedulers import teacher_scheduler
    from worldgame.models.world_model import to_frames

    hits = val.ends[val.rewards[val.ends] < 0][:n]
    batch = batches.at(hits, None)
    c, a = batch["context"], batch["actions"]
    ddim = teacher_scheduler(lcm_scheduler(model.prediction_type).config)
    expected = expected_next(net, model.chance, c, a, batch.get("events"), None, ddim)
    code = model.chance.code(model.chance.posterior(c, a, batch["target"], expected), batch.get("events"), None).argmax(-1)
    orbs = lambda z: bouncer_checks.orbs_per_frame(to_frames(model.vae.decode(z)).numpy())
    real = bouncer_checks.orbs_per_frame(val.frames[hits].numpy())
    told = orbs(sample(net, ddim, c, torch.cat([a, code], 1), 4, seed=1))
    drawn = orbs(sample(net, ddim, c, a, 4, seed=1, draw_code=model.chance.drawer()))
    places, codes = [], []
    for i, end in enumerate(hits.tolist()):  # the orb that appeared, where one did
        before, after = blobs(val.frames[end - 1].numpy(), ORB), blobs(val.frames[end].numpy(), ORB)
        new = [o for o in after if all(math.hypot(o[0] - p[0], o[1] - p[1]) > 6 for p in before)]
        if len(new) == 1:
            places.append(new[0])
            codes.append(tuple(code[i, int(model.chance.config.event_group):].tolist()))
    spread = lambda p: float(np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean())) if len(p) > 1 else float("nan")
    by_code: dict[tuple, list] = {}
    for p, k in zip(places, codes):
        by_code.setdefault(k, []).append(p)
    shared = [np.array(v) for v in by_code.values() if len(v) > 1]
    return {"count": len(hits), "orbs_real": real.mean(), "orbs_told": told.mean(), "orbs_drawn": drawn.mean(),
            "told_fewer": (told < real).mean(), "drawn_fewer": (drawn < real).mean(), "respawns": len(places),
            "place_spread_per_code": float(np.sqrt(np.mean([((v - v.mean(0)) ** 2).sum(1).mean() for v in shared])))
            if shared else float("nan"), "place_spread": spread(np.array(places))}


@torch.no_grad()
def appearances(model: WorldModel, net, val, batches: LatentBatches, n: int) -> dict[str, float]:
    """Does the code draw a coin where one appeared (with nothing else happening), and none elsewhere?
    Coins in the real next frame against the 4-step sample told the posterior's code and drawn from the
    prior, on the windows where a coin appeared and on as many coinless quiet ones where none did."""
    from worldgame.eval import bouncer_checks
    from worldgame.models.schedulers import teacher_scheduler
    from worldgame.models.world_model import to_frames

    coins = lambda f: bouncer_checks.coins_per_frame(f)
    quiet = (val.rewards[val.ends] == 0) & ~val.dones[val.ends]
    came = val.ends[quiet & val.appeared[val.ends]][:n]
    before = torch.from_numpy(coins(val.frames[val.ends - 1].numpy()) == 0)
    none = val.ends[quiet & ~val.appeared[val.ends] & before][:len(came)]
    ddim = teacher_scheduler(lcm_scheduler(model.prediction_type).config)
    out: dict[str, float] = {"count": len(came)}
    for kind, ends in (("appeared", came), ("none", none)):
        batch = batches.at(ends, None)
        c, a = batch["context"], batch["actions"]
        expected = expected_next(net, model.chance, c, a, batch.get("events"), None, ddim)
        code = model.chance.code(model.chance.posterior(c, a, batch["target"], expected), batch.get("events"), None).argmax(-1)
        told = coins(to_frames(model.vae.decode(sample(net, ddim, c, torch.cat([a, code], 1), 4, seed=1))).numpy())
        drawn = coins(to_frames(model.vae.decode(sample(net, ddim, c, a, 4, seed=1, draw_code=model.chance.drawer()))).numpy())
        real = coins(val.frames[ends].numpy())
        out |= {f"{kind}_coins_real": real.mean(), f"{kind}_coins_told": told.mean(), f"{kind}_coins_drawn": drawn.mean()}
        if kind == "appeared":
            out["place_named"] = float((code[:, int(model.chance.config.event_group):] != 0).any(1).float().mean())
    return out


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
