"""`worldgame train stage=vae|teacher|distill|rollout|events|agent|all data=DIR out=DIR`: one loop, six losses.

Read top to bottom: load episodes -> for each stage build its objective (train/vae.py,
train/teacher.py, train/distill.py, train/rollout.py, train/events.py, train/agent.py) -> the loop (AdamW, grad clip 1.0, EMA inside the objective,
periodic validation that keeps the best weights, resumable state every ``save_every`` steps and
on Ctrl-C) -> the out folder is a checkpoint folder after every stage. Under torchrun the same loop
runs in every process (train/distributed.py: sharded batches, averaged gradients, rank 0 writes).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import ListConfig
from tqdm import tqdm

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_dir, atomic_path, atomic_write_json, output_folder, read_json_object
from worldgame.games.registry import key_bindings_for, tick_hz_of
from worldgame.models.autoencoder import TinyAutoencoder, downscale_for
from worldgame.models.checkpoint_checks import MAX_JSON_BYTES, check_part
from worldgame.models.denoisers import denoiser_class
from worldgame.models.world_model import METADATA, WorldModel, pick_device
from worldgame.settings import TRAIN_STAGES, TrainSettings, plain
from worldgame.threads import cap_threads
from worldgame.train import distributed
from worldgame.train.agent import AgentObjective
from worldgame.train.data import load_frame_data
from worldgame.train.distill import DistillObjective
from worldgame.train.events import EventsObjective
from worldgame.train.latents import LatentBatches, encode_all
from worldgame.train.objective import Objective
from worldgame.train.rollout import RolloutObjective
from worldgame.train.teacher import TeacherObjective
from worldgame.train.vae import VaeObjective

STAGES = TRAIN_STAGES  # vae, teacher, distill, rollout, events, agent
LOG_EVERY = 10  # steps between host syncs: the bar's loss, the non-finite check, the ranks' clock


def run(cfg: TrainSettings) -> dict:
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    if any(s not in STAGES for s in stages):
        raise WorldgameError(f"stage={cfg.stage!r}: choose {', '.join(STAGES)} or all")
    stages = _without_students(stages, cfg)
    _check_heads_fit(stages, cfg)
    ctx = distributed.setup(pick_device(cfg.device))  # one process unless started by torchrun
    device = ctx.device
    # 0 = 1 thread on CPU: two torch threads collapse when anything else takes a core
    torch.set_num_threads(cap_threads(cfg.threads) or (1 if device.type == "cpu" else torch.get_num_threads()))
    torch.manual_seed(cfg.seed)
    made = not Path(cfg.out).exists()
    out = output_folder(cfg.out, "out")
    with contextlib.ExitStack() as held:
        held.enter_context(_terminate_as_interrupt())  # SIGTERM saves the resumable state, as Ctrl-C does
        held.push(lambda failed, *_: _forget_if_empty(out) if failed and made and ctx.main else None)
        if ctx.main:  # one writer per out= folder; under torchrun rank 0 stands for the run
            held.enter_context(out_lock(out))
        _check_no_overwrite(out, stages, cfg)
        data = list(cfg.data) if isinstance(cfg.data, (list, tuple, ListConfig)) else cfg.data
        train, val = load_frame_data(data, cfg.model.denoiser.context_length, cfg.val_fraction)
        ctx.log(f"data: {len(train.frames)} train frames, {len(val.frames)} held-out frames from {cfg.data}")
        _check_same_game(out, train.metadata)
        _check_game_config(train.metadata)
        stages = _with_points(stages, cfg, train, out, ctx.log)
        report = {}
        for stage in stages:
            report[stage] = train_stage(stage, cfg, train, val, out, device, ctx)
    return report


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, a job scheduler, torchrun stopping its workers) stops training as Ctrl-C
    does: the stage in progress saves its resumable state (:func:`train_stage`); then the command
    exits 143 with one line on stderr. Only the main thread can take signals (a library caller's
    other thread keeps the default)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        if not received:
            raise
        print("worldgame train: stopped by SIGTERM; the same command resumes from the state saved (resume=true)",
              file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_heads_fit(stages: tuple[str, ...], cfg: TrainSettings) -> None:
    """The event head and the agent read the last ``frames_seen`` latents of the dream's context, so
    they can see at most its K frames: said before any data loads."""
    k = cfg.model.denoiser.context_length
    for stage in ("events", "agent"):
        seen = getattr(cfg.model, stage).frames_seen
        if stage in stages and seen > k:
            raise WorldgameError(f"model.{stage}.frames_seen={seen} is more than the {k} context frames the dream keeps "
                                 f"(model.denoiser.context_length); use model.{stage}.frames_seen<={k}")


def _with_points(stages: tuple[str, ...], cfg: TrainSettings, train, out: Path, log) -> tuple[str, ...]:
    """The event head learns the score from the data's rewards, and the agent plays for the head's
    points: data without a single point would make a head that never scores, and an agent trained on
    such a head would have nothing to play for. Said in one line -- refused when asked for by name,
    left out of stage=all. The agent alone is judged by its head's own training record."""
    heads = [s for s in ("events", "agent") if s in stages]
    if "events" not in heads:
        if heads and _head_saw_no_points(out):
            raise WorldgameError(f"stage=agent: the event head in {out} was trained on data holding no points "
                                 "(no positive reward), so the agent would have nothing to play for; retrain "
                                 "stage=events on data where the game scores (record your own play with "
                                 "`worldgame play engine=real record=true`, or collect with another policy)")
        return stages
    if train.rewards is None or bool((train.rewards > 0).any()):
        if getattr(train, "dones", None) is not None and not bool(train.dones.any()):
            log(f"note: the data ({len(train.frames):,} frames of {cfg.data}) holds no game over, so the event head "
                "will never end a dream (record or collect games played to their end to teach it)")
        return stages
    why = (f"the data ({len(train.frames):,} frames of {cfg.data}) holds no points (no positive reward), so an event head "
           "would never score and the agent would have nothing to play for; record your own play (`worldgame play "
           "engine=real record=true`) or collect with another policy (`worldgame collect policy=...`)")
    if cfg.stage != "all":
        raise WorldgameError(f"stage={cfg.stage}: {why}")
    log(f"note: skipping the events and agent stages: {why}")
    return tuple(s for s in stages if s not in heads)


