"""Does a checkpoint's chance code carry the game's chance? Its figures on held-out windows whose
target frame holds an event (a point, a life lost, an end: where the game draws) beside ordinary ones:
the prior's cross-entropy on the posterior's code (nats; low = the prior foresees it), and 1-step
teacher-forced PSNR told the posterior's code, given the prior's likeliest, and drawn from the prior.
A working code is nearly certain on ordinary windows and uncertain, and worth decibels, on events.

    python tools/chance_probe.py CHECKPOINT DATA [WINDOWS]     # e.g. runs/bouncer_map_last data/bouncer 256

One JSON line per kind of window. Reads the checkpoint through the same loader as play (every check).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from worldgame.errors import WorldgameError
from worldgame.models import WorldModel
from worldgame.models.schedulers import lcm_scheduler
from worldgame.train.data import load_frame_data
from worldgame.train.latents import LatentBatches, encode_all, teacher_forced_psnr
from worldgame.train.sampling import sample
from worldgame.train.teacher import chance_figures


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
    batches = LatentBatches(val, encode_all(model.vae, val.frames, torch.device("cpu")).float(), model.context_length,
                            0.0, torch.device("cpu"), bool(net.config.noise_per_frame))
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
