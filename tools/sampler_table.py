"""The play-sampler table from the runs tools/sampler_table.sh made (docs/fidelity.md).

    python tools/sampler_table.py runs/sampler_table/<name> [MORE_FOLDERS ...]

With several folders (the same game; e.g. a checkpoint and a retrained one: the lever table) a
first column names each row's folder. One row per ``<sampler>_<spacing>_<steps>/eval.json`` (8 dreams x 2,000 frames each), FPS from
``bench_<sampler>.json`` (ONNX, 4 steps, the same run). The built-in game: orbs (mean over all dream
frames and at each horizon), the shares of frames with all orbs / none / more than the game has,
uncaused pip changes per 1,000 frames, control within 1 px; any game: blobs against the real game
(% at each horizon), count error and the control check. Prints markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MAX_BYTES = 8 << 20


def load(path: Path) -> dict | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def main(folders: list[Path]) -> None:
    rows, fps = [], {}
    for folder in folders:
        found = []
        for f in sorted(folder.glob("*/eval.json")):
            r = load(f)
            if r is not None:
                found.append({**r, "_folder": folder.name})
        found.sort(key=lambda r: (r["rollout"]["sampler"] != "lcm", r["rollout"]["sampler"], str(r["rollout"]["spacing"]),
                                  r["rollout"]["steps"]))
        rows += found
        for f in folder.glob("bench_*.json"):
            for res in (load(f) or {}).get("results", []):
                fps[(folder.name, res.get("sampler"), res.get("spacing"), res["steps"])] = res["fps"]
    if not rows:
        sys.exit(f"sampler_table: no */eval.json under {', '.join(map(str, folders))}; run tools/sampler_table.sh")
    many = len(folders) > 1
    first = rows[0]["objects"]
    hs = [str(h) for h in first["horizons"] if h >= 100]
    bouncer = "bouncer" in first
    where = "checkpoints " + ", ".join(sorted({r["checkpoint"] for r in rows})) if many else f"checkpoint {rows[0]['checkpoint']}"
    print(f"{first['dreams']} dreams x {rows[0]['rollout']['frames']} frames per row, held-out seeds; {where}\n")
    lead = "| run " if many else ""
    if bouncer:
        real = first["bouncer"]
        print(lead + "| sampler | spacing | steps | orbs mean (real " + f"{real['orbs']['real_mean']:.2f}) | "
              + " | ".join(f"@{h}" for h in hs) + " | count error | all shown % | none % | invented % | uncaused pips /1k | "
              "control ≤1 px % | TF PSNR | TF fg PSNR |" + (" FPS (ONNX, 4 steps) |" if fps else ""))
        print("|" + "---|" * (13 + len(hs) - 1 + many + bool(fps)))
    else:
        print(lead + "| sampler | spacing | steps | blobs mean (real " + f"{first['blobs']['real_mean']:.2f}) | "
              + " | ".join(f"@{h} % of real" for h in hs) + " | count error | control check | TF PSNR | TF fg PSNR |"
              + (" FPS (ONNX, 4 steps) |" if fps else ""))
        print("|" + "---|" * (8 + len(hs) - 1 + many + bool(fps)))
    for r in rows:
        ro, ob, tf = r["rollout"], r["objects"], r["teacher_forced"]
        steps = ro["steps"]
        key = str(steps) if str(steps) in tf["psnr"] else None
        tfp = f"{tf['psnr'][key]:.2f}" if key else "–"
        tff = f"{tf['fg_psnr'][key]:.2f}" if key else "–"
        speed = fps.get((r["_folder"], ro["sampler"], ro["spacing"], 4)) if steps == 4 else None
        head = (f"| {r['_folder']} " if many else "") + f"| {ro['sampler']} | {ro['spacing'] or '–'} | {steps} |"
        if bouncer:
            b = ob["bouncer"]
            curve = " | ".join(f"{b['orbs']['dream'][h]:.2f}" for h in hs)
            print(f"{head} {b['orbs']['dream_mean']:.2f} | {curve} | {num(b['orbs'].get('count_error'))} | "
                  f"{pct(b['all_orbs_frac']['dream'])} | "
                  f"{pct(b['no_orbs_frac']['dream'])} | {pct(b['invented_frac']['dream'])} | "
                  f"{b['pip_changes_per_1000']['dream_uncaused']:.1f} | {pct(b['control']['within_1px_frac'])} | "
                  f"{tfp} | {tff} |" + (f" {speed if speed is not None else '–'} |" if fps else ""))
        else:
            bl = ob["blobs"]
            curve = " | ".join(f"{100 * bl['dream'][h] / max(bl['real'][h], 1e-9):.0f}" for h in hs)
            passed = ob.get("control", {}).get("passed")
            print(f"{head} {bl['dream_mean']:.2f} | {curve} | {num(bl.get('count_error'))} | {'passed' if passed else 'FAILED' if passed is False else '–'} | "
                  f"{tfp} | {tff} |" + (f" {speed if speed is not None else '–'} |" if fps else ""))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python tools/sampler_table.py runs/sampler_table/<name> [MORE_FOLDERS ...]")
    main([Path(a) for a in sys.argv[1:]])
