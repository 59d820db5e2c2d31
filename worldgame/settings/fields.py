"""The checks and words every command's settings share: the value checks a ``setting(check=...)``
names (device, host, path, checkpoint folder), the step counts' rule, and one StrEnum per concept."""

import enum
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from worldgame.schema import SettingError
from worldgame.vocabulary import STEP_COUNTS

SEED_MAX = 2**32 - 1
TEACHER_STEPS_MAX = 1000  # sampler=teacher: DDIM steps of the undistilled reference


def check_steps(name: str, steps: Any, sampler: str | None) -> None:
    """The play samplers run 1, 2, 4 or 8 steps; the teacher's DDIM any count up to TEACHER_STEPS_MAX.
    None: the checkpoint's play default, checked when the checkpoint is loaded."""
    if steps is None:
        return
    values = [int(s) for s in (steps if isinstance(steps, (list, tuple, ListConfig)) else [steps])]
    if sampler == "teacher":
        if not values or any(not 1 <= v <= TEACHER_STEPS_MAX for v in values):
            raise SettingError(name, steps, f"with sampler=teacher each must be 1..{TEACHER_STEPS_MAX} (e.g. 50)")
    elif not values or any(v not in STEP_COUNTS for v in values):
        raise SettingError(name, steps, "each must be 1, 2, 4 or 8 (play sampler steps; sampler=teacher runs any count)")


def _device(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", value)
    return None if ok else "choose auto, cpu, mps, cuda or cuda:N"


def _host(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9.:\-]{1,253}", value)
    return None if ok else "a host name or IP address (127.0.0.1 = this machine only, 0.0.0.0 = every interface)"


PATH_MAX, NAME_MAX = 4095, 255  # bytes of a whole path and of one of its names (Linux; macOS is 1023/255)


def _path(value: Any) -> str | None:
    """A path the OS can take at all: checked here so a long name is one line, not an OSError deep in a run."""
    if value is None:
        return None
    raw = str(value).encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        return "a path cannot hold a NUL character"
    if len(raw) > PATH_MAX:
        return f"a path of at most {PATH_MAX} bytes"
    if any(len(name) > NAME_MAX for name in raw.split(b"/")):
        return f"each folder or file name in the path must be at most {NAME_MAX} bytes"
    return None


def shipped_checkpoints(package: Path) -> Path:
    """The folder of the shipped checkpoints for the ``package`` folder (worldgame/): the checkout's
    checkpoints/ beside it, or, installed from a wheel, its own _checkpoints/ (pyproject.toml)."""
    for folder in (package.parent / "checkpoints", package / "_checkpoints"):
        if folder.is_dir():
            return folder
    return package.parent / "checkpoints"


SHIPPED_CHECKPOINTS = shipped_checkpoints(Path(__file__).resolve().parents[1])


def _checkpoint(value: Any) -> str | None:
    """A checkpoint folder that exists (said at once, before torch loads, with the likeliest folder
    meant); null is the shipped one."""
    bad = _path(value)
    if bad is not None or value is None or Path(str(value)).is_dir():
        return bad
    return f"no such folder{did_you_mean(Path(str(value)))}"


def did_you_mean(path: Path) -> str:
    """``; did you mean X?`` among the folders beside ``path`` and the shipped checkpoints, by name
    (or the shipped ones listed); at most 256 entries of each folder are looked at."""
    import difflib
    import itertools

    shipped = Path(os.path.relpath(SHIPPED_CHECKPOINTS)) if SHIPPED_CHECKPOINTS.is_relative_to(Path.cwd()) else SHIPPED_CHECKPOINTS
    candidates: dict[str, Path] = {}
    for folder, shown in ((SHIPPED_CHECKPOINTS, shipped), (path.parent, path.parent)):
        try:
            entries = list(itertools.islice(os.scandir(folder), 256)) if folder.is_dir() else []
        except OSError:
            entries = []
        candidates |= {e.name: shown / e.name for e in entries if e.is_dir(follow_symlinks=False)}
    near = difflib.get_close_matches(path.name, list(candidates), n=1, cutoff=0.75)
    if near:
        return f"; did you mean {candidates[near[0]]}?"
    try:
        games = sorted(e.name for e in os.scandir(SHIPPED_CHECKPOINTS) if e.is_dir())[:6]
    except OSError:
        games = []
    return f"; the shipped ones are {', '.join(str(shipped / g) for g in games)}" if games else ""


# --- one enum per concept (StrEnum: a member equals its name as text, and prints as it) --------------
class Engine(enum.StrEnum):
    model = "model"  # the world model dreams the game
    real = "real"  # the game itself
    side_by_side = "side_by_side"  # both, fed the same keys (World Model view)


class Backend(enum.StrEnum):
    auto = "auto"  # onnx on CPU when onnxruntime works, else torch
    torch = "torch"
    onnx = "onnx"  # ONNX Runtime, CPU; export cached in ~/.cache/worldgame/onnx


class Precision(enum.StrEnum):
    fp32 = "fp32"
    int8 = "int8"  # ONNX Runtime static quantization, calibrated on a short dream of the game (models/backends/)


class Policy(enum.StrEnum):
    scripted = "scripted"  # the built-in game only
    random = "random"  # sticky random actions
    tracker = "tracker"  # ALE Pong: moves the paddle to the ball it sees, with random bursts and misses


class Sampler(enum.StrEnum):  # models/schedulers.SAMPLERS says what each is
    lcm = "lcm"
    ddim = "ddim"
    dpmsolver = "dpmsolver"
    teacher = "teacher"


class Spacing(enum.StrEnum):  # diffusers' timestep_spacing (ddim, dpmsolver, teacher)
    leading = "leading"
    trailing = "trailing"
    linspace = "linspace"


class DenoiserVariant(enum.StrEnum):  # models/denoisers.py builds each
    concat = "concat"  # one UNet over the context latents and the noisy target concatenated (shipped)
    feature_cache = "feature_cache"  # a context encoder run once per frame + a light per-step UNet (denoiser_cached.py)


class PriorNet(enum.StrEnum):  # models/chance.py builds each
    flat = "flat"  # two stride-2 convolutions and a linear layer over the 4 x 4 grid (the first chance codes)
    local = "local"  # full-resolution convolutions, max-pooled over the frame: foresees Bouncer's events better (LocalPrior)


class PosteriorNet(enum.StrEnum):  # models/chance.py builds each
    flat = "flat"  # two stride-2 convolutions and a linear head: learns what its code says (the first chance codes)
    where = "where"  # a rule: its two learnt groups name the cell where the next frame departs most from the expected one


class Prediction(enum.StrEnum):
    sample = "sample"
    v_prediction = "v_prediction"
    epsilon = "epsilon"
