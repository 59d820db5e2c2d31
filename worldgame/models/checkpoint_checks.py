"""Checks on a checkpoint folder before anything in it is trusted, and its atomic part writes.

A checkpoint may come from anyone, so: ``worldgame.json`` must hold the facts loading needs, of
the right types, and a game the registry knows (never a class path to import); each part's
``config.json`` must describe a model no bigger than its safetensors weights (a config claiming a
huge width would otherwise allocate gigabytes before loading fails). The model is built on
PyTorch's ``meta`` device to count its parameters, which allocates nothing.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from worldgame.errors import WorldgameError
from worldgame.fileio import check_regular, read_json_object
from worldgame.vocabulary import PLAY_STEPS, STEP_COUNTS

MAX_JSON_BYTES = 16 << 20
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_INT = 1 << 16
MAX_CONFIG_LIST = 16
MAX_FRAME_SIZE = 1024
MAX_ASPECT = 8  # a game's own frame, height:width either way (Atari's 210x160 is 1.3)
# an end logit threshold below this would end (nearly) every frame: P(end) > 1 / (1 + e^20)
MIN_END_THRESHOLD = -20.0
PREDICTIONS = ("sample", "v_prediction", "epsilon")


def read_metadata(meta_file: Path) -> dict[str, Any]:
    """``worldgame.json`` parsed and checked; one line naming the file and the problem otherwise."""
    from worldgame.games.registry import resolve

    where = f"checkpoint {meta_file}"
    meta = read_json_object(meta_file, MAX_JSON_BYTES, where, "restore or retrain the checkpoint")

    def bad(key: str, what: str) -> WorldgameError:
        return WorldgameError(f"{where} is incomplete or damaged: {key} {what}; restore or retrain the checkpoint")

    for key in ("game", "frame_size", "action_names", "game_config"):
        if key not in meta:
            raise bad(key, "is missing")
    if not isinstance(meta["game"], str) or not meta["game"]:
        raise bad("game", "is not a name")
    if type(meta["frame_size"]) is not int or not 8 <= meta["frame_size"] <= MAX_FRAME_SIZE:
        raise bad("frame_size", f"is {meta['frame_size']!r}, not a whole number 8..{MAX_FRAME_SIZE}")
    names = meta["action_names"]
    if not isinstance(names, list) or not 0 < len(names) <= 1024 or not all(isinstance(n, str) for n in names):
        raise bad("action_names", "is not a list of action names")
    noise = meta.get("context_noise", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and 0 <= noise <= 10):
        raise bad("context_noise", f"is {noise!r}, not a number 0..10")
    if meta.get("prediction_type", "sample") not in PREDICTIONS:
        raise bad("prediction_type", f"is not one of {', '.join(PREDICTIONS)}")
    play = meta.get("play")  # the checkpoint's play default sampler (docs/fidelity.md)
    if play is not None and not play_default_ok(play):
        raise bad("play", f"is {str(play)[:80]}, not {PLAY_SHAPE}")
    bindings = meta.get("key_bindings", {})
    if not isinstance(bindings, dict) or not all(
        isinstance(v, list) and len(v) <= 16 and all(_combo_ok(k) for k in v) for v in bindings.values()
    ):
        raise bad("key_bindings", "is not a mapping of action names to lists of key names like \"up\" or \"up+space\"")
    stray = [a for a in bindings if a not in names]
    if stray:
        raise bad("key_bindings", f"names the action {stray[0][:40]!r}, which is not one of action_names")
    native = meta.get("native_size")
    if native is not None and not (isinstance(native, list) and len(native) == 2
                                   and all(type(v) is int and 1 <= v <= 4096 for v in native)
                                   and max(native) <= MAX_ASPECT * min(native)):
        raise bad("native_size", f"is not [height, width] in pixels (1..4096, at most {MAX_ASPECT}:1)")
    tick = meta.get("tick_hz")
    if tick is not None and not (type(tick) in (int, float) and 1 <= tick <= 1000):
        raise bad("tick_hz", "is not the game's steps per second (1..1000)")
    try:
        _game, settings = resolve(meta["game_config"], prefix="game_config.")
    except WorldgameError as e:
        raise WorldgameError(f"{where}: {e}") from None
    if settings.frame_size != meta["frame_size"]:
        raise bad("frame_size", f"({meta['frame_size']}) differs from game_config.frame_size ({settings.frame_size})")
    return meta


def check_against_weights(meta_file: Path, meta: dict[str, Any], denoiser: Any, *others: tuple[str, Any],
                          vae: Any = None) -> None:
    """The denoiser (and each optional ``(name, part)`` beside it: the event head, the agent) must
    know exactly the game's actions (an action outside its table would crash play) and read the
    denoiser's latents; the autoencoder must fold the game's frames into the denoiser's grid."""
    if vae is not None and int(vae.config.downscale) * int(denoiser.config.latent_size) != meta["frame_size"]:
        raise WorldgameError(f"checkpoint {meta_file}: its vae/ folds {meta['frame_size']}px frames by "
                             f"{vae.config.downscale}, not into its denoiser's {denoiser.config.latent_size}x"
                             f"{denoiser.config.latent_size} latent; the folder mixes parts of different checkpoints")
    n = int(getattr(denoiser.config, "num_actions", len(meta["action_names"])))
    if n != len(meta["action_names"]):
        raise WorldgameError(
            f"checkpoint {meta_file} names {len(meta['action_names'])} actions but its denoiser has {n}; "
            "the folder mixes parts of different checkpoints"
        )
    shape = (denoiser.config.latent_channels, denoiser.config.latent_size)
    k = int(denoiser.config.context_length)
    for name, part in others:
        if part is None:
            continue
        if (int(part.config.num_actions), (part.config.latent_channels, part.config.latent_size)) != (n, shape):
            raise WorldgameError(f"checkpoint {meta_file}: its {name}/ part was made for another model (actions or "
                                 f"latent shape differ); the folder mixes parts of different checkpoints: retrain {name}")
        seen = part.config.get("frames_seen")
        if seen is not None and (type(seen) is not int or not 1 <= seen <= k):  # it reads the last frames_seen latents of the K kept
            raise WorldgameError(f"checkpoint {meta_file}: its {name}/ part sees {seen} frames but the denoiser keeps "
                                 f"{k}; the folder mixes parts of different checkpoints: retrain {name}")
        threshold = part.config.get("end_threshold") if name == "events" else None
        number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
        if threshold is not None and not (number and MIN_END_THRESHOLD <= threshold <= -MIN_END_THRESHOLD):
            raise WorldgameError(f"checkpoint {meta_file}: its events/ end_threshold {threshold!r:.20} is not a number in "
                                 f"{MIN_END_THRESHOLD:g}..{-MIN_END_THRESHOLD:g} (outside, it would end every game, or none); "
                                 "retrain events")


