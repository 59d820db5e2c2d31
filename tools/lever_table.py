"""The object-lever table: one row per eval.json, the columns a player would care about.

    python tools/lever_table.py runs/levers        # every <label>/eval.json under it, sorted by label
    bash tools/levers.sh                           # re-runs the evals that fill runs/levers, then this

Columns: autoencoder foreground PSNR/recall; teacher-forced PSNR and foreground PSNR at 4 LCM steps
(and copy-last-frame's foreground PSNR); orbs alive in the dreams at 10/100/300/1,000/2,000 frames
(real game ≈ 2.9) and their mean over every dream frame; share of dream frames showing all 3 orbs; pip changes without a cause per 1,000
frames; share of frames where the player moved within 1 px of what the key says; collapse.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(label: str, r: dict) -> str:
    tf, obj = r["teacher_forced"], r.get("objects", {})
    b = obj.get("bouncer", {})
    orbs = b.get("orbs", {}).get("dream", {})
    cells = [
        label,
        f"{r['vae_foreground']['fg_psnr']:.1f} / {r['vae_foreground']['fg_recall']:.2f}" if "vae_foreground" in r else "",
        f"{tf['psnr']['4']:.2f}",
        f"{tf['fg_psnr']['4']:.1f} (copy {tf['fg_psnr']['copy_last']:.1f})" if "fg_psnr" in tf else "",
        " / ".join(f"{orbs[h]:.2f}" for h in ("10", "100", "300", "1000", "2000") if h in orbs),
        f"{b['orbs']['dream_mean']:.2f}" if b else "",
        f"{100 * b['all_orbs_frac']['dream']:.0f} %" if b else "",
        f"{b['pip_changes_per_1000']['dream_uncaused']:.1f}" if b else "",
        f"{100 * b['control']['within_1px_frac']:.1f} %" if b and b["control"]["within_1px_frac"] is not None else "",
        "yes" if r["rollout"].get("collapsed") else "no",
    ]
    return "| " + " | ".join(cells) + " |"


def main(root: str) -> None:
    print("| lever | AE fg PSNR / recall | TF PSNR @4 | TF fg PSNR @4 | orbs @10/100/300/1k/2k | orbs, mean of 2k | all orbs | uncaused pips /1k | control ≤ 1 px | collapsed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(Path(root).glob("*/eval.json")):
        print(row(path.parent.name, json.loads(path.read_text())))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/levers")
