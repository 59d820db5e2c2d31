"""The speed table of docs/results.md: `worldgame bench` of this tree (onnx and torch backends) against a
baseline commit, interleaved in one run (machines of one kind differ up to 2x: only same-run
ratios mean anything).

    python tools/speed_table.py [--baseline e053ed9] [--rounds 2]

The baseline is checked out with `git worktree` into a temporary folder and run from there with
this venv (its own shipped checkpoint, its own defaults). Prints the markdown table and the JSON
lines it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench(cwd: Path, *overrides: str) -> list[dict]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(cwd)}
    out = subprocess.run([sys.executable, "-m", "worldgame.cli", "bench", "threads=1", *overrides], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[-1]
    print(line, file=sys.stderr)
    return json.loads(line)["results"]


def mean(runs: list[list[dict]], i: int, get) -> float:
    return sum(get(r[i]) for r in runs) / len(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="e053ed9")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "-f", "-q", str(base), args.baseline], cwd=REPO, check=True)
        try:
            old, new, torch_ = [], [], []
            for _ in range(args.rounds):
                old.append(bench(base))
                new.append(bench(REPO))
                torch_.append(bench(REPO, "backend=torch"))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
    fps = lambda r: r["fps"]
    print(f"| LCM steps | FPS (default: onnx) | p50 / p95 ms | FPS, backend=torch | FPS, {args.baseline} | × | p95 ms, {args.baseline} |")
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(new[0]):
        f_new, f_old = mean(new, i, fps), mean(old, i, fps)
        p50, p95 = mean(new, i, lambda x: x["latency_ms"]["p50"]), mean(new, i, lambda x: x["latency_ms"]["p95"])
        print(f"| {r['steps']} | {f_new:.1f} | {p50:.2f} / {p95:.2f} | {mean(torch_, i, fps):.1f} | {f_old:.1f} | "
              f"{f_new / f_old:.2f} | {mean(old, i, lambda x: x['latency_ms']['p95']):.2f} |")


if __name__ == "__main__":
    main()
