"""`worldgame bench`: the play path headless; the last stdout line is the DESIGN.md JSON contract."""

from __future__ import annotations

import json

import pytest

from worldgame.errors import WorldgameError


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def test_bench_prints_contract_json(tiny_checkpoint, run_cli):
    r = run_cli("bench", f"checkpoint={tiny_checkpoint}", "steps=[1,2]", "frames=6", "warmup=2", "soak_frames=5")
    assert r.returncode == 0, r.stderr
    report = _last_json(r.stdout)
    assert set(report) == {"device", "threads", "results"}
    assert report["device"] == "cpu" and report["threads"] >= 1
    assert [res["steps"] for res in report["results"]] == [1, 2]
    for res in report["results"]:
        assert res["fps"] > 0
        assert set(res["latency_ms"]) == {"p50", "p95"} and 0 < res["latency_ms"]["p50"] <= res["latency_ms"]["p95"]
        assert set(res["stages_ms"]) == {"input", "denoise", "fusion", "decode", "present"}
        assert res["stages_ms"]["denoise"] > 0
        # frames >= soak_frames: soak fields
        assert set(res["rss_mb"]) == {"start", "end"} and res["nonfinite"] == 0


def test_bench_rejects_bad_steps(tiny_checkpoint):
    from worldgame.settings import load

    with pytest.raises(WorldgameError, match="steps"):  # refused before run() is reached
        load("bench", [f"checkpoint={tiny_checkpoint}", "steps=[3]"])
