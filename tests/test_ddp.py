"""Distributed training: 2 CPU processes (gloo) started by torchrun against one process doing the same maths.

Under torchrun every step each rank draws its own batch of ``batch_size`` from a seed pair the shared
generator hands it (worldgame/train/distributed.py) and the gradients are averaged. The reference
here is one process that, each step, draws the same two batches from the same seed pairs,
backpropagates both and halves the summed gradient: a global batch of 2 x ``batch_size`` on the
same samples. After 20 steps of the autoencoder and 20 (then 30, resumed) of the teacher, the
weights must agree within ``TOL`` (measured: bit for bit on this machine), the two ranks must hold
identical weights and EMA, rank 0 alone must have written files and printed, and a run resumed
through the real CLI (``torchrun -m worldgame train``) must continue where the state left off.

This file is also the per-rank script of the first launch (``__main__`` below)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
TOL = 1e-5  # max |weight difference|, DDP vs the one-process reference (float32 all-reduce of 2 ranks)
STEPS = 20
SEED = 0


def _overrides(data: Path, out: Path, stage: str, steps: int) -> list[str]:
    # validation only at the end (rank 0), a resumable state every 10 steps
    return [f"data={data}", f"out={out}", "train=tiny", "model=tiny", "progress=false", "threads=1", f"seed={SEED}",
            f"stage={stage}", f"train.{stage}.steps={steps}", f"train.{stage}.val_every=1000", "save_every=10"]


def _cfg(data: Path, out: Path, stage: str, steps: int):
    from worldgame.settings import load

    return load("train", _overrides(data, out, stage, steps))


def _torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    # its own session, so that a hung launch is ended with its workers (by this group's id only)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"torchrun hung for {timeout} s: {stdout[-2000:]} {stderr[-2000:]}") from None
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _reference(cfg, out: Path, steps: int, snapshot_at: int) -> dict:
    """One process, the same maths as 2 ranks: per step the 2 ranks' seed pairs from the shared
    generator, both batches backpropagated, the summed gradient halved, then the loop's own
    clip / AdamW / warmup / EMA. Returns the model (and EMA) at ``snapshot_at`` and at ``steps``."""
    from worldgame.train import loop
    from worldgame.train.data import load_frame_data

    stage, scfg = cfg.stage, getattr(cfg.train, cfg.stage)
    train, val = load_frame_data(str(cfg.data), cfg.model.denoiser.context_length, cfg.val_fraction)
    torch.manual_seed(cfg.seed)  # what every rank does before building the stage
    objective = loop.build(stage, cfg, train, val, out, torch.device("cpu"))
    model = objective.trainable()
    opt = torch.optim.AdamW(model.parameters(), lr=scfg.lr, weight_decay=scfg.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, scfg.warmup_steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    snaps, losses = {}, []
    for step in range(1, steps + 1):
        seeds = torch.randint(2**62, (2, 2), generator=gen).tolist()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for batch_seed, global_seed in seeds:
            torch.manual_seed(global_seed)
            loss = objective.loss(torch.Generator().manual_seed(batch_seed))
            loss.backward()
            total += loss.item()
        for p in model.parameters():
            if p.grad is not None:
                p.grad /= 2
        losses.append(total / 2)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        warmup.step()
        objective.after_step()
        if step in (snapshot_at, steps):
            snaps[step] = {"model": {k: v.clone() for k, v in model.state_dict().items()},
                           "ema": [p.clone() for p in objective.ema.shadow_params] if stage == "teacher" else []}
    return {"snaps": snaps, "losses": losses}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_cpu_ranks_match_one_process_and_resume(tmp_path: Path, torch_one_thread) -> None:
    data, out, dumps = tmp_path / "data", tmp_path / "run", tmp_path / "dumps"
    from test_train import _episodes  # the same scripted Bouncer episodes as the one-process tests

    _episodes(data, steps=60)
    # 1. 2 ranks: autoencoder then teacher, 20 steps each; each rank dumps its weights and what it wrote
    done = _torchrun(__file__, str(data), str(out), str(dumps))
    assert done.stdout.count("vae: 20 steps") == 1 and done.stdout.count("teacher: 20 steps") == 1  # rank 0 prints
    ranks = {(stage, r): torch.load(dumps / f"{stage}_rank{r}.pt", weights_only=True)
             for stage in ("vae", "teacher") for r in (0, 1)}
    for stage in ("vae", "teacher"):
        r0, r1 = ranks[stage, 0], ranks[stage, 1]
        assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"]), f"{stage}: ranks differ"
        assert all(torch.equal(x, y) for x, y in zip(r0["ema"], r1["ema"])), f"{stage}: EMA differs between ranks"
        assert r1["written"] == [], f"rank 1 wrote {r1['written']}"
        assert any(f"state_{stage}" in w for w in r0["written"]), r0["written"]
        state = torch.load(out / f"state_{stage}.pt", weights_only=True)
        assert state["step"] == STEPS and all(torch.equal(state["model"][k], r0["model"][k]) for k in state["model"])
    assert (out / "vae").is_dir() and (out / "teacher").is_dir() and (out / "latents.pt").is_file()

    # 2. the same maths in this process: 20 autoencoder steps; 30 teacher steps on the ranks' autoencoder
    vae = _reference(_cfg(data, out, "vae", STEPS), out, STEPS, STEPS)
    teacher = _reference(_cfg(data, out, "teacher", 30), out, 30, STEPS)
    diffs = {"vae": _max_diff(vae["snaps"][STEPS]["model"], ranks["vae", 0]["model"]),
             "teacher": _max_diff(teacher["snaps"][STEPS]["model"], ranks["teacher", 0]["model"])}
    ema = max((x - y).abs().max().item() for x, y in zip(teacher["snaps"][STEPS]["ema"], ranks["teacher", 0]["ema"]))
    print(f"DDP vs one process after {STEPS} steps: max |dw| {diffs}, teacher EMA {ema:.2e}")
    assert max(*diffs.values(), ema) <= TOL, (diffs, ema)
    for stage, ref in (("vae", vae), ("teacher", teacher)):
        rep = ranks[stage, 0]["report"]  # the mean of the ranks' losses, as logged
        n = STEPS // 5
        assert abs(rep["loss_start"] - sum(ref["losses"][:n]) / n) < 1e-5
        assert abs(rep["loss_end"] - sum(ref["losses"][STEPS - n : STEPS]) / n) < 1e-5
    assert vae["losses"][-1] < vae["losses"][0]  # and it learns

    # 3. resumed through the real entry point: 20 -> 30 teacher steps == 30 straight
    done = _torchrun("-m", "worldgame", "train", *_overrides(data, out, "teacher", 30))
    assert done.stdout.count("teacher: resuming at step 20") == 1, done.stdout
    state = torch.load(out / "state_teacher.pt", weights_only=True)
    assert state["step"] == 30
    resumed = _max_diff(teacher["snaps"][30]["model"], state["model"])
    ema = max((x - y).abs().max().item() for x, y in zip(teacher["snaps"][30]["ema"], state["extra"]["ema"]["shadow_params"]))
    print(f"resumed DDP vs one process after 30 steps: max |dw| {resumed:.2e}, EMA {ema:.2e}")
    assert max(resumed, ema) <= TOL


def _rank_main(data: Path, out: Path, dumps: Path) -> None:
    """One rank of launch 1: the training loop as `worldgame train` runs it, with its writes recorded."""
    from worldgame.train import loop

    rank = int(os.environ["RANK"])
    written: list[str] = []
    save, build = torch.save, loop.build
    torch.save = lambda obj, f, *a, **k: (written.append(str(f)), save(obj, f, *a, **k))[1]
    for name in ("_save", "atomic_write_json"):
        orig = getattr(loop, name)
        setattr(loop, name, lambda path, *a, _orig=orig, **k: (written.append(str(path)), _orig(path, *a, **k))[1])
    built = []
    loop.build = lambda *a, **k: built.append(build(*a, **k)) or built[-1]
    dumps.mkdir(parents=True, exist_ok=True)
    for stage in ("vae", "teacher"):
        report = loop.run(_cfg(data, out, stage, STEPS))[stage]
        objective = built[-1]
        save({"model": objective.trainable().state_dict(), "written": list(written),
              "ema": list(objective.ema.shadow_params) if stage == "teacher" else [],
              "report": {k: report[k] for k in ("steps", "loss_start", "loss_end")}},
             dumps / f"{stage}_rank{rank}.pt")
        written.clear()


if __name__ == "__main__":
    _rank_main(*map(Path, sys.argv[1:4]))
