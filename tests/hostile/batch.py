"""Running `worldgame` command lines in driver processes (tests/hostile/driver.py): many command lines
per process, so torch and hydra load once. The hostile suites use it under a memory cap; other
modules batch their ordinary command lines through it (``run_cli_batch`` in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DRIVER = Path(__file__).resolve().parent / "driver.py"
AS_CAP = 4 << 30  # address-space cap of the driver (torch alone maps ~1 GB)


def run_driver(cases: list[tuple[str, list[str]]], work: Path, fsize: int | None = None, timeout: int = 900,
               workers: int = 1, cap: int | None = AS_CAP, cwd: Path | None = None) -> dict:
    """Run the cases through tests/hostile/driver.py; returns {id: result} (stdout, stderr, rc, ...).

    workers > 1 deals the cases to that many driver processes run side by side (for cases that do not
    depend on one another's files), round-robin with the direction reversed every round, so that
    cases listed in repeating groups (play, bench, eval, replay of one file) spread evenly; each
    driver keeps the listed order, and the peak RSS is the largest of theirs. cap=None lifts the
    address-space cap (for batches of ordinary runs); cwd is the drivers' working folder (work)."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": str(REPO)}
    workers = max(1, min(workers, len(cases)))
    dealt: list[list[tuple[str, list[str]]]] = [[] for _ in range(workers)]
    for n, case in enumerate(cases):
        turn, k = divmod(n, workers)
        dealt[k if turn % 2 == 0 else workers - 1 - k].append(case)
    procs = []
    try:
        for k in range(workers):
            tag = "" if workers == 1 else str(k)
            spec, out, log = work / f"cases{tag}.json", work / f"results{tag}.json", work / f"driver{tag}.log"
            spec.write_text(json.dumps({"as_bytes": cap, "fsize_bytes": fsize,
                                        "cases": [{"id": i, "argv": a} for i, a in dealt[k]]}))
            with open(log, "wb") as f:  # a file, not a pipe: no driver waits on a full pipe
                procs.append((subprocess.Popen([sys.executable, str(DRIVER), str(spec), str(out)], cwd=cwd or work,
                                               env=env, stdout=f, stderr=subprocess.STDOUT), out, log))
        results: dict = {}
        for proc, out, log in procs:
            proc.wait(timeout=timeout)
            assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]
            for res in json.loads(out.read_text()):
                if res["id"] == "__peak_rss_mb__" and res["id"] in results:
                    res["seconds"] = max(res["seconds"], results[res["id"]]["seconds"])
                results[res["id"]] = res
        return results
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
