"""A shipped checkpoint's model card, ``<checkpoint>/README.md``, generated from what the checkpoint
itself records, so the card and the checkpoint cannot disagree:

* ``worldgame.json``: the game, frame size, actions, tick rate, the training records of each stage
  (data, budget, the step and minute of the weights kept, their validation figures), the data's
  provenance and the play default (``"play"``: sampler and spacing);
* ``eval/eval.json``: what ``worldgame eval`` measured on held-out play (the headline figures);
* ``events/config.json`` where there is an event head (whether it may end a dream).

Usage (from anywhere; the folders are checkpoint folders)::

    python tools/model_card.py checkpoints/bouncer [checkpoints/boxing ...]   # (re)write each README.md
    python tools/model_card.py --check checkpoints/bouncer ...    # exit 1 if a README.md differs from its card
    python tools/model_card.py --stdout checkpoints/pong          # print the card, write nothing

Every file read is untrusted data: read through ``worldgame.fileio.read_json_object`` (regular files
only, size-bounded, a JSON object or a one-line refusal), every value type-checked before it is
shown (a missing or mistyped figure is left out, never guessed), no code run. The limits are derived
from the eval figures (objects lost, control, events, the agent against random play); the few
things only the eval strip and the studies show are one fixed sentence per game in ``OBSERVED``.
Exit codes: 0 done (or the cards match), 1 ``--check`` found a card that differs, 2 a checkpoint
could not be read.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout: the worldgame beside it

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_write, read_json_object

MAX_JSON_BYTES = 4 << 20  # worldgame.json and eval.json are a few kB; a folder's config.json smaller still
CARD = "README.md"
PARTS = ("vae", "denoiser", "teacher", "events", "agent", "scheduler")
SAMPLERS = {"lcm": "LCM", "ddim": "DDIM", "dpmsolver": "DPM-Solver++ 2M", "teacher": "the teacher (DDIM)"}
STAGES = {
    "vae": "autoencoder",
    "teacher": "teacher denoiser",
    "distill": "consistency distillation",
    "rollout": "own-rollout fine-tuning",
    "events": "event head",
    "agent": "agent (inside the dream)",
}
# What the figures cannot say, by worldgame.json's "game": seen in eval/strip.png (the real game above, the
# dream below) and the studies behind the defaults (docs/results.md).
OBSERVED = {
    "bouncer": "orbs are lost mostly where the real game does something random: a shot or hit orb respawns at "
    "a random place, which a network trained on the real next frame draws as the average of where it may "
    "appear (`python tools/orb_losses.py checkpoints/bouncer` classifies each loss).",
    "gym:ALE/Boxing-v5": "the boxers blur when they are close together, and in long dreams the score and clock "
    "digits no longer follow the real game's.",
    "gym:ALE/Pong-v5": "the score digits drift from the real game's in long dreams, and a fading ball sometimes "
    "vanishes before it reaches a paddle.",
}


# ---------------------------------------------------------------- typed reads of untrusted values


def get(obj: Any, *keys: str | int) -> Any:
    """``obj[k0][k1]...``, or None where any level is missing or not a dict/list."""
    for k in keys:
        if isinstance(obj, dict) and isinstance(k, str):
            obj = obj.get(k)
        elif isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def num(value: Any) -> float | None:
    """A finite number, or None (bools, strings, NaN and the like are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def text(value: Any, limit: int = 400) -> str | None:
    """A string shown as one line of markdown: control characters dropped, table pipes escaped, cut
    at ``limit`` characters."""
    if not isinstance(value, str):
        return None
    line = re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip().replace("|", "\\|")
    return (line[: limit - 1] + "…") if len(line) > limit else line or None


def f(value: Any, digits: int = 2, unit: str = "") -> str:
    """A figure with ``digits`` decimals (thousands separated), or an en dash where there is none."""
    x = num(value)
    return "–" if x is None else f"{x:,.{digits}f}{unit}"


def pct(value: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage."""
    x = num(value)
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def whole(value: Any) -> str:
    x = num(value)
    return "–" if x is None else f"{round(x):,}"


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [row(*head), row(*["---"] * len(head)), *(row(*r) for r in rows)]


# ---------------------------------------------------------------- reading a checkpoint


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Everything the card is made of; one WorldgameError line if a required file is missing or bad."""
    hint = "pass a checkpoint folder holding worldgame.json and eval/eval.json (made by worldgame train and eval)"
    meta = read_json_object(folder / "worldgame.json", MAX_JSON_BYTES, f"{folder}/worldgame.json", hint)
    ev = read_json_object(folder / "eval" / "eval.json", MAX_JSON_BYTES, f"{folder}/eval/eval.json", hint)
    parts = [p for p in PARTS if (folder / p / "config.json").is_file() or (folder / p).is_dir()]
    events_cfg: dict[str, Any] = {}
    if (folder / "events" / "config.json").is_file():
        events_cfg = read_json_object(folder / "events" / "config.json", MAX_JSON_BYTES,
                                      f"{folder}/events/config.json", hint)
    return {"meta": meta, "eval": ev, "parts": parts, "events_cfg": events_cfg}


def display_path(folder: Path) -> str:
    """The folder as the card names it: relative to the repository when inside it (the same text
    whatever the working directory), else as given."""
    try:
        return folder.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return folder.as_posix()


def game_names(meta: dict[str, Any]) -> tuple[str, str]:
    """(the game's id as recorded, a short title)."""
    game = text(meta.get("game"), 80) or "unknown game"
    gym_id = text(get(meta, "game_config", "id"), 80)
    if game == "bouncer":
        return game, "Bouncer"
    if gym_id:
        return game, gym_id.split("/")[-1].split("-")[0]
    return game, game


def sampler_name(sampler: Any, spacing: Any) -> str:
    name = SAMPLERS.get(sampler, text(sampler, 40) or "LCM") if isinstance(sampler, str) else "LCM"
    space = text(spacing, 20)
    return f"{name} ({space} spacing)" if space else name


# ---------------------------------------------------------------- the card's sections


def section_game(meta: dict[str, Any], game: str, path: str) -> list[str]:
    size = num(meta.get("frame_size"))
    native = meta.get("native_size")
    hz = num(meta.get("tick_hz"))
    k = num(meta.get("context_length"))
    actions = [a for a in meta.get("action_names", []) if isinstance(a, str)] if isinstance(
        meta.get("action_names"), list) else []
    lines = ["## The game", ""]
    if game == "bouncer":
        lines.append("* **Game**: Bouncer, the built-in game (`worldgame/games/bouncer.py`; its rules: "
                     "[docs/play.md](../../docs/play.md#the-built-in-game-bouncer)).")
        cfg = meta.get("game_config") if isinstance(meta.get("game_config"), dict) else {}
        settings = ", ".join(f"`{key}={cfg[key]}`" for key in ("num_orbs", "lives", "coin_chance", "max_steps")
                             if num(cfg.get(key)) is not None)
        rules = num(cfg.get("rules_version"))
        rules_note = (f"rules version {whole(rules)}" if rules is not None else
                      "rules version 1 (recorded before `rules_version` existed: the original rules)")
        if settings:
            lines.append(f"* **Game settings**: {settings}; {rules_note}.")
    else:
        gym_id = text(get(meta, "game_config", "id"), 80) or game
        lines.append(f"* **Game**: `{gym_id}` through the gymnasium adapter (`pip install -e '.[atari]'`).")
    if size is not None:
        shown = ""
        if isinstance(native, list) and len(native) == 2 and all(num(v) is not None for v in native):
            shown = f"; the game's own frames are {whole(native[1])}×{whole(native[0])} (width × height), " \
                    "shown at that aspect"
        lines.append(f"* **Frames**: {whole(size)}×{whole(size)} RGB as the model sees them{shown}.")
    if hz is not None:
        lines.append(f"* **Tick rate**: {f(hz, 0)} Hz.")
    if actions:
        keys = meta.get("key_bindings") if isinstance(meta.get("key_bindings"), dict) else {}

        def bound(action: str) -> str:
            combos = [text(k, 40) for k in keys.get(action, [])] if isinstance(keys.get(action), list) else []
            shown = " / ".join(c for c in combos if c)
            return f"`{text(action, 32)}` ({shown})" if shown else f"`{text(action, 32)}`"

        lines.append(f"* **Actions and their keys** ({len(actions)}): " + ", ".join(bound(a) for a in actions) + ".")
    if k is not None:
        noise = num(meta.get("context_noise"))
        extra = f", context noise {f(noise)} at play" if noise is not None else ""
        lines.append(f"* **Context**: the last {whole(k)} frames' latents and actions{extra}.")
    lines += ["", f"Play it: `worldgame play checkpoint={path}`"
              + (" (or just `worldgame play`: it is the default)." if game == "bouncer" else ".")]
    return lines


def section_play(meta: dict[str, Any], ev: dict[str, Any], parts: list[str]) -> list[str]:
    play = meta.get("play") if isinstance(meta.get("play"), dict) else None
    steps = num(get(ev, "rollout", "steps"))
    lines = ["## Play default", ""]
    if play:
        lines.append(f"* **Sampler**: {sampler_name(play.get('sampler'), play.get('spacing'))}"
                     + (f" at {whole(steps)} steps" if steps is not None else "")
                     + " (`worldgame.json` `\"play\"`; `sampler=` and `spacing=` choose another).")
        why = text(play.get("chosen_by"))
        if why:
            lines.append(f"* **Chosen by**: {why}")
    else:
        lines.append("* **Sampler**: LCM" + (f" at {whole(steps)} steps" if steps is not None else "")
                     + " (`worldgame.json` names no `\"play\"` sampler: LCM is the default for such checkpoints;"
                     " `sampler=` chooses another).")
    lines.append("* **Parts**: " + ", ".join(f"`{p}/`" for p in parts) + ".")
    return lines


def section_training(meta: dict[str, Any]) -> list[str]:
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    lines = ["## Training", ""]
    data = meta.get("data")
    if isinstance(data, dict):
        frames, episodes = num(data.get("frames")), num(data.get("episodes"))
        folder = text(data.get("folder"), 80)
        head = ", ".join(x for x in (f"{whole(episodes)} episodes" if episodes is not None else "",
                                     f"{whole(frames)} frames" if frames is not None else "") if x)
        lines.append(f"* **Data**: {'`' + folder + '`' if folder else 'recorded'}" + (f", {head}" if head else "") + ".")
        for key, label in (("collected_with", "Collected with"), ("held_out", "Held out")):
            value = text(data.get(key))
            if value:
                lines.append(f"* **{label}**: {value}")
    elif text(data):
        lines.append(f"* **Data**: {text(data)}")
    recipe = text(meta.get("recipe"), 600)
    if recipe:
        lines.append(f"* **Recipe**: {recipe}")
    minutes = meta.get("training_minutes")
    if isinstance(minutes, dict):
        spent = [f"{STAGES.get(k, k)} {f(v, 1)} min" for k, v in minutes.items()
                 if k in STAGES and num(v) is not None]
        wall = num(minutes.get("total_wall"))
        if spent:
            lines.append("* **Training time recorded**: " + ", ".join(spent)
                         + (f"; {f(wall, 1)} min wall in all" if wall is not None else "") + ".")
    rows = []
    skipped = []
    for stage, record in training.items():
        if not isinstance(record, dict) or stage not in STAGES:
            continue
        cfg = record.get("config") if isinstance(record.get("config"), dict) else {}
        if num(cfg.get("steps")) == 0:
            skipped.append(STAGES[stage])
            continue
        hist = record.get("history")
        best = hist[-1] if isinstance(hist, list) and hist and isinstance(hist[-1], dict) else {}
        figures = ", ".join(f"{text(k, 24)} {f(v, 3).rstrip('0').rstrip('.')}" for k, v in best.items()
                            if k not in ("step", "minutes") and isinstance(k, str) and num(v) is not None)
        budget = " / ".join(x for x in (f"{whole(cfg.get('steps'))} steps" if num(cfg.get("steps")) else "",
                                        f"{f(cfg.get('max_minutes'), 0)} min" if num(cfg.get("max_minutes")) else "")
                            if x)
        kept = (f"step {whole(best.get('step'))}, minute {f(best.get('minutes'), 1)}"
                if num(best.get("step")) is not None else "–")
        rows.append([STAGES[stage], text(record.get("data"), 160) or "–", budget or "–",
                     whole(cfg.get("batch_size")), kept, figures or "–"])
    if rows:
        lines += ["", ("Each stage stops at its step or minute limit, whichever comes first, and keeps the weights"
                  " of its best validation:"), ""]
        lines += table(["stage", "data", "limit", "batch", "weights kept (best validation)", "its validation"], rows)
    not_run = [STAGES[s] for s in ("distill", "rollout") if s not in training or STAGES[s] in skipped]
    if not_run:
        lines += ["", f"Not run: {', '.join(not_run)}; the denoiser plays the teacher's (EMA) weights."]
    return lines


def tf_rows(ev: dict[str, Any], sampler: str) -> list[list[str]]:
    tf = ev.get("teacher_forced") if isinstance(ev.get("teacher_forced"), dict) else {}
    psnr = tf.get("psnr") if isinstance(tf.get("psnr"), dict) else {}
    small = get(ev, "small_objects", "teacher_forced", "recall")
    rows = []
    for key in psnr:
        if not isinstance(key, str):
            continue
        if key == "copy_last":
            name = "copy the last frame (baseline)"
        elif key == "teacher":
            name = "the teacher, many DDIM steps"
        elif key.isdigit():
            name = f"{key} {sampler} step{'s' if key != '1' else ''}"
        else:
            continue
        cells = [name] + [f(get(tf, m, key), d) for m, d in
                          (("psnr", 2), ("ssim", 4), ("fg_psnr", 2), ("fg_recall", 3), ("fg_precision", 3))]
        if isinstance(small, dict):
            cells.append(f(small.get(key), 3))
        rows.append(cells)
    return rows


def section_eval(meta: dict[str, Any], ev: dict[str, Any], game: str) -> list[str]:
    tf_sampler = sampler_name(get(ev, "teacher_forced", "sampler"), None)
    lines = ["## Eval figures", "",
             f"From `eval/eval.json` (`worldgame eval` on held-out play: {whole(ev.get('frames'))} teacher-forced frames"
             + (f", {f(num(ev.get('seconds')) / 60, 0)} minutes" if num(ev.get("seconds")) is not None else "")
             + "); the full report is [eval/report.md](eval/report.md), the strip of the real game (top) against"
             " the dream (bottom) [eval/strip.png](eval/strip.png).", ""]
    vae = ev.get("vae_foreground") if isinstance(ev.get("vae_foreground"), dict) else {}
    small_vae = get(ev, "small_objects", "vae", "recall")
    lines.append(f"* **Autoencoder**: PSNR {f(ev.get('vae_psnr'))} dB; foreground PSNR {f(vae.get('fg_psnr'))} dB, "
                 f"recall {f(vae.get('fg_recall'), 3)}, precision {f(vae.get('fg_precision'), 3)}"
                 + (f"; small objects kept {f(small_vae, 3)}" if num(small_vae) is not None else "") + ".")
    rows = tf_rows(ev, tf_sampler)
    if rows:
        head = ["next frame, real context", "PSNR dB", "SSIM", "fg PSNR dB", "fg recall", "fg precision"]
        if isinstance(get(ev, "small_objects", "teacher_forced", "recall"), dict):
            head.append("small objects kept")
        lines += ["", *table(head, rows)]
    ro = ev.get("rollout") if isinstance(ev.get("rollout"), dict) else {}
    objs = ev.get("objects") if isinstance(ev.get("objects"), dict) else {}
    horizons = [h for h in objs.get("horizons", []) if num(h) is not None] if isinstance(objs.get("horizons"), list) else []
    lines += ["", (f"**Dreams**: {whole(ro.get('rollouts'))} closed-loop dreams of {whole(ro.get('frames'))} frames at "
              f"{whole(ro.get('steps'))} {sampler_name(ro.get('sampler'), ro.get('spacing'))} steps, display fusion "
              f"{text(ro.get('fusion'), 20) or '–'}, against the real game on the same actions; collapsed: "
              f"{'**yes**' if ro.get('collapsed') is True else 'no'}.")]
    if horizons:
        rows = []
        blobs = objs.get("blobs") if isinstance(objs.get("blobs"), dict) else {}
        series = [("foreground blobs, dream", blobs, "dream"), ("foreground blobs, real game", blobs, "real")]
        orbs = get(objs, "bouncer", "orbs")
        if isinstance(orbs, dict):
            series += [("red orbs, dream", orbs, "dream"), ("red orbs, real game", orbs, "real")]
        for name, src, side in series:
            rows.append([name] + [f(get(src, side, str(int(h)))) for h in horizons] + [f(src.get(f"{side}_mean"))])
        lines += ["", *table(["frame"] + [f"{int(h):,}" for h in horizons] + ["mean"], rows)]
        err = num(blobs.get("count_error"))
        if err is not None:
            lines += ["", f"* objects missing or invented per frame (foreground blobs): {f(err)}"]
    bouncer = objs.get("bouncer") if isinstance(objs.get("bouncer"), dict) else None
    if bouncer:
        lines += [
            (f"* all orbs shown in {pct(get(bouncer, 'all_orbs_frac', 'dream'))} of dream frames (real game "
            f"{pct(get(bouncer, 'all_orbs_frac', 'real'))}); none in {pct(get(bouncer, 'no_orbs_frac', 'dream'))}; "
            f"more than the game has in {pct(get(bouncer, 'invented_frac', 'dream'))}; orbs missing or invented "
            f"per frame {f(get(bouncer, 'orbs', 'count_error'))}"),
            (f"* player position error {f(ro.get('player_err_px'))} px mean, player lost in "
            f"{pct(ro.get('player_lost_frac'))} of frames; the player moves within 1 px of what the key says on "
            f"{pct(get(bouncer, 'control', 'within_1px_frac'))} of frames away from orbs"),
            (f"* score and lives pips changing without a cause: {f(get(bouncer, 'pip_changes_per_1000', 'dream_uncaused'), 1)}"
            f" per 1,000 dream frames (real game {f(get(bouncer, 'pip_changes_per_1000', 'real_uncaused'), 1)})"),
        ]
    small = get(ev, "small_objects", "dream")
    if isinstance(small, dict):
        lines.append(f"* small objects (a ball): where the real game shows one the dream shows one too in "
                     f"{pct(small.get('shown_frac'))} of frames, and shows one the real game does not in "
                     f"{pct(small.get('invented_frac'), 2)}")
    pairs = get(objs, "control", "pairs")
    if isinstance(pairs, dict) and pairs:
        rows = []
        for name, p in pairs.items():
            if isinstance(p, dict):
                ctx = p.get("contexts")
                ctx_s = f"{whole(ctx[0])} of {whole(ctx[1])}" if isinstance(ctx, list) and len(ctx) == 2 else "–"
                verdict = {True: "passed", False: "**failed**"}.get(p.get("passed"), "–")
                rows.append([f"{text(name, 24)}", f(p.get("dream_px")), f(p.get("real_px")), ctx_s,
                             pct(p.get("agree_frac"), 0), verdict])
        frames = whole(get(objs, "control", "frames"))
        lines += ["", (f"**Control**: from held-out contexts the dream holds a key, then its opposite, for {frames} "
                  "frames; the sprite's shift against the real game's:"), "",
                  *table(["keys", "dream px", "real px", "contexts where the real game moved", "agree", "verdict"], rows)]
    lines += section_events(ev)
    lines += section_agent(ev)
    return lines


def section_events(ev: dict[str, Any]) -> list[str]:
    e = ev.get("events")
    if not isinstance(e, dict):
        return []
    tf = e.get("teacher_forced") if isinstance(e.get("teacher_forced"), dict) else {}
    rows = []
    for key, name in (("plus", "a point"), ("minus", "a point or life lost"), ("end", "the game's end")):
        m = tf.get(key) if isinstance(tf.get(key), dict) else {}
        rows.append([name, whole(m.get("events")), f(m.get("precision"), 3), f(m.get("recall"), 3), f(m.get("f1"), 3)])
    dream = e.get("dream") if isinstance(e.get("dream"), dict) else {}
    return ["", f"**Event head** on {whole(e.get('games'))} whole held-out games, on the real latents:", "",
            *table(["event", "events", "precision", "recall", "F1"], rows), "",
            (f"* in dreams of the same games: {f(dream.get('points_per_1k'))} points and {f(dream.get('minus_per_1k'))} "
            f"minus events per 1,000 frames (real game {f(dream.get('points_per_1k_real'))} and "
            f"{f(dream.get('minus_per_1k_real'))})")]


def section_agent(ev: dict[str, Any]) -> list[str]:
    a = ev.get("agent")
    pol = a.get("policies") if isinstance(a, dict) else None
    if not isinstance(pol, dict):
        return []
    rows = [[f"`{text(name, 24)}`", whole(p.get("frames")), f(p.get("points_per_1k")), f(p.get("minus_per_1k")),
             f(p.get("net_per_1k")), f(p.get("net_per_1k_std"))] for name, p in pol.items() if isinstance(p, dict)]
    return ["", (f"**Agent** (trained only inside the dream) playing **the real game**, {whole(a.get('games'))} held-out "
            f"games of up to {whole(a.get('max_frames'))} frames, beside other policies on the same seeds:"), "",
            *table(["policy", "frames", "points / 1k", "minus / 1k", "net / 1k", "net spread (std)"], rows)]


def derived_limits(data: dict[str, Any], game: str) -> list[str]:
    """What the figures say the model does not do (each with its figure), in the order a player meets it."""
    ev, parts, events_cfg = data["eval"], data["parts"], data["events_cfg"]
    out = []
    tf = ev.get("teacher_forced") if isinstance(ev.get("teacher_forced"), dict) else {}
    steps = whole(get(ev, "rollout", "steps"))
    copy_psnr, play_psnr = num(get(tf, "psnr", "copy_last")), num(get(tf, "psnr", steps))
    copy_fg, play_fg = num(get(tf, "fg_psnr", "copy_last")), num(get(tf, "fg_psnr", steps))
    if copy_psnr is not None and play_psnr is not None and play_psnr - copy_psnr < 1.0:
        out.append(f"Whole-frame PSNR hardly tells it from copying the last frame ({f(play_psnr)} against "
                   f"{f(copy_psnr)} dB at {steps} steps: the frame is mostly static background); foreground PSNR does"
                   f" ({f(play_fg)} against {f(copy_fg)} dB).")
    orbs = get(ev, "objects", "bouncer")
    if isinstance(orbs, dict):
        dm, rm = num(get(orbs, "orbs", "dream_mean")), num(get(orbs, "orbs", "real_mean"))
        if dm is not None and rm is not None and dm < rm - 0.1:
            out.append(f"It loses orbs: {f(dm)} shown on average against the real game's {f(rm)}, all of them in "
                       f"{pct(get(orbs, 'all_orbs_frac', 'dream'))} of dream frames against "
                       f"{pct(get(orbs, 'all_orbs_frac', 'real'))}; and invents one in "
                       f"{pct(get(orbs, 'invented_frac', 'dream'))}.")
        unc = num(get(orbs, "pip_changes_per_1000", "dream_uncaused"))
        if unc is not None and unc > 1:
            out.append(f"The score and lives pips change without a cause {f(unc, 1)} times per 1,000 dream frames "
                       "(the real game: never).")
    else:
        err = num(get(ev, "objects", "blobs", "count_error"))
        dm, rm = num(get(ev, "objects", "blobs", "dream_mean")), num(get(ev, "objects", "blobs", "real_mean"))
        if err is not None and err > 1.0:
            out.append(f"Its dreams miss or invent {f(err)} objects (foreground blobs) per frame on average "
                       f"({f(dm)} shown against the real game's {f(rm)}).")
    small = get(ev, "small_objects", "dream")
    if isinstance(small, dict) and num(small.get("shown_frac")) is not None and small["shown_frac"] < 0.95:
        out.append(f"Small objects (a ball, a clipped paddle end): the dream shows none in {pct(1 - small['shown_frac'])}"
                   " of the frames where the real game shows one.")
    pairs = get(ev, "objects", "control", "pairs")
    for name, p in (pairs.items() if isinstance(pairs, dict) else []):
        if not isinstance(p, dict):
            continue
        dpx, rpx = num(p.get("dream_px")), num(p.get("real_px"))
        if p.get("passed") is False:
            out.append(f"Control check failed for {text(name, 24)}: a held key moves the sprite {f(dpx)} px in the "
                       f"dream against {f(rpx)} px in the game.")
        elif dpx is not None and rpx is not None and dpx < 0.8 * rpx:
            out.append(f"A held key ({text(name, 24)}) moves the sprite less far than the game does: {f(dpx, 1)} against"
                       f" {f(rpx, 1)} px over {whole(get(ev, 'objects', 'control', 'frames'))} frames.")
    if "events" not in parts:
        out.append("No event head (`events/`): the dream keeps no score of its own and never ends a game itself; the HUD"
                   " says `score none (no event head)`.")
    else:
        if "end_threshold" in events_cfg and events_cfg["end_threshold"] is None:
            f1 = num(get(ev, "events", "teacher_forced", "end", "f1"))
            out.append("Its event head's game-over is switched off (`end_threshold: null`" +
                       (f"; held-out end F1 {f(f1)}" if f1 is not None else "") + "): a dream never ends itself.")
        dream = get(ev, "events", "dream")
        if isinstance(dream, dict):
            for kind, what in (("points_per_1k", "points"), ("minus_per_1k", "minus events")):
                d, r = num(dream.get(kind)), num(dream.get(f"{kind}_real"))
                if d is not None and r is not None and r > 0 and not 0.75 <= d / r <= 1.33:
                    out.append(f"In dreams the event head finds {f(d)} {what} per 1,000 frames, against the real "
                               f"game's {f(r)}.")
    if "agent" not in parts:
        out.append("No agent (`agent/`): `play agent=true` is refused.")
    else:
        pol = get(ev, "agent", "policies")
        if isinstance(pol, dict):
            agent_net, agent_std = num(get(pol, "agent", "net_per_1k")), num(get(pol, "agent", "net_per_1k_std"))
            best = max(((num(get(p, "net_per_1k")), n) for n, p in pol.items()
                        if n.startswith("random") and num(get(p, "net_per_1k")) is not None), default=None)
            if agent_net is not None and best is not None and agent_std is not None and agent_net < best[0] + agent_std:
                out.append(f"In the real game the agent's net score ({f(agent_net)} ± {f(agent_std)} per 1,000 frames, the "
                           f"spread over its games) is not clear of the `{best[1]}` policy's ({f(best[0])}).")
    if get(ev, "rollout", "collapsed") is True:
        out.append("Its long dreams collapse (the eval found the foreground gone).")
    frames = num(get(ev, "rollout", "frames"))
    if frames is not None:
        out.append(f"The eval's dreams are {whole(frames)} frames long: longer play is not in these figures.")
    seen = OBSERVED.get(game)
    if seen:
        out.append(f"Observed: {seen}")
    return out


def card(folder: Path) -> str:
    """The card's text for checkpoint ``folder``."""
    data = read_checkpoint(folder)
    meta, ev = data["meta"], data["eval"]
    game, title = game_names(meta)
    path = display_path(folder)
    lines = [
        f"# {title}: the world model in `{path}`",
        "",
        (f"<!-- generated by `python tools/model_card.py {path}` from worldgame.json and eval/eval.json;"
        " edit those (or the tool), not this file: tests/test_docs.py checks it is current -->"),
        "",
        (f"An action-conditioned latent diffusion model of {title if game == 'bouncer' else '`' + game.split(':')[-1] + '`'}:"
        " every frame of `worldgame play` with this checkpoint is predicted from the last frames and your keys"
        " ([README](../../README.md))."),
        "",
        *section_game(meta, game, path), "",
        *section_play(meta, ev, data["parts"]), "",
        *section_training(meta), "",
        *section_eval(meta, ev, game), "",
        "## Limits", "",
        "Derived from the figures above (the last line, where there is one, from the eval strip and the studies):", "",
        *(f"* {x}" for x in derived_limits(data, game)),
        "",
        ("More: [docs/results.md](../../docs/results.md) (every checkpoint's measurements and the studies behind the"
        " defaults), [docs/evaluation.md](../../docs/evaluation.md) (what each figure means)."),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint folders (e.g. checkpoints/bouncer)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 if a README.md differs from its card")
    mode.add_argument("--stdout", action="store_true", help="print the card(s), write nothing")
    args = parser.parse_args(argv)
    stale = 0
    for folder in args.checkpoints:
        try:
            text_ = card(folder)
        except WorldgameError as e:
            print(f"model_card: error: {e}", file=sys.stderr)
            return 2
        target = folder / CARD
        if args.stdout:
            sys.stdout.write(text_)
        elif args.check:
            try:
                current = target.read_text(encoding="utf-8") if target.is_file() else None
            except (OSError, UnicodeDecodeError):
                current = None
            if current != text_:
                stale += 1
                print(f"model_card: {target} differs from its generated card; run python tools/model_card.py {folder}",
                      file=sys.stderr)
        else:
            atomic_write(target, text_)
            print(f"wrote {target}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
