"""Grow a one-place ``where`` checkpoint into a two-place one that draws exactly what it drew.

On Bouncer a hit sends one orb far away in 51 of 77 held-out hits, two in 15 and three in 3 (the one
that hit and those near the player's respawn point): a code naming one place leaves the others to
the denoiser's average, and they fade. A code of two places (``model.denoiser.chance_groups=5`` with
the event group) names the second. This starts it from a trained one-place model:

    python tools/more_places.py SRC OUT    # e.g. runs/bouncer_wg_last runs/bouncer_wg2_init

then ``worldgame train stage=teacher ... model.denoiser.chance_groups=5 train.teacher.init=OUT``.
SRC is a checkpoint folder (denoiser/, teacher/, chance/, vae/, scheduler/, worldgame.json) whose
chance part is a ``where`` code of one place with an event group. OUT must not exist. In OUT:

* the second place's code maps are the first place's minus its corner's (value 0, "nothing new"),
  so a second place at the corner adds nothing, and one elsewhere adds what a first place there
  would have added over nothing; its embedding's input columns start at zero;
* the prior draws the second place at the corner (its head's rows: zero weights, the corner's bias
  8, so e^8 : 15 for it), learning when there is a second place from there.

So at the start OUT draws every frame exactly as SRC (the second place always the corner).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from worldgame.models.chance import ChanceCode
from worldgame.models.denoisers import denoiser_class

CORNER_BIAS = 8.0


def grow_denoiser(old, places_at: int, values: int):
    """``old`` (an ActionDenoiser with a one-place where code at groups places_at, places_at + 1) with
    two more groups: the second place."""
    config = dict(old.config)
    config["chance_groups"] = old.config.chance_groups + 2
    new = type(old).from_config({k: v for k, v in config.items() if not k.startswith("_")})
    state, old_state = new.state_dict(), old.state_dict()
    for name, value in old_state.items():
        target = state[name]
        if target.shape == value.shape:
            state[name] = value
        elif name.endswith("chance_map_embedding.weight"):  # (G V, dim, n, n): the second place's rows appended
            v = values
            first = value[places_at * v:(places_at + 2) * v].view(2, v, *value.shape[1:])
            second = first - first[:, :1]  # minus the corner's map: "a place here instead of nothing"
            state[name] = torch.cat([value, second.reshape(2 * v, *value.shape[1:])], 0)
        elif name.endswith("chance_embedding.weight"):  # (G V, dim)
            v = values
            state[name] = torch.cat([value, value[places_at * v:(places_at + 2) * v]], 0)
        elif name == "cond_proj.0.weight":  # (emb, inputs): the code's embeddings last
            state[name] = torch.cat([value, torch.zeros(value.shape[0], target.shape[1] - value.shape[1])], 1)
        else:
            raise SystemExit(f"more_places: {name} is {tuple(value.shape)} in SRC and {tuple(target.shape)} grown")
    new.load_state_dict(state)
    return new


def grow_chance(old: ChanceCode) -> ChanceCode:
    config = {k: v for k, v in old.config.items() if not k.startswith("_")}
    config["groups"] += 2
    new = ChanceCode.from_config(config)
    state, v = new.state_dict(), old.config.values
    for name, value in old.state_dict().items():
        target = state[name]
        if target.shape == value.shape:
            state[name] = value
        elif name == "prior_learnt.head.3.weight":  # (groups V, hidden): the second place never, to start
            state[name] = torch.cat([value, torch.zeros(2 * v, value.shape[1])], 0)
        elif name == "prior_learnt.head.3.bias":
            corner = torch.zeros(2, v)
            corner[:, 0] = CORNER_BIAS
            state[name] = torch.cat([value, corner.flatten()], 0)
        elif name == "prior_learnt.earlier.weight":  # (groups V, 2 width): zero, as a fresh chained prior's
            state[name] = torch.cat([value, torch.zeros(2 * v, value.shape[1])], 0)
        else:
            raise SystemExit(f"more_places: chance {name} is {tuple(value.shape)} in SRC and {tuple(target.shape)} grown")
    new.load_state_dict(state)
    return new


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/more_places.py SRC OUT", file=sys.stderr)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    if dst.exists():
        print(f"more_places: {dst} exists; choose a new folder", file=sys.stderr)
        return 2
    chance = ChanceCode.from_pretrained(src / "chance").float()
    if chance.places != 1 or not chance.config.event_group or not chance.chained:
        print(f"more_places: {src}/chance is not a one-place where code with an event group and a chained prior", file=sys.stderr)
        return 2
    grown = grow_chance(chance)
    nets = {part: grow_denoiser(denoiser_class(src / part).from_pretrained(src / part).float(), 1, chance.config.values)
            for part in ("denoiser", "teacher")}
    dst.mkdir(parents=True)
    for part in ("vae", "scheduler"):
        shutil.copytree(src / part, dst / part)
    shutil.copy(src / "worldgame.json", dst / "worldgame.json")
    for part, net in nets.items():
        net.save_pretrained(dst / part, safe_serialization=True)
    grown.save_pretrained(dst / "chance", safe_serialization=True)
    print(f"wrote {dst}: {grown.config.groups} groups, two places")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
