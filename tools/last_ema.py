"""Write a teacher run's LAST EMA weights (from its resumable state) as a checkpoint folder beside it.

The teacher stage keeps the weights of its best validation score, which for a warm start is often an
early step; the chance-code studies of docs/fidelity.md section 5 evaluate the run's end instead:

    python tools/last_ema.py RUN OUT      # e.g. runs/bouncer_map runs/bouncer_map_last

RUN is a teacher run folder (state_teacher.pt, denoiser/, vae/, scheduler/, worldgame.json; chance/
where the model has a code). OUT must not exist. The state is read with torch.load(weights_only=True).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from worldgame.models.chance import ChanceCode
from worldgame.models.denoisers import denoiser_class


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/last_ema.py RUN OUT", file=sys.stderr)
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    if not (src / "state_teacher.pt").is_file():
        print(f"last_ema: {src} holds no state_teacher.pt (a teacher run folder)", file=sys.stderr)
        return 2
    if dst.exists():
        print(f"last_ema: {dst} exists; choose a new folder", file=sys.stderr)
        return 2
    state = torch.load(src / "state_teacher.pt", weights_only=True, map_location="cpu")
    denoiser = denoiser_class(src / "denoiser").from_pretrained(src / "denoiser").float()
    chance = ChanceCode.from_pretrained(src / "chance").float() if (src / "chance").is_dir() else None
    nets = denoiser if chance is None else torch.nn.ModuleDict({"denoiser": denoiser, "chance": chance})
    nets.load_state_dict(state["model"])
    params, shadow = list(nets.parameters()), state["extra"]["ema"]["shadow_params"]
    if len(shadow) != len(params):
        print(f"last_ema: the state's EMA has {len(shadow)} tensors, the model {len(params)}", file=sys.stderr)
        return 2
    with torch.no_grad():
        for p, s in zip(params, shadow):
            p.copy_(s)
    dst.mkdir(parents=True)
    for part in ("vae", "scheduler"):
        shutil.copytree(src / part, dst / part)  # copy2: the vae keeps its time stamp (the latents cache's key)
    shutil.copy(src / "worldgame.json", dst / "worldgame.json")
    for part in ("denoiser", "teacher"):
        denoiser.save_pretrained(dst / part, safe_serialization=True)
    if chance is not None:
        chance.save_pretrained(dst / "chance", safe_serialization=True)
    print(f"wrote {dst} from step {state['step']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