def check_chance(meta_file: Path, denoiser: Any, chance: Any) -> None:
    """A denoiser conditioned on a chance code needs the prior that draws it, of the same G x V and
    context; a chance/ part beside a denoiser without a code would be silently unused."""
    groups = int(denoiser.config.get("chance_groups", 0))
    if chance is None and groups:
        raise WorldgameError(f"checkpoint {meta_file.parent}: its denoiser draws a chance code but there is no chance/ "
                             "part; restore it (e.g. `git checkout`) or retrain the teacher stage")
    if chance is None:
        return
    if not groups:
        raise WorldgameError(f"checkpoint {meta_file.parent}: its chance/ part belongs to another model (the denoiser "
                             "takes no chance code); remove chance/ or retrain the teacher stage")
    ours = (groups, int(denoiser.config.chance_values), int(denoiser.config.context_length))
    theirs = (int(chance.config.groups), int(chance.config.values), int(chance.config.context_length))
    if ours != theirs:
        raise WorldgameError(f"checkpoint {meta_file.parent}: its chance/ part draws {theirs[0]}x{theirs[1]} codes from "
                             f"{theirs[2]} frames, its denoiser takes {ours[0]}x{ours[1]} from {ours[2]}; the folder "
                             "mixes parts of different checkpoints: retrain the teacher stage")


