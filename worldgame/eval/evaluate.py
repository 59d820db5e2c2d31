"""`worldgame eval checkpoint=DIR`: the quality of a checkpoint on held-out play of its game.

Prints a one-line JSON last (the eval contract: frames, vae_psnr, teacher_forced, rollout), and
writes eval.json, report.md and a PNG strip (real vs generated at several horizons) into ``out``
(default: runs/eval/<checkpoint folder name>). A line per stage goes to stderr (a terminal or a log
alike); the dreams' frame bars on a terminal only.

Keys beyond the contract:

* ``objects.control`` (any game): does holding a movement key move the sprite that way in the
  dream, against the real game from the same contexts (``worldgame/eval/control.py``);
* ``rollout.collapsed``: the last dreamed frames lost the game's look (the built-in game: its
  background, orbs and player; any other game: its foreground mass, 0.2x to 5x the real game's);
* built-in game only: ``rollout.player_err_px``, ``player_lost_frac``, ``first_hit_frame``,
  ``player_err_px_until_first_hit`` (its green player, tracked) and ``objects.bouncer``; a gym
  game's JSON and report do not carry them.
* ``agent`` (a checkpoint with an agent/): the agent playing the real game on held-out seeds against
  the random and (built-in game) scripted policies (``worldgame/eval/agent.py``);
* ``events.teacher_forced.kinds`` (built-in game): the event head's figures per coin, shot and hit;
* ``small_objects``: the smallest objects (blobs of 2..16 px at the checkpoint's frame size: a ball, a
  bolt) apart, since the big sprites dominate every pixel figure: the autoencoder's and each
  sampler's recall of them, and in the long dreams the share of frames where the real game shows
  one and the dream does too, and where the dream shows one the real game doesn't;
* ``display``: flicker (where the real game is still), foreground PSNR and lag (frames) of the
  stream as play shows it with this fusion, teacher-forced on the held-out episodes, and ``off``
  the same without fusion (``worldgame/eval/display.py``; docs/fusion.md).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldgame.engine.calibration import attach  # the fast path, with the int8 calibration dream
from worldgame.engine.factory import choose_sampler
from worldgame.engine.fusion import Fusion, FusionMode
from worldgame.engine.views import display_size
from worldgame.errors import WorldgameError
from worldgame.eval import agent as agent_eval
from worldgame.eval import bouncer_checks
from worldgame.eval import events as event_eval
from worldgame.eval.control import control_check
from worldgame.eval.display import display_figures
from worldgame.eval.metrics import frames_to_unit, psnr, ssim
from worldgame.eval.objects import (
    SMALL_OBJECT_PX,
    blobs_per_frame,
    curve_at,
    foreground_scores,
    median_background,
    small_object_recall,
    small_objects_in_dreams,
)
from worldgame.eval.report import small_objects_line, write_report
from worldgame.eval.rollout import NotReplayable, closed_loop, held_out_episode, hold_dream, hold_real
from worldgame.fileio import atomic_path, atomic_write_json, output_folder
from worldgame.frontend.export import resize_nearest
from worldgame.games import find_player
from worldgame.games.registry import TARGETS
from worldgame.models.sampler import Sampler
from worldgame.models.world_model import WorldModel, default_checkpoint, play_steps
from worldgame.settings import EvalSettings
from worldgame.threads import cap_threads

STAGES = 6  # the stage lines: held-out play, teacher-forced, long dreams, short dreams, control, objects (+ game events, + the agent)


def run(cfg: EvalSettings) -> dict:
    t0 = time.perf_counter()
    threads = cap_threads(cfg.threads) or 1  # 0 = 1 thread: two collapse when another process takes a core
    torch.set_num_threads(threads)
    path = Path(cfg.checkpoint) if cfg.checkpoint else default_checkpoint()
    model = WorldModel.from_pretrained(path, device=cfg.device, teacher=True)
    # the report folder, checked before minutes of work; never inside a (shipped) checkpoint
    out = output_folder(cfg.out or Path("runs/eval") / path.name, "out")
    if cfg.context_noise is not None:  # try another play-time context-noise level than the checkpoint's
        model.context_noise = float(cfg.context_noise)
    # the sampler measured, teacher-forced and in the dreams: the checkpoint's play default unless chosen
    sampler, spacing = choose_sampler(model, cfg.sampler, cfg.spacing)
    cfg.rollout_steps = play_steps(cfg.rollout_steps, model.metadata)  # and its steps
    # the prepared samplers eval dreams with: the batch sizes it samples often are traced (CPU)
    fast = model.device.type == "cpu"
    dreamer = Sampler(model, sampler, spacing, trace_on_use=fast)
    teacher = None if model.teacher is None else dreamer if sampler == "teacher" else Sampler(model, "teacher", trace_on_use=fast)
    for prepared in {id(s): s for s in (dreamer, teacher) if s is not None}.values():
        prepared.chance_temperature = float(cfg.chance_temperature)  # the code drawn as play draws it
    # backend=onnx/auto: the dreamer's network and decoder run play's batch-1 ONNX Runtime sessions (fp32 or int8)
    backend = attach(dreamer, str(cfg.backend), threads, cfg.precision and str(cfg.precision), any_batch=True)
    game_cfg, k = model.metadata["game_config"], model.context_length
    is_bouncer = _is_bouncer(game_cfg)
    # one line per stage on stderr, terminal or log alike (a long eval is never silent; stdout stays
    # the summary and the JSON); on a terminal the dreams add a frame bar below it
    done = [0]

    def stage(name: str) -> None:  # the next stage begins
        done[0] += 1
        total = (STAGES + (model.has_events and cfg.event_games > 0)
                 + (model.agent is not None and cfg.agent_games > 0))
        print(f"eval [{done[0]}/{total}, {time.perf_counter() - t0:.0f} s]: {name}", file=sys.stderr, flush=True)

    stage("held-out play")
    episodes = [held_out_episode(game_cfg, cfg.seed + i, cfg.episode_frames) for i in range(cfg.episodes)]
    long_frames, long_actions = held_out_episode(game_cfg, cfg.seed + 1000, cfg.rollout_frames + k)
    ep_frames = episodes[0][0]
    horizons = [h for h in cfg.horizons if h + k <= len(ep_frames)]
    if not horizons:
        raise WorldgameError(f"horizons={list(cfg.horizons)}: each needs episode_frames >= horizon + K ({k}); "
                             f"raise episode_frames (now {cfg.episode_frames}) or lower the horizons")
    gen = np.random.default_rng(cfg.seed)

    stage(f"teacher-forced ({cfg.samples} samples; {sampler} at {list(cfg.steps)} steps, teacher {cfg.teacher_steps} steps)")
    backgrounds = [median_background(f) for f, _ in episodes]  # per held-out episode; foreground = away from it
    tf = teacher_forced(cfg, model, dreamer, teacher, episodes, backgrounds, gen)

    # closed loop: one long rollout (player tracking, collapse) + many short ones (PSNR by horizon)
    stage(f"{cfg.long_rollouts} dreams of {cfg.rollout_frames} frames")
    # the same real actions, ``long_rollouts`` dreams that differ only in sampling noise
    fusion = _fusion(cfg)
    dreams = closed_loop(dreamer, long_frames, long_actions, [k] * cfg.long_rollouts, cfg.rollout_frames,
                         cfg.rollout_steps, cfg.seed, fusion=fusion, desc="long dreams").numpy()
    long_gen, long_real = dreams[0], long_frames[k : k + cfg.rollout_frames]
    player = _player_tracking(dreams, long_real) if is_bouncer else {}  # the built-in game's green player
    stage(f"{cfg.horizon_rollouts} short dreams")
    short = short_dreams(cfg, dreamer, episodes[0], horizons, backgrounds[0], gen)
    stage(f"control: {cfg.control_contexts} contexts, {cfg.control_frames} frames holding each move")
    control = _control(cfg, dreamer, game_cfg, episodes, backgrounds)
    stage("objects alive")
    objects = _objects(cfg, dreams, long_real, long_actions[k : k + cfg.rollout_frames], long_frames[k - 1],
                       median_background(long_frames), game_cfg)
    objects["control"] = control
    tail = dreams[:, -10:].reshape(-1, *dreams.shape[2:])
    health = _health(tail) if is_bouncer else _foreground_health(tail, long_real[-10:], median_background(long_frames))
    display = display_figures(dreamer, episodes, cfg.rollout_steps,
                              (cfg.fusion, cfg.fusion_window, cfg.fusion_base) if fusion else None, cfg.seed)
    events = None
    if model.has_events and cfg.event_games:
        stage(f"game events: {cfg.event_games} whole games, teacher-forced and dreamed")
        games = event_eval.held_out_games(game_cfg, cfg.seed + 5000, cfg.event_games, cfg.event_frames, is_bouncer)
        events = {"games": len(games), "drawn": model.draws_events,
                  **({"teacher_forced": event_eval.teacher_forced(model, games)} if model.events is not None else {}),
                  "dream": event_eval.in_dreams(dreamer, games, cfg.rollout_steps, cfg.seed,
                                                bouncer_checks.pips if is_bouncer else None)}
    agent = None
    if model.agent is not None and cfg.agent_games:
        stage(f"the agent in the real game: {cfg.agent_games} games, against random{' and scripted' * is_bouncer}")
        agent = agent_eval.real_game_scores(model, game_cfg, cfg.seed, cfg.agent_games, cfg.agent_frames)

    result = {
        "frames": int(tf["samples"] + cfg.rollout_frames * cfg.long_rollouts + short["frames"]),  # dreamed, not control
        "vae_psnr": round(tf["vae_psnr"], 2),
        "vae_foreground": _r(tf["vae_fg"], 3),
        "teacher_forced": {"sampler": sampler, "spacing": spacing, "psnr": _r(tf["psnr"]), "ssim": _r(tf["ssim"], 4),
                           **{key: {name: round(v[key], 3) for name, v in tf["fg"].items()}
                              for key in ("fg_psnr", "fg_recall", "fg_precision")}},
        "rollout": {
            "frames": int(cfg.rollout_frames),
            "steps": int(cfg.rollout_steps),
            "sampler": sampler,
            "spacing": spacing,
            "context_noise": model.context_noise,
            **{key: player[key] for key in ("player_err_px", "player_lost_frac") if key in player},
            "rollouts": int(cfg.long_rollouts),
            **{key: player[key] for key in ("first_hit_frame", "player_err_px_until_first_hit") if key in player},
            "psnr_by_horizon": _r(short["psnr"]),
            "fg_psnr_by_horizon": _r(short["fg_psnr"]),
            "fusion": fusion.mode.value if fusion else "off",
            "collapsed": not health["ok"],
        },
        "objects": objects,
        "small_objects": {"max_px": SMALL_OBJECT_PX, "vae": tf["vae_small"],
                          "teacher_forced": {"recall": {n: v["recall"] for n, v in tf["small"].items()},
                                             "objects": tf["small"]["copy_last"]["objects"]},
                          "dream": small_objects_in_dreams(dreams, long_real, median_background(long_frames))},
        "display": display,
        **({"events": events} if events is not None else {}),
        **({"agent": agent} if agent is not None else {}),
        "checkpoint": str(path),
        "backend": backend,
        "precision": dreamer.precision,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    strip_at = [h for h in (1, 10, 100, 300, 1000, 2000) if h <= cfg.rollout_frames]
    _strip(long_real, long_gen, strip_at, out / "strip.png", model.metadata.get("native_size"))
    atomic_write_json(out / "eval.json", result)
    write_report(result, health, out / "report.md", strip_at)
    print(f"eval: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for line in summary(result, health):
        print(line)
    print(f"wrote {out / 'report.md'}, {out / 'strip.png'}")
    print(json.dumps(result))  # the contract: the last stdout line, one JSON object
    return result


# --- the stages (each shaped like a training objective's validation: inputs in, figures out) -------
def teacher_forced(cfg: EvalSettings, model: WorldModel, dreamer: Sampler, teacher: Sampler | None, episodes: list,
                   backgrounds: list, gen: np.random.Generator) -> dict:
    """Real context, one predicted frame, on ``cfg.samples`` picks of the held-out episodes: the
    autoencoder's round trip, copy-last (a model that predicts nothing), the play sampler at each
    of ``cfg.steps`` and the teacher -- PSNR, SSIM, foreground and small-object recall."""
    k = model.context_length
    picks = [(e, int(gen.integers(k, len(episodes[e][0])))) for e in gen.integers(len(episodes), size=cfg.samples)]
    ctx_frames = np.stack([episodes[e][0][t - k : t] for e, t in picks])
    ctx_actions = np.stack([episodes[e][1][t - k + 1 : t + 1] for e, t in picks])
    real = torch.from_numpy(np.stack([episodes[e][0][t] for e, t in picks]))
    flat = model.encode(ctx_frames.reshape(-1, *ctx_frames.shape[2:]))
    context = flat.view(len(picks), k, *flat.shape[1:])
    actions = torch.as_tensor(ctx_actions, device=model.device)
    real_u = frames_to_unit(real)
    bg = torch.stack([backgrounds[e] for e, _ in picks])
    recon = frames_to_unit(model.decode(model.encode(real.numpy())).cpu())
    vae_psnr = psnr(recon, real_u).mean().item()
    vae_fg = foreground_scores(recon, real_u, bg)
    vae_small = small_object_recall(recon, real_u, bg)
    copy_last = frames_to_unit(torch.from_numpy(ctx_frames[:, -1]))  # a model that predicts nothing
    tf_psnr, tf_ssim = {"copy_last": psnr(copy_last, real_u).mean().item()}, {"copy_last": ssim(copy_last, real_u).mean().item()}
    tf_fg = {"copy_last": foreground_scores(copy_last, real_u, bg)}
    tf_small = {"copy_last": small_object_recall(copy_last, real_u, bg)}  # a moving ball is elsewhere by now
    samplers = {str(s): s for s in cfg.steps}
    for name, s in [*samplers.items(), ("teacher", cfg.teacher_steps)]:
        g = torch.Generator(device=model.device).manual_seed(cfg.seed)
        if name == "teacher" and teacher is None:
            continue
        latent = (teacher if name == "teacher" else dreamer).step(context, actions, steps=s, generator=g)
        pred = frames_to_unit((model if name == "teacher" else dreamer).decode(latent).cpu())  # as play decodes (backend=onnx: its decoder)
        tf_psnr[name], tf_ssim[name] = psnr(pred, real_u).mean().item(), ssim(pred, real_u).mean().item()
        tf_fg[name] = foreground_scores(pred, real_u, bg)
        tf_small[name] = small_object_recall(pred, real_u, bg)

    return {"samples": len(picks), "vae_psnr": vae_psnr, "vae_fg": vae_fg, "vae_small": vae_small,
            "psnr": tf_psnr, "ssim": tf_ssim, "fg": tf_fg, "small": tf_small}


def short_dreams(cfg: EvalSettings, dreamer: Sampler, episode: tuple, horizons: list[int], background: torch.Tensor,
                 gen: np.random.Generator) -> dict:
    """``cfg.horizon_rollouts`` closed-loop dreams from real starts of one held-out episode: PSNR
    and foreground PSNR against the real frame at each horizon."""
    k, (ep_frames, ep_actions) = dreamer.model.context_length, episode
    max_h = max(horizons)
    starts = sorted(int(s) for s in gen.integers(k, len(ep_frames) - max_h + 1, size=cfg.horizon_rollouts))
    short = closed_loop(dreamer, ep_frames, ep_actions, starts, max_h, cfg.rollout_steps, cfg.seed, fusion=_fusion(cfg),
                        desc="short dreams")
    by_h, fg_by_h = {}, {}
    for h in horizons:
        truth = frames_to_unit(torch.from_numpy(np.stack([ep_frames[s + h - 1] for s in starts])))
        by_h[str(h)] = psnr(frames_to_unit(short[:, h - 1]), truth).mean().item()
        fg_by_h[str(h)] = foreground_scores(frames_to_unit(short[:, h - 1]), truth, background)["fg_psnr"]
    return {"frames": len(starts) * max_h, "psnr": by_h, "fg_psnr": fg_by_h}


def _is_bouncer(game_cfg: dict) -> bool:
    return TARGETS.get(str(game_cfg.get("_target_", ""))) == "bouncer" or game_cfg.get("name") == "bouncer"


def _player_tracking(dreams: np.ndarray, long_real: np.ndarray) -> dict:
    """The built-in game: the dream player's distance to the real one on the same actions."""
    real_xy = [find_player(f) for f in long_real]
    # the real player jumping more than a step means an orb hit sent it back to the middle; from
    # there on each dream's own (chaotic) collisions decide where its player is
    jumps = [i for i in range(1, len(real_xy)) if real_xy[i] is not None and real_xy[i - 1] is not None
             and np.hypot(*np.subtract(real_xy[i], real_xy[i - 1])) > 3]
    first_hit = jumps[0] if jumps else None
    errors, before_hit, lost = [], [], 0
    for dream in dreams:
        for i, fake in enumerate(dream):
            p = find_player(fake)
            if real_xy[i] is None:  # the real player hidden: nothing to compare
                continue
            if p is None:
                lost += 1
                continue
            errors.append(float(np.hypot(p[0] - real_xy[i][0], p[1] - real_xy[i][1])))
            if first_hit is None or i < first_hit:
                before_hit.append(errors[-1])
    return {"player_err_px": round(float(np.mean(errors)), 2) if errors else None,  # None: player never found
            "player_lost_frac": round(lost / dreams[:, :, 0, 0, 0].size, 4),
            "first_hit_frame": first_hit,
            "player_err_px_until_first_hit": round(float(np.mean(before_hit)), 2) if before_hit else None}