def _head_saw_no_points(out: Path) -> bool:
    """The events stage's record in ``out``/worldgame.json says its validation held no point."""
    from worldgame.fileio import read_json_object

    meta_file = out / "worldgame.json"
    if not meta_file.is_file():
        return False
    try:
        meta = read_json_object(meta_file, 16 << 20, f"checkpoint {meta_file}", "retrain the checkpoint")
    except WorldgameError:
        return False  # the loader says what is wrong with it, in its own line
    record = (meta.get("training") or {}).get("events") if isinstance(meta.get("training"), dict) else None
    history = record.get("history") if isinstance(record, dict) else None
    last = history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}
    return last.get("plus_events") == 0


def _without_students(stages: tuple[str, ...], cfg: TrainSettings) -> tuple[str, ...]:
    """A model with a chance code plays its teacher's weights: its few steps need no student (given
    the code the next frame is nearly deterministic). The student stages (distill, rollout) do not
    draw a code yet: skipped where they would only copy the teacher (steps=0), refused otherwise."""
    if not cfg.model.denoiser.chance_groups:
        return stages
    students = [s for s in ("distill", "rollout") if s in stages and getattr(cfg.train, s).steps > 0]
    if students:
        raise WorldgameError(f"train.{students[0]}.steps={getattr(cfg.train, students[0]).steps}: the {students[0]} stage "
                             "does not train a model with a chance code (model.denoiser.chance_groups > 0); "
                             f"set train.{students[0]}.steps=0 (the teacher plays) or model.denoiser.chance_groups=0")
    return tuple(s for s in stages if s not in ("distill", "rollout"))


