"""The source's LCM table on a checkpoint: the teacher at 50 DDIM steps against 8 / 4 / 2 / 1 LCM steps.

    bash tools/lcm_table.sh [CHECKPOINT] [OUT]           # runs the eval and bench sweeps, then this
    python tools/lcm_table.py runs/lcm_table/bouncer      # the markdown table from their result.json files

Reads the sweeps tools/lcm_table.sh made (tools/sweep_table.py's reader): one eval job per sampler
(teacher-forced PSNR and foreground PSNR of one predicted frame from real context, objects alive in
the closed-loop dreams at frame 1,000 and over all of them) and bench jobs (FPS of play's per-frame
path, batch 1). "% of teacher" divides by the teacher's figure; "x speed" divides by the teacher's FPS
on the same backend (torch: the teacher has no ONNX path). The ONNX column is what play runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_table import dig, load_rows


def objects_at(r: dict, horizon: str) -> tuple[float | None, float | None, str]:
    """Objects alive in the dreams at ``horizon`` (and the real game's): orbs in the built-in game, else blobs."""
    if dig(r, "objects.bouncer.orbs.dream") is not None:
        o = dig(r, "objects.bouncer.orbs")
        return dig(o, f"dream.{horizon}"), dig(o, f"real.{horizon}"), "orbs"
    return dig(r, f"objects.blobs.dream.{horizon}"), dig(r, f"objects.blobs.real.{horizon}"), "sprite blobs"


def pct(v: float | None, ref: float | None) -> str:
    return f"{100 * v / ref:.0f} %" if v is not None and ref else "–"


def num(v: float | None, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


def main(folder: str, horizon: str = "1000") -> None:
    if not Path(folder).is_dir():
        sys.exit(f"lcm_table: {folder}: no such folder; run tools/lcm_table.sh first")
    rows = load_rows([Path(folder)])
    shipped = {r["_settings"].get("checkpoint") for r in rows if r["kind"] == "eval" and r["_settings"].get("sampler") == "teacher"}
    evals, distilled = {}, {}
    for r in rows:
        if r["kind"] == "eval":  # a checkpoint other than the teacher's: a distilled student (3rd argument of the .sh)
            mine = evals if r["_settings"].get("checkpoint") in shipped else distilled
            mine[(r["_settings"].get("sampler", "lcm"), int(r["_settings"]["rollout_steps"]))] = r["_raw"]
    fps = {}
    for r in rows:
        if r["kind"] == "bench":
            s = r["_settings"]
            fps[(s.get("sampler", "lcm"), int(s["steps"]), r["_raw"].get("backend"))] = r["fps"]
    teacher = next(((k, v) for k, v in evals.items() if k[0] == "teacher"), None)
    if teacher is None:
        sys.exit(f"lcm_table: no sampler=teacher eval job under {folder}; run tools/lcm_table.sh")
    (_, t_steps), t_eval = teacher
    tf = t_eval["teacher_forced"]
    t_obj, real_obj, what = objects_at(t_eval, horizon)
    t_fps = fps.get(("teacher", t_steps, "torch"))
    print(f"| sampler | TF PSNR (dB) | % | TF fg PSNR (dB) | % | {what} alive @{horizon} (real {num(real_obj)}) | % | "
          f"{what}, mean of all dream frames | FPS (torch) | × speed | FPS (onnx, as played) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [(evals, "teacher", t_steps)] + sorted(((evals, s, n) for s, n in evals if s == "lcm"), key=lambda k: -k[2])
    lines += sorted(((distilled, s, n) for s, n in distilled), key=lambda k: -k[2])
    for source, sampler, steps in lines:
        r = source[(sampler, steps)]
        key = "teacher" if sampler == "teacher" else str(steps)
        p, fg = dig(r, f"teacher_forced.psnr.{key}"), dig(r, f"teacher_forced.fg_psnr.{key}")
        obj, _, _ = objects_at(r, horizon)
        mean = dig(r, "objects.bouncer.orbs.dream_mean")
        if mean is None:  # any game: blobs averaged over the horizons measured
            curve = dig(r, "objects.blobs.dream") or {}
            mean = sum(curve.values()) / len(curve) if curve else None
        f_torch, f_onnx = fps.get((sampler, steps, "torch")), fps.get((sampler, steps, "onnx"))
        name = f"teacher, {steps} DDIM steps" if sampler == "teacher" else f"LCM, {steps} step{'s' * (steps > 1)}"
        if source is distilled:
            name = f"distilled student, {steps} step{'s' * (steps > 1)}"  # same network size: the LCM rows' FPS
        t_mean = dig(t_eval, "objects.bouncer.orbs.dream_mean")
        print(f"| {name} | {num(p)} | {pct(p, dig(tf, 'psnr.teacher'))} | {num(fg)} | {pct(fg, dig(tf, 'fg_psnr.teacher'))} | "
              f"{num(obj)} | {pct(obj, t_obj)} | {num(mean)}{'' if t_mean is None else ' (' + pct(mean, t_mean) + ')'} | "
              f"{num(f_torch, '.1f')} | {num(f_torch / t_fps if f_torch and t_fps else None, '.1f')}× | {num(f_onnx, '.1f')} |")


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit("usage: python tools/lcm_table.py OUT_FOLDER_OF_lcm_table.sh [HORIZON=1000]")
    main(*sys.argv[1:])