def _control(cfg: EvalSettings, sampler: Sampler, game_cfg: dict, episodes: list, backgrounds: list) -> dict:
    """objects.control: hold each movement key from ``control_contexts`` real contexts, dream vs game."""
    model = sampler.model
    k, n = model.context_length, int(cfg.control_frames)
    rng = np.random.default_rng(cfg.seed + 1)  # its own draws: the other figures keep their samples
    contexts = [(i % len(episodes), int(rng.integers(k, len(episodes[i % len(episodes)][0]) + 1)))
                for i in range(cfg.control_contexts)]
    if not contexts:
        return {"frames": n, "pairs": {}, "passed": None, "skipped": "control_contexts=0"}
    seeded = [(cfg.seed + e, f, a) for e, (f, a) in enumerate(episodes)]  # as held_out_episode made them

    def dream(ctx, action, frames):
        return hold_dream(sampler, episodes, ctx, action, frames, cfg.rollout_steps, cfg.seed)

    def real(ctx, action, frames):
        return hold_real(game_cfg, seeded, ctx, action, frames)

    try:
        return control_check(dream, real, contexts, [backgrounds[e] for e, _ in contexts], model.action_names, n)
    except NotReplayable as e:  # no real reference to compare with
        return {"frames": n, "pairs": {}, "passed": None, "skipped": f"the game does not replay: {e}"}