def _forget_if_empty(out: Path) -> None:
    """A run that failed before writing anything leaves no folder behind (only its lock was in it)."""
    try:
        if {p.name for p in out.iterdir()} <= {".train.lock"}:
            (out / ".train.lock").unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass


@contextlib.contextmanager
def out_lock(out: Path):
    """Hold ``out/.train.lock`` for the run: a second ``train`` on the same ``out=`` is refused at
    once instead of both writing (one's weights lost) or the second resuming the first's state.
    flock is released by the kernel when the process dies, so a crash never leaves a stale lock."""
    import fcntl

    path = out / ".train.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise WorldgameError(f"out={out}: cannot open its lock file {path.name} ({e.strerror or e}); "
                             "choose a writable folder") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorldgameError(f"out={out} is being written by another `worldgame train` run; "
                                 "wait for it to finish or choose another out=") from None
        except OSError as e:
            raise WorldgameError(f"out={out}: cannot lock {path.name} ({e.strerror or e}); choose another out=") from e
        yield
    finally:
        os.close(fd)


def _check_no_overwrite(out: Path, stages: tuple[str, ...], cfg: TrainSettings) -> None:
    """Refuse to retrain a stage ``out`` already holds, unless this run resumes it (its state file is
    there and resume=true) or overwrite=true: a finished checkpoint is never replaced by accident."""
    if cfg.overwrite:
        return
    meta_file = out / METADATA
    trained = set()
    if meta_file.is_file():
        meta = read_json_object(meta_file, MAX_JSON_BYTES, f"out={out}: {METADATA}",
                                "use another out=, or overwrite=true to replace that checkpoint")
        trained = set(meta.get("training") or {}) if isinstance(meta.get("training"), dict) else set()
    trained |= {s for s in ("vae", "teacher") if (out / s / "config.json").is_file()}  # checkpoints older than the record
    for stage in stages:
        has_state = (out / f"state_{stage}.pt").is_file()
        if stage in trained and not (cfg.resume and has_state):
            why = "resume=false" if has_state else f"no state_{stage}.pt to resume"
            raise WorldgameError(f"out={out} already holds a trained {stage} stage ({why}); "
                                 f"choose another out=, or add overwrite=true to replace it")


