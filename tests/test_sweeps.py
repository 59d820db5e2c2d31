"""`worldgame bench -m` / `worldgame eval -m` sweeps (joblib launcher, one result.json per job) and
tools/sweep_table.py, which turns sweep folders into sweep.csv, sweep.md and sweep.png."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worldgame.cli import _sweep_overrides

REPO = Path(__file__).resolve().parent.parent
TINY_BENCH = ["frames=5", "warmup=1"]
# eval as small as the other eval tests keep it; teacher-forced at both swept rollout step counts
TINY_EVAL = ["episodes=1", "episode_frames=24", "samples=2", "teacher_steps=1", "steps=[1,2]", "rollout_frames=8",
             "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1", "object_horizons=[8]", "control_contexts=3",
             "control_frames=4"]


def _side_by_side(runs: dict[str, list[str]], work: Path, timeout: float = 300) -> dict[str, tuple[int, str]]:
    """Run independent `worldgame` command lines, each its own process, side by side (their stderr to
    files, so none waits on a full pipe); returns {name: (exit code, stderr)}."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    procs = {}
    try:
        for name, args in runs.items():
            with open(work / f"{name}.stderr", "wb") as err:
                procs[name] = subprocess.Popen([sys.executable, "-m", "worldgame.cli", *args], cwd=REPO, env=env,
                                               stdout=subprocess.DEVNULL, stderr=err)
        return {name: (proc.wait(timeout=timeout), (work / f"{name}.stderr").read_text(errors="replace"))
                for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _results(sweep: Path) -> list[dict]:
    return [json.loads((sweep / str(n) / "result.json").read_text()) for n in range(2)]


@pytest.fixture(scope="module")
def sweeps(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """A bench sweep over steps (default launcher settings) and an eval sweep over rollout_steps."""
    work = tmp_path_factory.mktemp("sweeps")
    sweeps = {
        "bench": ["bench", "-m", f"checkpoint={tiny_checkpoint}", "steps=[1],[2]", *TINY_BENCH,
                  f"hydra.sweep.dir={work / 'bench'}"],
        "eval": ["eval", "-m", f"checkpoint={tiny_checkpoint}", "rollout_steps=1,2", *TINY_EVAL,
                 f"hydra.sweep.dir={work / 'eval'}"],
    }
    for name, (rc, stderr) in _side_by_side(sweeps, work).items():
        assert rc == 0, (name, stderr[-2000:])
    return {"bench": work / "bench", "eval": work / "eval", "work": work}


def test_bench_sweep_writes_one_result_per_job_one_at_a_time(sweeps, tiny_checkpoint) -> None:
    for steps, record in zip((1, 2), _results(sweeps["bench"])):
        assert record["command"] == "bench"
        assert record["overrides"] == [f"checkpoint={tiny_checkpoint}", f"steps=[{steps}]", *TINY_BENCH]
        (result,) = record["result"]["results"]
        assert result["steps"] == steps and result["fps"] > 0 and record["result"]["threads"] == 1
    assert "n_jobs: 1" in (sweeps["bench"] / "multirun.yaml").read_text()  # bench: timings undistorted


def test_eval_sweep_jobs_write_their_own_report_folder(sweeps) -> None:
    for steps, record in zip((1, 2), _results(sweeps["eval"])):
        job = sweeps["eval"] / str(steps - 1)
        assert record["command"] == "eval" and f"rollout_steps={steps}" in record["overrides"]
        assert record["result"]["rollout"]["steps"] == steps
        assert json.loads((job / "eval.json").read_text())["rollout"]["steps"] == steps
        assert (job / "report.md").is_file() and (job / "strip.png").is_file()
    assert "n_jobs: -1" in (sweeps["eval"] / "multirun.yaml").read_text()  # eval: jobs in parallel


def test_sweep_table_tabulates_and_plots_quality_against_speed(sweeps, tiny_checkpoint) -> None:
    from PIL import Image

    broken = sweeps["work"] / "broken" / "0"
    broken.mkdir(parents=True)
    (broken / "result.json").write_text("{not json")
    out = sweeps["work"] / "table"
    r = subprocess.run([sys.executable, str(REPO / "tools" / "sweep_table.py"), str(sweeps["bench"]), str(sweeps["eval"]),
                        str(broken.parent), "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "skipping" in r.stderr and "not JSON" in r.stderr  # one line per bad file
    assert "2 configurations (bench joined with eval)" in r.stdout
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(row["kind"], row["steps"], row["rollout_steps"]) for row in rows] == [
        ("bench", "1", ""), ("bench", "2", ""), ("eval", "[1, 2]", "1"), ("eval", "[1, 2]", "2")]
    assert {row["checkpoint"] for row in rows} == {str(tiny_checkpoint)}
    for row in rows[:2]:
        assert float(row["fps"]) > 0 and float(row["latency_p95_ms"]) > 0 and row["backend"]
    for row in rows[2:]:
        assert float(row["tf_fg_psnr"]) and float(row["tf_psnr"]) and row["blobs_dream"] and row["orbs_real"]
    md = (out / "sweep.md").read_text().splitlines()
    assert md[0].startswith("| kind | checkpoint | steps | rollout_steps |") and len(md) == 2 + len(rows)
    with Image.open(out / "sweep.png") as img:
        assert img.format == "PNG" and img.size[0] > 300

    # one kind only: its metric against the swept setting; --y picks any dotted JSON path
    r = subprocess.run([sys.executable, str(REPO / "tools" / "sweep_table.py"), str(sweeps["eval"]),
                        "--y", "teacher_forced.psnr.2", "--out", str(out / "eval")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "eval: teacher_forced.psnr.2 against rollout_steps, 2 rows" in r.stdout
    with Image.open(out / "eval" / "sweep.png") as img:
        assert img.format == "PNG"


def test_parallel_and_basic_launcher_jobs_keep_one_thread(tiny_checkpoint, tmp_path) -> None:
    """Jobs in loky worker processes (n_jobs=2) use one torch thread; hydra/launcher=basic still works."""
    done = _side_by_side({
        "joblib": ["bench", "-m", f"checkpoint={tiny_checkpoint}", "steps=[1],[2]", *TINY_BENCH,
                   "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'joblib'}"],
        "basic": ["bench", "-m", f"checkpoint={tiny_checkpoint}", "steps=[1]", *TINY_BENCH, "hydra/launcher=basic",
                  f"hydra.sweep.dir={tmp_path / 'basic'}"],
    }, tmp_path)
    rc, stderr = done["joblib"]
    assert rc == 0, stderr
    assert [rec["result"]["threads"] for rec in _results(tmp_path / "joblib")] == [1, 1]
    rc, stderr = done["basic"]
    assert rc == 0, stderr
    assert json.loads((tmp_path / "basic" / "0" / "result.json").read_text())["result"]["results"][0]["steps"] == 1


def test_single_run_writes_no_result(tiny_checkpoint, tmp_path) -> None:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "worldgame.cli", "bench", f"checkpoint={tiny_checkpoint}", "steps=[1]",
                        *TINY_BENCH], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["results"][0]["steps"] == 1
    assert not list(tmp_path.rglob("*")), "a single run writes nothing in its folder"
    assert not (REPO / "result.json").exists()


def test_bench_sweeps_run_one_job_at_a_time_unless_told() -> None:
    assert _sweep_overrides("bench", ["-m", "steps=[1],[2]"]) == ["-m", "steps=[1],[2]", "hydra.launcher.n_jobs=1"]
    for overrides in (["-m", "hydra/launcher=basic"], ["-m", "hydra/launcher=submitit_slurm"],
                      ["--multirun", "hydra.launcher.n_jobs=2"], ["steps=[1]"]):
        assert _sweep_overrides("bench", overrides) == overrides
    assert _sweep_overrides("eval", ["-m", "rollout_steps=1,2"]) == ["-m", "rollout_steps=1,2"]