def summary(result: dict, health: dict) -> list[str]:
    """A few lines for a person, before the JSON: only what applies to the checkpoint's game."""
    ro, tf = result["rollout"], result["teacher_forced"]
    best = max((n for n in tf["fg_psnr"] if n != "copy_last"), key=lambda n: tf["fg_psnr"][n], default=None)
    lines = [f"teacher-forced fg PSNR {tf['fg_psnr'][best]:.2f} dB at {best} (copy-last {tf['fg_psnr']['copy_last']:.2f})"
             if best else f"teacher-forced fg PSNR: copy-last {tf['fg_psnr']['copy_last']:.2f} dB"]
    if "player_err_px" in ro:
        lines.append(f"player error {ro['player_err_px']} px; lost in {100 * ro['player_lost_frac']:.1f}% of dream frames")
        look = f"background {100 * health['background']:.0f}%, orbs {100 * health['orbs']:.2f}%, player {100 * health['player']:.0f}%"
    else:
        look = f"foreground {100 * health['foreground']:.2f}% of pixels (real {100 * health['real_foreground']:.2f}%)"
    lines.append(f"last dream frames: {look}: {'COLLAPSED' if ro['collapsed'] else 'no collapse'}")
    small = result.get("small_objects")
    if small:
        lines.append(small_objects_line(small))
    control = result.get("objects", {}).get("control", {})
    for name, p in control.get("pairs", {}).items():
        verdict = {True: "passed", False: "FAILED", None: "no verdict"}[p["passed"]]
        what = "px changed by FIRE" if name == "FIRE/NOOP" else "px along the real move"
        lines.append(f"control {name}: dream {p['dream_px']} vs real {p['real_px']} {what}, "
                     f"agree {p['agree_frac']} of {p['contexts'][0]} contexts: {verdict}")
    if control.get("skipped"):
        lines.append(f"control: skipped ({control['skipped']})")
    if "agent" in result:
        nets = ", ".join(f"{name} {p['net_per_1k']}" for name, p in result["agent"]["policies"].items())
        lines.append(f"the agent in the real game: net points per 1,000 frames {nets}")
    return lines


