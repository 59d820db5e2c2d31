"""sampler=teacher: the undistilled teacher with DDIM, run by the same per-frame path as the LCM steps
(the slow reference of the LCM table: tools/lcm_table.sh)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hostile.batch import run_driver

from worldgame.errors import WorldgameError
from worldgame.models import ActionDenoiser, WorldModel
from worldgame.models.sampler import Sampler

TINY_EVAL = ["episodes=1", "episode_frames=24", "samples=2", "teacher_steps=2", "steps=[1]", "rollout_frames=8",
             "long_rollouts=1", "horizons=[1]", "horizon_rollouts=1", "object_horizons=[8]", "control_contexts=2",
             "control_frames=3"]


@pytest.fixture(scope="module")
def with_teacher(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint plus a teacher/ whose weights differ from the student's."""
    path = tmp_path_factory.mktemp("sampler") / "tiny_teacher"
    shutil.copytree(tiny_checkpoint, path)
    student = WorldModel.from_pretrained(path, device="cpu").denoiser
    torch.manual_seed(1)
    ActionDenoiser.from_config(student.config).save_pretrained(path / "teacher")
    return path


def _inputs(model: WorldModel) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.denoiser.config
    g = torch.Generator().manual_seed(0)
    context = torch.randn(1, model.context_length, cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=g)
    return context, torch.zeros(1, model.context_length, dtype=torch.long)


def test_teacher_sampler_runs_the_teacher_with_ddim(with_teacher):
    model = WorldModel.from_pretrained(with_teacher, device="cpu", teacher=True)
    context, actions = _inputs(model)
    student = Sampler(model, "lcm")
    lcm = student.step(context, actions, steps=2, generator=torch.Generator().manual_seed(5))
    reference = model.reference_step(context, actions, 3, torch.Generator().manual_seed(5), "teacher")
    prepared = Sampler(model, "teacher")  # a sampler choice like any other: DDIM's plan, the teacher's network
    out = torch.empty_like(lcm)
    teacher = prepared.step(context, actions, steps=3, generator=torch.Generator().manual_seed(5), out=out)
    assert teacher is out and torch.equal(teacher, reference)  # the teacher's DDIM, written in place
    assert not torch.allclose(teacher, lcm)
    assert torch.equal(prepared.step(context, actions, steps=50, generator=torch.Generator().manual_seed(5)),
                       model.reference_step(context, actions, 50, torch.Generator().manual_seed(5), "teacher"))
    assert len(prepared.timesteps(3)) == 3 and prepared.timesteps(3) != student.timesteps(3)
    prepared.trace(1)  # the traced graph is the teacher's (bench compares it with the traced student)
    traced = prepared.step(context, actions, steps=3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(traced, reference, atol=1e-4, rtol=1e-4)
    student.trace(1)  # each sampler has its own fast path: the student's graph runs the student
    torch.testing.assert_close(student.step(context, actions, steps=2, generator=torch.Generator().manual_seed(5)), lcm,
                               atol=1e-4, rtol=1e-4)


def test_teacher_sampler_needs_a_teacher(tiny_checkpoint):
    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu", teacher=True)  # it has no teacher/
    with pytest.raises(WorldgameError, match="no teacher/ folder"):
        Sampler(model, "teacher")
    with pytest.raises(WorldgameError, match="sampler="):
        Sampler(model, "ddpm")


def test_bench_and_eval_run_the_teacher(with_teacher, tiny_checkpoint, tmp_path):
    # every command line in one driver process (tests/hostile/driver.py: the real CLI, torch imported once)
    out = tmp_path / "eval"
    got = run_driver([
        ("bench", ["bench", f"checkpoint={with_teacher}", "sampler=teacher", "steps=[12]", "frames=4", "warmup=1",
                   "backend=onnx"]),
        ("bench_steps", ["bench", f"checkpoint={with_teacher}", "steps=[12]"]),
        ("bench_no_teacher", ["bench", f"checkpoint={tiny_checkpoint}", "sampler=teacher", "steps=[12]", "frames=4"]),
        ("eval", ["eval", f"checkpoint={with_teacher}", "sampler=teacher", "rollout_steps=6", f"out={out}", *TINY_EVAL]),
        ("eval_steps", ["eval", f"checkpoint={with_teacher}", "rollout_steps=6", f"out={out}", *TINY_EVAL]),
    ], tmp_path, cap=None)
    r = got["bench"]
    assert r["rc"] == 0, r["stderr"]
    (result,) = json.loads(r["stdout"].strip().splitlines()[-1])["results"]
    assert result["steps"] == 12 and result["backend"] == "torch"  # the teacher has no ONNX path: said so

    r = got["bench_steps"]
    assert r["rc"] == 2 and "sampler=teacher" in r["stderr"] and len(r["stderr"].strip().splitlines()) == 1
    r = got["bench_no_teacher"]
    assert r["rc"] == 1 and "no teacher/ folder" in r["stderr"] and "Traceback" not in r["stderr"]

    r = got["eval"]
    assert r["rc"] == 0, r["stderr"]
    report = json.loads(r["stdout"].strip().splitlines()[-1])
    assert report["rollout"]["sampler"] == "teacher" and report["rollout"]["steps"] == 6
    r = got["eval_steps"]
    assert r["rc"] == 2 and "rollout_steps=6" in r["stderr"]
