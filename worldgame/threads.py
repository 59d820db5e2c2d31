"""``threads=`` capped by the machine's cores: the one rule play, bench, serve, replay, train and
eval apply before they set torch's thread count (asking for more threads than cores only makes
them wait on each other; 1024 on a 2-core machine ran minutes instead of seconds).

The bottom layer (no worldgame imports), so train and engine both use it.
"""

from __future__ import annotations

import os
import sys

_said: set[int] = set()  # the values already reported: one line per process, however many engines are made


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_threads(threads: int) -> int:
    """``threads`` as asked (0 = auto stays 0), or the machine's core count when it asked for more,
    saying so once on stderr."""
    threads = int(threads)
    cores = machine_cores()
    if threads <= cores:
        return threads
    if threads not in _said:
        _said.add(threads)
        print(f"threads={threads} is more than this machine's {cores} cores; using {cores}", file=sys.stderr, flush=True)
    return cores