def _fusion(cfg: EvalSettings) -> Fusion | None:
    """The display fusion whose shown frames are measured (off: the model's own frames)."""
    mode = FusionMode.parse(cfg.fusion)
    if mode is FusionMode.off:
        return None
    return Fusion(mode, int(cfg.fusion_window), float(cfg.fusion_base))


def _objects(cfg: EvalSettings, dreams: np.ndarray, real: np.ndarray, actions: np.ndarray, before: np.ndarray,
             background: torch.Tensor, game_cfg: dict) -> dict:
    """Objects alive in the long dreams against the real game, at the object horizons.

    dreams (D, T, H, W, 3) and real (T, H, W, 3) uint8; actions[t] produced frame t; ``before`` is
    the real frame preceding the first one."""
    horizons = [h for h in cfg.object_horizons if h <= dreams.shape[1]]
    blobs = np.stack([blobs_per_frame(d, background) for d in dreams])
    real_blobs = blobs_per_frame(real, background)
    out = {"horizons": horizons, "dreams": int(dreams.shape[0]),
           "blobs": {"dream": curve_at(blobs, horizons), "real": curve_at(real_blobs[None], horizons),
                     "dream_mean": round(float(blobs.mean()), 3), "real_mean": round(float(real_blobs.mean()), 3),
                     "count_error": round(float(np.abs(blobs - real_blobs[None]).mean()), 3)}}
    if not _is_bouncer(game_cfg):
        return out
    orbs = np.stack([bouncer_checks.orbs_per_frame(d) for d in dreams])
    real_orbs = bouncer_checks.orbs_per_frame(real)
    n_orbs = int(game_cfg.get("num_orbs", 3))
    coins = np.stack([bouncer_checks.coins_per_frame(d) for d in dreams])
    real_coins = bouncer_checks.coins_per_frame(real)
    pips = [bouncer_checks.pip_changes(d) for d in dreams]
    errors = np.concatenate([bouncer_checks.control_errors(d, actions, before) for d in dreams])
    real_errors = bouncer_checks.control_errors(real, actions, before)
    per_k = 1000 / (dreams.shape[0] * max(1, dreams.shape[1] - 1))  # changes per 1,000 dream frames
    out["bouncer"] = {
        "orbs": {"dream": curve_at(orbs, horizons), "real": curve_at(real_orbs[None], horizons),
                 "dream_mean": round(float(orbs.mean()), 3), "real_mean": round(float(real_orbs.mean()), 3),
                 # what a player sees wrong per frame: each orb missing or invented against the real game
                 # on the same actions counts one (the figure the play sampler is chosen by)
                 "count_error": round(float(np.abs(orbs - real_orbs[None]).mean()), 3)},
        "all_orbs_frac": {"dream": round(float((orbs >= n_orbs).mean()), 4),
                          "real": round(float((real_orbs >= n_orbs).mean()), 4)},
        "no_orbs_frac": {"dream": round(float((orbs == 0).mean()), 4), "real": round(float((real_orbs == 0).mean()), 4)},
        # more orbs than the game ever has (num_orbs): objects the dream invented
        "invented_frac": {"dream": round(float((orbs > n_orbs).mean()), 4), "real": round(float((real_orbs > n_orbs).mean()), 4)},
        # more than one coin: the game never shows two; a dream that averages the coin's chance multiplies them
        "coins_extra_frac": {"dream": round(float((coins > 1).mean()), 4), "real": round(float((real_coins > 1).mean()), 4)},
        "pip_changes_per_1000": {
            "dream": round(sum(p["changes"] for p in pips) * per_k, 2),
            "dream_uncaused": round(sum(p["uncaused"] for p in pips) * per_k, 2),
            "real_uncaused": round(bouncer_checks.pip_changes(real)["uncaused"] * 1000 / max(1, len(real) - 1), 2)},
        "control": {"frames": len(errors),
                    "err_px_mean": round(float(errors.mean()), 3) if len(errors) else None,
                    "within_1px_frac": round(float((errors <= 1).mean()), 4) if len(errors) else None,
                    "real_within_1px_frac": round(float((real_errors <= 1).mean()), 4) if len(real_errors) else None},
    }
    return out


