"""Collect every eval.json (or bench JSON saved to *.json) under a folder into one markdown table.

    python tools/sweep_summary.py multirun/            # after `worldgame eval -m ...` or a train sweep
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) or v is None:
            out[key] = v
    return out


def main(root: str) -> None:
    rows = []
    for path in sorted(Path(root).rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and ("teacher_forced" in data or "results" in data):
            rows.append((path, flatten(data)))
    if not rows:
        sys.exit(f"no eval or bench JSON files under {root}")
    keys = sorted({k for _, r in rows for k in r})
    print("| file | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for path, r in rows:
        print(f"| {path} | " + " | ".join("" if r.get(k) is None else f"{r[k]:g}" for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