def build(stage: str, cfg: TrainSettings, train, val, out: Path, device: torch.device) -> Objective:
    # the autoencoder's downscale follows the data's frame size, so the denoiser keeps its latent
    # grid (and its cost); resolved here, every stage and caller sees it, and the checkpoint records it
    shape = cfg.model
    shape.vae.downscale = downscale_for(train.metadata["frame_size"], shape.denoiser.latent_size, shape.vae.downscale)
    if stage == "vae":
        return VaeObjective(cfg, train, val, device)
    vae = _require(TinyAutoencoder, out / "vae", "vae").to(device)
    fs, size = train.metadata["frame_size"], cfg.model.denoiser.latent_size
    if vae.config.downscale * size != fs:  # an autoencoder trained for another latent grid
        raise WorldgameError(f"{out}/vae makes {fs // vae.config.downscale}x{fs // vae.config.downscale} latents of "
                             f"{fs}px frames, not model.denoiser.latent_size={size}; train the autoencoder again "
                             "(stage=vae overwrite=true) or keep the latent size it was made for")
    lat_train, lat_val = _latents(vae, train, val, out, device)
    k, noise = cfg.model.denoiser.context_length, cfg.train.teacher.max_context_noise
    per_frame = cfg.model.denoiser.noise_per_frame
    rare, chance = cfg.train.teacher, cfg.model.chance
    appeared = bool(chance.appeared and chance.event_group and cfg.model.denoiser.chance_groups)
    if appeared and (train.appeared is None or val.appeared is None):
        raise WorldgameError(f"model.chance.appeared=true: {cfg.data} does not record when an object appeared (collected "
                             "before episodes carried the appeared column); collect them again with `worldgame collect`, or set "
                             "model.chance.appeared=false")
    batches = LatentBatches(train, lat_train, k, noise, device, per_frame, rare.rare_share,
                            rare.rare_radius, appeared)
    val_batches = LatentBatches(val, lat_val, k, noise, device, per_frame, appeared=appeared)
    num_actions = len(train.metadata["action_names"])
    if stage == "events":  # its own noise on the latents it sees (a dream's are the denoiser's)
        ev = cfg.train.events.latent_noise
        return EventsObjective(cfg, LatentBatches(train, lat_train, k, ev, device, per_frame),
                               LatentBatches(val, lat_val, k, 0.0, device, per_frame), num_actions, device)
    if stage == "agent":  # plays the checkpoint's own dream: its sampler, its event head
        model = WorldModel.from_pretrained(out, device=str(device), half=False)
        if not model.has_events:  # its rewards: the event head's, or those its chance code draws
            raise WorldgameError(f"{out}/events is missing; run `worldgame train stage=events` first (or stage=all)")
        return AgentObjective(cfg, LatentBatches(train, lat_train, k, 0.0, device, per_frame),
                              LatentBatches(val, lat_val, k, 0.0, device, per_frame), model, device)
    if stage == "teacher":
        return TeacherObjective(cfg, batches, val_batches, vae, num_actions, device)
    if stage == "rollout":  # fine-tunes the distilled student (or the teacher's copy when not distilled)
        return RolloutObjective(cfg, batches, val_batches, vae, _require(denoiser_class(out / "denoiser"), out / "denoiser", "distill"), device)
    teacher = _require(denoiser_class(out / "teacher"), out / "teacher", "teacher")
    return DistillObjective(cfg, batches, val_batches, vae, teacher, device)