def _foreground_health(frames: np.ndarray, real: np.ndarray, background: torch.Tensor) -> dict:
    """Any game: do the last dreamed frames still hold about as much foreground as the real game?"""
    from worldgame.eval.objects import foreground_mask

    def share(f: np.ndarray) -> float:
        return float(foreground_mask(frames_to_unit(torch.from_numpy(f)), background).float().mean())

    made, truth = share(frames), share(real)
    ratio = made / max(truth, 1e-6)
    return {"foreground": round(made, 4), "real_foreground": round(truth, 4), "ok": 0.2 <= ratio <= 5}


def _health(frames: np.ndarray) -> dict:
    """Do the last generated frames still show the background, the player and the orbs?"""
    from worldgame.games.bouncer import BACKGROUND, ORB

    def share(colour: tuple[int, int, int]) -> float:
        return float((np.abs(frames.astype(int) - colour).max(-1) < 40).mean())

    bg, orbs = share(BACKGROUND), share(ORB)
    player = sum(find_player(f) is not None for f in frames) / len(frames)
    return {"background": round(bg, 3), "orbs": round(orbs, 4), "player": round(player, 2),
            "ok": bg > 0.5 and orbs > 0.001 and player >= 0.5}


def _strip(real: np.ndarray, fake: np.ndarray, at: list[int], path: Path, native_size: object = None,
           scale: int = 3) -> None:
    """Real frames over dreamed ones at the horizons ``at``, each drawn at its game's own aspect
    (``native_size`` (height, width), e.g. 210x160 for Atari) by nearest neighbour, as play shows it."""
    size = display_size(real.shape[1], native_size, scale)
    top = np.concatenate([resize_nearest(real[h - 1], size) for h in at], axis=1)
    bottom = np.concatenate([resize_nearest(fake[h - 1], size) for h in at], axis=1)
    img = np.concatenate([top, np.full((2 * scale, top.shape[1], 3), 255, np.uint8), bottom], axis=0)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def _r(d: dict, n: int = 2) -> dict:
    return {key: round(v, n) for key, v in d.items()}
