"""Write a trained run folder as a shipped checkpoint: fp16 weights, no resumable state or latents.

    python tools/ship_checkpoint.py runs/boxing checkpoints/boxing ['{"note": "..."}']
    python tools/ship_checkpoint.py runs/ev checkpoints/bouncer --parts events,agent

Replaces the parts of DST (vae, denoiser, teacher, scheduler, worldgame.json) and removes its
eval/ folder, whose figures belong to the old weights: run `worldgame eval checkpoint=DST
out=DST/eval` afterwards. The optional JSON object is merged into worldgame.json (provenance).
``--parts`` ships only the named optional parts (events, agent) of SRC into DST, with their
training records, and keeps DST's autoencoder and denoisers (SRC must have been trained on them).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from worldgame.models import WorldModel


def ship_parts(src: Path, dst: Path, parts: list[str]) -> None:
    """Move SRC's optional parts (fp16) and their training records into the checkpoint DST."""
    model, donor = WorldModel.from_pretrained(dst, device="cpu", teacher=True), WorldModel.from_pretrained(src, device="cpu")
    for part in parts:
        if part not in ("events", "agent") or getattr(donor, part) is None:
            sys.exit(f"--parts: {src} has no {part}/ part to ship (parts: events, agent)")
        setattr(model, part, getattr(donor, part))
        model.metadata.setdefault("training", {})[part] = donor.metadata.get("training", {}).get(part)
    shutil.rmtree(dst / "eval", ignore_errors=True)
    model.save_pretrained(dst, half=True)
    print(f"shipped {', '.join(parts)} of {src} into {dst}; run `worldgame eval checkpoint={dst} out={dst}/eval`")


def main() -> None:
    args = sys.argv[1:]
    if "--parts" in args:
        i = args.index("--parts")
        ship_parts(Path(args[0]), Path(args[1]), args[i + 1].split(","))
        return
    src, dst = Path(args[0]), Path(args[1])
    notes = json.loads(args[2]) if len(args) > 2 else {}
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