def check_part(cls: Any, folder: Path, hint: str) -> None:
    """Refuse a part whose config.json is not plain, sane JSON or describes more weights than
    its safetensors file holds (checked on the meta device: nothing is allocated)."""
    config = read_json_object(folder / "config.json", MAX_CONFIG_BYTES, f"checkpoint part {folder}: config.json", hint)
    name = config.get("_class_name", cls.__name__)
    if name != cls.__name__:  # a file never chooses the class: it must name the one this part is
        raise WorldgameError(f"checkpoint part {folder}: config.json names the class {str(name)[:60]!r}, not "
                             f"{cls.__name__}; {hint}")
    for key, value in config.items():
        if not _sane(value):
            raise WorldgameError(f"checkpoint part {folder}: config.json {key}={value!r:.60} is out of range; {hint}")
    weights = sorted(folder.glob("*.safetensors"))
    if len(weights) != 1:
        raise WorldgameError(f"checkpoint part {folder} has {len(weights)} .safetensors weight files, not 1; {hint}")
    check_regular(weights[0], f"checkpoint part {weights[0]}", hint)  # a FIFO would block safe_open for good
    try:
        from safetensors import safe_open

        with safe_open(str(weights[0]), "pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 -- safe_open has no __iter__
        with torch.device("meta"), warnings.catch_warnings():  # a 0-wide layer warns; the shapes below say why
            warnings.simplefilter("ignore")
            module = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
        wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    except WorldgameError:
        raise
    except Exception as e:
        raise WorldgameError(f"checkpoint part {folder} is damaged or incomplete ({type(e).__name__}); {hint}") from e
    # every tensor the config builds, of its shape, and nothing else (an unused tensor would be read
    # for nothing; a missing one would leave the module's memory uninitialised)
    missing, extra = sorted(wanted.keys() - stored.keys()), sorted(stored.keys() - wanted.keys())
    if missing or extra:
        which = f"lacks {missing[0][:60]!r}" if missing else f"holds {extra[0][:60]!r}"
        raise WorldgameError(f"checkpoint part {folder}: its weights do not match config.json ({len(missing)} missing, "
                             f"{len(extra)} unknown; it {which}); {hint}")
    for key, want in wanted.items():
        if stored[key] != want:
            raise WorldgameError(f"checkpoint part {folder}: weight {key[:60]!r} is {list(stored[key])[:8]}, config.json "
                                 f"builds {list(want)}; {hint}")


def _combo_ok(combo: Any) -> bool:
    """A key binding: one key name or a combination ``"up+space"``; each name short and non-empty
    (whether the window knows it is the frontend's to say)."""
    return isinstance(combo, str) and len(combo) <= 64 and all(k.strip() for k in combo.split("+"))


def _sane(value: Any, depth: int = 0) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return not isinstance(value, str) or len(value) <= 256
    if isinstance(value, int):  # a JSON integer may have 400 digits: compared as an int, never as a float
        return abs(value) <= MAX_CONFIG_INT
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= MAX_CONFIG_INT
    if isinstance(value, list):
        return depth < 2 and len(value) <= MAX_CONFIG_LIST and all(_sane(v, depth + 1) for v in value)
    return False


PLAY_SHAPE = ('{"sampler": lcm|ddim|dpmsolver, "spacing": leading|trailing|linspace|null, "steps": 1|2|4|8 (optional)}'
              ' (what a checkpoint\'s worldgame.json "play" may say)')


def play_default_ok(play: Any) -> bool:
    """Whether ``play`` (worldgame.json's ``"play"``) is :data:`PLAY_SHAPE`: the one check of it."""
    from worldgame.settings import Sampler, Spacing

    if not isinstance(play, dict) or set(play) - {"sampler", "spacing", "steps", "chosen_by"}:
        return False
    sampler, spacing, steps = play.get("sampler"), play.get("spacing"), play.get("steps", PLAY_STEPS)
    if not isinstance(sampler, str) or not (spacing is None or isinstance(spacing, str)) \
            or type(steps) is not int or steps not in STEP_COUNTS:
        return False
    return (sampler in {s.value for s in Sampler} - {"teacher"}
            and (spacing is None or spacing in {s.value for s in Spacing}) and not (sampler == "lcm" and spacing))
