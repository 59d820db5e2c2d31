"""Write a trained run folder as a shipped checkpoint: fp16 weights, no resumable state or latents.

    python tools/ship_checkpoint.py runs/boxing checkpoints/boxing ['{"note": "..."}']

Replaces the parts of DST (vae, denoiser, teacher, scheduler, worldgame.json) and removes its
eval/ folder, whose figures belong to the old weights: run `worldgame eval checkpoint=DST
out=DST/eval` afterwards. The optional JSON object is merged into worldgame.json (provenance).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from worldgame.models import WorldModel


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    notes = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    model = WorldModel.from_pretrained(src, device="cpu", teacher=True)
    for part in ("vae", "denoiser", "teacher", "scheduler", "eval", "worldgame.json"):
        p = dst / part
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    model.metadata.update(notes)
    model.save_pretrained(dst, half=True)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"wrote {dst} ({size / 1e6:.1f} MB):", sorted(x.name for x in dst.iterdir()))


if __name__ == "__main__":
    main()
