"""Run many `worldgame` command lines in one process (torch and hydra load once), each as a user
would type it, under a memory cap; print one JSON result per case.

    python tests/hostile/driver.py CASES.json RESULTS.json

CASES.json: {"as_bytes": int, "fsize_bytes": int | null, "cases": [{"id": str, "argv": [str, ...]}]}.
Each result: id, rc (the exit code; null when an exception escaped), stderr and stdout (text), escaped
(the exception type that escaped main, or null) and seconds. The process's peak RSS is added
at the end as {"id": "__peak_rss_mb__", ...}.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]  # worldgame's main rewrites sys.argv
    spec = json.loads(Path(spec_path).read_text())
    cap = spec.get("as_bytes")
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if spec.get("fsize_bytes"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec["fsize_bytes"], spec["fsize_bytes"]))
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    from worldgame.cli import main as worldgame

    results = []
    for case in spec["cases"]:
        err, out = io.StringIO(), io.StringIO()
        rc, escaped = None, None
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                worldgame(list(case["argv"]))
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException as e:  # noqa: BLE001 -- exactly what the suite looks for
            escaped = type(e).__name__
            err.write(traceback.format_exc())
        results.append({"id": case["id"], "rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue(),
                        "escaped": escaped, "seconds": round(time.perf_counter() - t0, 3)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.append({"id": "__peak_rss_mb__", "rc": 0, "stderr": "", "stdout": "", "escaped": None, "seconds": peak})
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