def train_stage(stage: str, cfg: TrainSettings, train, val, out: Path, device: torch.device,
                ctx: distributed.Single = distributed.SINGLE) -> dict:
    scfg = getattr(cfg.train, stage)
    ctx.seed(cfg.seed)  # under torchrun: every rank builds the same model (and EMA / target copies)
    with ctx.main_first():  # rank 0 writes the latents cache, the others read it
        objective = build(stage, cfg, train, val, out, device)
    model = objective.trainable()
    opt = torch.optim.AdamW(model.parameters(), lr=scfg.lr, weight_decay=scfg.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, scfg.warmup_steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    state_file = out / f"state_{stage}.pt"
    step, elapsed, best, history = 0, 0.0, float("-inf"), []
    losses = LossLog(stage)
    if cfg.resume and state_file.is_file():
        try:
            # weights_only: tensors and plain containers only, never arbitrary pickled objects
            state = torch.load(state_file, map_location=device, weights_only=True)
        except Exception as e:
            raise WorldgameError(f"{state_file} is damaged ({e}); delete it to start {stage} afresh") from e
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise WorldgameError(f"{state_file} was saved by a different model config; use the same model= "
                                 f"as that run, another out=, or delete the file to start {stage} afresh") from e
        opt.load_state_dict(state["opt"])
        warmup.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        objective.load_resume_state(state.get("extra", {}))  # a vae state of before the Objective protocol has none
        step, elapsed, best, history = state["step"], state["elapsed"], state["best"], state["history"]
        ctx.log(f"{stage}: resuming at step {step} ({elapsed / 60:.1f} min done, best {best:.2f})")

    def save_state() -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": warmup.state_dict(),
                 "gen": gen.get_state(), "step": step, "elapsed": elapsed, "best": best, "history": history,
                 "extra": objective.resume_state()}
        with atomic_path(state_file) as tmp:  # a crash never leaves half a state
            torch.save(state, tmp)

    def validate() -> None:
        nonlocal best
        metrics = objective.validate()
        history.append({"step": step, "minutes": round(elapsed / 60, 2), **{k: round(v, 3) for k, v in metrics.items()}})
        bar.write(f"{stage} step {step}: " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
        if metrics["score"] > best:
            best = metrics["score"]
            save_weights(stage, objective, cfg, out, train.metadata, history)

    ctx.broadcast(model)
    budget = scfg.max_minutes * 60
    bar = tqdm(total=scfg.steps, initial=step, desc=stage, unit="step", dynamic_ncols=True,
               disable=not cfg.progress or not ctx.main)
    if step == 0 and stage in ("distill", "rollout", "agent"):
        ctx.on_main(validate)  # the starting point is a candidate too: a fine-tune that only hurts keeps it
    model.train()
    # The host waits for the device only at logging steps (every LOG_EVERY steps, before each
    # validation and state save, at the last step): there the losses are read and checked, and the
    # ranks agree on the time spent, so every rank takes the same decision to stop at max_minutes.
    out_of_time = elapsed >= budget
    try:
        while step < scfg.steps and not out_of_time:
            t0 = time.perf_counter()
            loss = objective.loss(ctx.generator(gen))  # under torchrun: this rank's own batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            losses.add(ctx.average_gradients(model, loss))  # the loss, or its mean over the ranks (a device tensor)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            warmup.step()
            objective.after_step()
            step += 1
            bar.update(1)
            validating, saving = step % scfg.val_every == 0, step % cfg.save_every == 0
            if not (step % LOG_EVERY == 0 or validating or saving or step == scfg.steps):
                elapsed += time.perf_counter() - t0
                continue
            losses.check(step)  # the host sync: a non-finite loss stops here, before anything is saved
            elapsed = ctx.agree(elapsed + time.perf_counter() - t0)
            out_of_time = elapsed >= budget
            bar.set_postfix(loss=f"{losses.values[-1]:.4f}", min=f"{elapsed / 60:.1f}")
            if validating:
                ctx.on_main(validate)
            if saving:
                ctx.on_main(save_state)
    except KeyboardInterrupt:
        if ctx.main:  # no barrier: the other ranks are being interrupted too
            losses.check(step)  # never save weights a non-finite loss has already spoilt
            save_state()
        bar.close()
        raise

    def finish() -> None:
        if not history or history[-1]["step"] != step:
            validate()
        save_state()

    losses.check(step)
    ctx.on_main(finish)
    bar.close()
    ctx.log(f"{stage}: {step} steps in {elapsed / 60:.1f} min; best score {best:.2f}; weights in {out}")
    values = losses.values
    n = max(1, len(values) // 5)  # mean loss over the first and last fifth of this run's steps
    loss_start = sum(values[:n]) / n if values else float("nan")
    loss_end = sum(values[-n:]) / n if values else float("nan")
    return {"steps": step, "minutes": round(elapsed / 60, 2), "best": round(best, 3), "history": history,
            "loss_start": loss_start, "loss_end": loss_end}


class LossLog:
    """Each step's loss, kept on the device until a logging step reads them all at once (one host
    sync instead of one per step) and stops the run on the first that is not finite."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.values: list[float] = []
        self.pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss.detach().reshape(()))

    def check(self, step: int) -> None:
        """Read the pending losses (``step`` is the number of the last one); raise on a non-finite one."""
        if not self.pending:
            return
        read = torch.stack(self.pending).tolist()
        self.pending.clear()
        for i, value in enumerate(read):
            if not math.isfinite(value):  # named by the steps done before it, as the bar counts
                raise WorldgameError(f"{self.stage}: loss became {value} at step {step - len(read) + i}; "
                                     f"lower {self.stage}.lr")
        self.values.extend(read)


def save_weights(stage: str, objective: Objective, cfg: TrainSettings, out: Path, data_meta: dict, history: list) -> None:
    """Write the stage's best weights and keep ``out`` a loadable checkpoint folder."""
    with objective.checkpoint_weights() as net:  # one module for every part, or one per part
        for part in objective.checkpoint_parts(out):
            _save(net[part] if isinstance(net, dict) else net, out / part)
    meta_file = out / METADATA
    meta = read_json_object(meta_file, MAX_JSON_BYTES, str(meta_file), "use another out= or delete that folder") if meta_file.is_file() else {}
    game_cfg = data_meta.get("game_config", {})
    meta.update({
        "format": 1,
        "game": data_meta.get("game"),
        "game_config": game_cfg,
        "frame_size": data_meta.get("frame_size"),
        "native_size": data_meta.get("native_size") or [data_meta.get("frame_size")] * 2,
        "tick_hz": data_meta.get("tick_hz") or tick_hz_of(game_cfg),
        "action_names": data_meta.get("action_names"),
        # data collected before episodes carried their keys: derived from the action names,
        # never by building the game (an Atari env takes seconds and prints a banner)
        "key_bindings": data_meta.get("key_bindings") or key_bindings_for(game_cfg, data_meta.get("action_names") or []),
        "prediction_type": cfg.model.prediction_type,
        "context_noise": cfg.model.play_context_noise,
        "context_length": cfg.model.denoiser.context_length,
    })
    meta.setdefault("training", {})[stage] = {"data": str(cfg.data), "config": plain(getattr(cfg.train, stage)),
                                              "model": plain(cfg.model), "history": history[-1:]}
    atomic_write_json(meta_file, meta)
    if (out / "vae").is_dir() and not (out / "scheduler").is_dir() and (out / "denoiser").is_dir():
        _save(WorldModel.from_pretrained(out, device="cpu").scheduler, out / "scheduler")


def _save(module, folder: Path) -> None:
    """save_pretrained, file by file atomically: a loader polling ``out`` never sees half a file."""
    with atomic_dir(folder) as tmp:
        if isinstance(module, torch.nn.Module):
            module.save_pretrained(tmp, safe_serialization=True)
        else:  # a scheduler: config only
            module.save_pretrained(tmp)


def _check_game_config(data_meta: dict) -> None:
    """The data's game config must name a known game with valid settings, before any work is done
    (a file never chooses code: games come from the registry)."""
    from worldgame.games.registry import resolve

    resolve(data_meta.get("game_config") or {}, prefix="game_config.")  # raises one clear line


def _check_same_game(out: Path, data_meta: dict) -> None:
    """Refuse to train one game's stage into a checkpoint folder made for another game."""
    meta_file = out / METADATA
    if not meta_file.is_file():
        return
    meta = read_json_object(meta_file, MAX_JSON_BYTES, str(meta_file), "use another out= or delete that folder")
    mine = (data_meta.get("game"), data_meta.get("frame_size"), list(data_meta.get("action_names") or []))
    theirs = (meta.get("game"), meta.get("frame_size"), list(meta.get("action_names") or []))
    if mine != theirs:
        raise WorldgameError(f"out={out} holds a checkpoint of {theirs[0]} at {theirs[1]}px, but the data is "
                             f"{mine[0]} at {mine[1]}px; use another out= for this game")


def _require(cls, folder: Path, stage: str):
    if not (folder / "config.json").is_file():
        raise WorldgameError(f"{folder} is missing; run `worldgame train stage={stage}` first (or stage=all)")
    check_part(cls, folder, f"run `worldgame train stage={stage}` again")  # its weights: a regular file, sane config
    return cls.from_pretrained(folder, local_files_only=True)


def _latents(vae: TinyAutoencoder, train, val, out: Path, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every frame once per VAE; cached beside the weights."""
    cache = out / "latents.pt"
    stamp = (out / "vae" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved.get("stamp") == stamp and len(saved["train"]) == len(train.frames) and len(saved["val"]) == len(val.frames):
            return saved["train"].float(), saved["val"].float()
    lat = {"train": encode_all(vae, train.frames, device).half(), "val": encode_all(vae, val.frames, device).half(),
           "stamp": stamp}
    with atomic_path(cache) as tmp:
        torch.save(lat, tmp)
    return lat["train"].float(), lat["val"].float()
