"""Checks on a recorded model session before ``session.regenerate`` trusts anything in it.

A session is a file from anywhere: episode.py bounds its reading and checks its frames, actions
and META framing; everything regeneration then takes from it is checked here, in the order it is
needed, each problem one line naming the session:

* :func:`check_session`, before anything loads: the metadata fields, typed and ranged like the
  settings they record (:class:`SessionFacts`, through schema.check), the per-frame columns the
  play loop's Driver is fed, the checkpoint path (absolute, then resolved: the folder it names is
  loaded by the one checkpoint loader, with all its checks) and the snapshot's base64.
* :func:`check_against_model`: the session is of the loaded checkpoint's game.
* :func:`read_snapshot`: the snapshot's npz decompressed under a budget: each array's ``.npy``
  header is checked against the shape and dtype the checkpoint implies before its data is read,
  so a member that would inflate to gigabytes is never inflated; then its values (actions, steps,
  fusion history, the sampler generator's state) are checked.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldgame.data.chunks import ChunkError, read_exact, read_npy_header
from worldgame.data.episode import EVENT_RESET, EVENT_RESYNC, EVENT_START, EVENT_STEP, Episode
from worldgame.engine.engines import FusionMode
from worldgame.engine.keys import COLUMNS, Column
from worldgame.engine.lockstep import LOG_CAPACITY
from worldgame.errors import WorldgameError, shorten
from worldgame.schema import SettingError, check, setting
from worldgame.settings import (
    Backend,
    PlaySettings,
    Runtime,
    Sampler,
    Spacing,
    _spacing_relation,
    check_steps,
)

MAX_PATH_CHARS = 4096
MAX_RESETS = 1 << 31  # resets before a recording started; the game's seed is seed + resets
REF_SEED_MAX = 2**63 - 1  # the real game's seed in the snapshot (game-over restarts count it up)
DREAM_SCORE_MAX = 1 << 31  # the dream's own score in the snapshot (model_engine.DreamScore)
DREAM_LIVES_MAX = 1 << 16
MAX_SNAPSHOT_BYTES = 256 << 20  # all arrays of one snapshot: far above a real one, far below the memory it would take
MAX_SNAPSHOT_TEXT = 256  # longest string value (fusion_mode) a snapshot holds, in characters
EVENTS = (EVENT_STEP, EVENT_RESET, EVENT_RESYNC, EVENT_START)
VARIABLE = -1  # a dimension of any length up to Spec.longest


def _like(schema: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field with the limits (and default) of the setting ``schema.name`` that the session
    recorded: the ranges stay in settings/, the one place they are written."""
    (f,) = (f for f in dataclasses.fields(schema) if f.name == name)
    return setting(f.default if default is dataclasses.MISSING else default, **f.metadata)


def _checkpoint_problem(value: Any) -> str | None:
    ok = isinstance(value, str) and 0 < len(value) <= MAX_PATH_CHARS and "\x00" not in value and Path(value).is_absolute()
    # play records the resolved path; a relative one would resolve against wherever replay runs
    return None if ok else "must be the absolute path of a checkpoint folder (play records one)"


@dataclass
class SessionFacts:
    """What regeneration takes from a session's metadata, typed (absent keys: what sessions recorded
    before them ran with; REQUIRED ones every session has)."""

    checkpoint: str = setting("", check=_checkpoint_problem)
    seed: int = _like(PlaySettings, "seed", 0)
    fusion_window: int = _like(Runtime, "fusion_window")
    fusion_base: float = _like(Runtime, "fusion_base")
    reset_index: int = setting(0, ge=0, le=MAX_RESETS)
    threads: int = _like(Runtime, "threads", 0)
    optimized: bool = True
    backend: Backend = Backend.torch  # sessions before backends were torch
    precision: str = setting("fp32", choices=["fp32", "int8", "float16"])  # sessions before precisions were fp32
    device: str = _like(Runtime, "device", "cpu")
    dtype: str = setting("float32", choices=["float32", "float16"])
    sampler: Sampler = Sampler.lcm  # sessions before samplers were chosen were LCM
    spacing: Spacing | None = None
    context_length: int | None = setting(None, ge=1, le=64)


REQUIRED = ("checkpoint", "seed", "fusion_window", "fusion_base")


def refused(path: Path, problem: str, todo: str = "record the session again") -> WorldgameError:
    """The one shape of a session problem: the file, what is wrong, that it cannot be regenerated, what to do."""
    return WorldgameError(f"{path}: {problem}; it cannot be regenerated ({todo})")


def check_session(path: Path, episode: Episode) -> tuple[SessionFacts, bytes]:
    """The session's facts (``checkpoint``: resolved) and its snapshot's npz bytes, all checked
    before anything is loaded."""
    meta = episode.metadata
    if meta.get("engine") != "model" or "snapshot" not in meta:
        raise WorldgameError(f"{path}: not a model session (engine={shorten(meta.get('engine', 'none'), 40)}); "
                             "only model sessions can be regenerated")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise WorldgameError(f"{path}: the session's metadata lacks {', '.join(missing)}; it cannot be regenerated "
                             "(was it written by `worldgame play record=true`?)")
    facts = _typed(path, meta)
    _check_columns(path, episode, facts.sampler)
    return dataclasses.replace(facts, checkpoint=_resolved(path, facts.checkpoint)), _snapshot_bytes(path, meta["snapshot"])


def _typed(path: Path, meta: dict[str, Any]) -> SessionFacts:
    given = {f.name: meta[f.name] for f in dataclasses.fields(SessionFacts) if f.name in meta}
    for key, value in given.items():
        # OmegaConf would resolve "${oc.env:X}" (a path from the environment) after the checks: data, not config
        if isinstance(value, str) and "${" in value:
            raise refused(path, f"the session's {key}={shorten(value, 60)} is an interpolation, not a value")
    try:
        facts = check(SessionFacts, given)
        _spacing_relation(facts)
    except SettingError as e:  # its message quotes the whole value, which a file may make huge
        raise refused(path, f"the session's {e.key}={shorten(e.value, 60)}: {e.allowed}") from None
    from omegaconf import OmegaConf

    return OmegaConf.to_object(facts)


def _resolved(path: Path, checkpoint: str) -> str:
    """The folder the session names, symlinks followed: the one the loader checks and the user is told."""
    try:
        return str(Path(checkpoint).resolve())
    except (OSError, RuntimeError) as e:  # a symlink loop (RuntimeError before Python 3.13)
        raise refused(path, f"its checkpoint {shorten(checkpoint, 80)} cannot be resolved ({e})") from None


def _check_columns(path: Path, episode: Episode, sampler: str) -> None:
    """The per-frame settings the Driver is fed for rows 1.. (row 0 is the snapshot's): each column of
    the table of live controls (keys.COLUMNS) within its range, then the events."""
    cols = episode.timings_ms
    for column in COLUMNS:
        if column.name in cols:
            _check_column(path, column, cols[column.name][1:], sampler)
        elif column.required:
            raise refused(path, f"its frames lack the {column.name} column")
    if "event" in cols:
        _whole_numbers(path, "event", cols["event"][1:], EVENTS)


def _check_column(path: Path, column: Column, values: np.ndarray, sampler: str) -> None:
    """One setting column: NaN rows only where the column allows them (``nan``), whole numbers
    where it is ``whole``, every value within ``low..high`` and, for the steps, the sampler's own."""
    shown = values if column.nan == "refuse" else values[~np.isnan(values)]
    if column.whole:
        shown = _whole_numbers(path, column.name, shown)
    if shown.size and not (np.isfinite(shown).all() and column.low <= shown.min() and shown.max() <= column.high):
        raise refused(path, f"its frames' {column.name} column holds values outside {column.low:g}..{column.high:g}")
    if column.sampler_steps:
        try:
            check_steps(column.name, sorted(set(shown.tolist())) or [1], sampler)
        except SettingError as e:
            raise refused(path, f"its frames' {e}") from None


def _whole_numbers(path: Path, name: str, column: np.ndarray, allowed: Any = None) -> np.ndarray:
    """A float column that must hold whole numbers (among ``allowed``), as int64."""
    def whole(v: float) -> bool:  # finite, whole and within int64 (1e30 would not cast)
        return bool(np.isfinite(v) and abs(v) < 2.0**62 and v == round(v))

    ok = bool(np.isfinite(column).all() and (np.abs(column) < 2.0**62).all() and (column == np.round(column)).all())
    ints = column.astype(np.int64) if ok else column
    if not ok or (allowed is not None and not np.isin(ints, list(allowed)).all()):
        bad = next(v for v in column if not (whole(v) and (allowed is None or int(v) in allowed)))
        wanted = f"one of {', '.join(map(str, allowed))}" if allowed is not None else "a whole number"
        raise refused(path, f"its frames' {name} column holds {bad:g}, not {wanted}")
    return ints


def _snapshot_bytes(path: Path, text: Any) -> bytes:
    if not isinstance(text, str):
        raise refused(path, f"its snapshot is a JSON {type(text).__name__}, not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise refused(path, f"its snapshot is not base64 ({shorten(e, 60)})") from None


def check_against_model(path: Path, episode: Episode, model: Any) -> None:
    """The session must be of the checkpoint's game: its frames, actions and context length."""
    meta, fs = episode.metadata, model.frame_size
    names = meta.get("action_names") or []
    recorded = (meta.get("game"), episode.frames.shape[1], len(names), meta.get("context_length", model.context_length))
    if recorded != (model.metadata["game"], fs, len(model.action_names), model.context_length) \
            or episode.frames.shape[1:] != (fs, fs, 3) or list(names) != list(model.action_names):
        game, size, actions, k = recorded
        raise refused(path, f"it was recorded on {shorten(game, 40)} at {size}px with {actions} actions and K={shorten(k, 20)}, "
                      f"but checkpoint {model.path} is {model.metadata['game']} at {fs}px with {len(model.action_names)} "
                      f"actions and K={model.context_length}")


# --- the snapshot ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What one snapshot array may be: dtype kinds and the shapes allowed."""

    kinds: str
    shapes: tuple[tuple[int, ...], ...]
    longest: int = 0  # for a VARIABLE dimension
    required: bool = True


def snapshot_specs(model: Any, facts: SessionFacts, generator_bytes: int) -> dict[str, Spec]:
    """The arrays a snapshot of ``model`` holds (Dream.snapshot and LockstepGame.state), their shapes
    exactly as the checkpoint and the session's fusion window imply."""
    k, cfg, fs, ring = model.context_length, model.denoiser.config, model.frame_size, facts.fusion_window + 1
    c, s = cfg.latent_channels, cfg.latent_size
    scalar = ((),)
    return {
        "context": Spec("f", ((k, c, s, s),)),
        "actions": Spec("iu", ((k,),)),
        "generator": Spec("u", ((generator_bytes,),)),
        # empty until fusion first ran; latent or pixel history; pixel rings of sessions before show() lack the batch axis
        "fusion_ring": Spec("f", ((0,), (ring, 1, c, s, s), (ring, 1, fs, fs, 3), (ring, fs, fs, 3))),
        "fusion_head": Spec("iu", scalar),
        "fusion_count": Spec("iu", scalar),
        "fusion_mode": Spec("Uiu", scalar),
        "steps": Spec("iu", scalar),
        "ref_seed": Spec("iu", scalar),
        "ref_actions": Spec("iu", ((VARIABLE,),), longest=LOG_CAPACITY, required=False),
        # the dream's own score and lives (model_engine.DreamScore; sessions before it lack them)
        "dream_score": Spec("iu", scalar, required=False),
        "dream_lives": Spec("iu", scalar, required=False),
    }


def read_snapshot(path: Path, raw: bytes, model: Any, facts: SessionFacts) -> dict[str, Any]:
    """The snapshot's arrays (0-d ones as Python scalars), checked for ``model`` before Dream.restore."""
    import torch

    generator = torch.Generator(device=model.device)
    specs = snapshot_specs(model, facts, generator.get_state().numel())
    try:
        state = _read_npz(raw, specs)
    except ChunkError as e:
        raise refused(path, f"its snapshot {e}", _todo(facts, model)) from None
    _check_values(path, state, model, facts, generator)
    return state


def _read_npz(raw: bytes, specs: dict[str, Spec]) -> dict[str, Any]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ChunkError(f"is not an npz archive ({shorten(e, 60)})") from None
    state: dict[str, Any] = {}
    used = 0
    with zf:
        for info in zf.infolist()[: len(specs) + 1]:  # one more than allowed is enough to refuse
            name = info.filename.removesuffix(".npy")
            if name in state or name not in specs:
                raise ChunkError(f"holds an unexpected array {shorten(info.filename, 40)!r}")
            try:
                with zf.open(info) as f:
                    shape, fortran, dtype = read_npy_header(f)
                    _check_array(name, shape, dtype, specs[name])
                    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    used += nbytes
                    if used > MAX_SNAPSHOT_BYTES:
                        raise ChunkError(f"declares more than {MAX_SNAPSHOT_BYTES} bytes of arrays")
                    array = read_exact(f, shape, fortran, dtype, nbytes)
            except ChunkError:
                raise
            except (zipfile.BadZipFile, zlib.error, struct.error, ValueError, OSError, EOFError, RuntimeError,
                    NotImplementedError) as e:  # a damaged, encrypted or oddly compressed member, a bad .npy header
                raise ChunkError(f"array {name!r} is unreadable ({type(e).__name__}: {shorten(' '.join(str(e).split()), 80)})") from None
            state[name] = array.item() if array.ndim == 0 else array
    missing = [k for k, spec in specs.items() if spec.required and k not in state]
    if missing:
        raise ChunkError(f"lacks {', '.join(missing)}")
    return state


def _check_array(name: str, shape: tuple[int, ...], dtype: np.dtype, spec: Spec) -> None:
    longest = 4 * MAX_SNAPSHOT_TEXT if dtype.kind == "U" else 8
    if dtype.hasobject or dtype.names or dtype.kind not in spec.kinds or dtype.itemsize > longest:
        raise ChunkError(f"array {name!r} has dtype {dtype}, not the plain {spec.kinds} kind a snapshot holds")
    if not any(_fits(shape, want, spec.longest) for want in spec.shapes):
        wanted = " or ".join(str(w).replace(str(VARIABLE), f"<={spec.longest}") for w in spec.shapes)
        raise ChunkError(f"array {name!r} has shape {shorten(shape, 60)}, not {wanted} as this checkpoint needs")


def _fits(shape: tuple[int, ...], want: tuple[int, ...], longest: int) -> bool:
    return len(shape) == len(want) and all(
        isinstance(n, int) and (n == w or (w == VARIABLE and 0 <= n <= longest)) for n, w in zip(shape, want, strict=True))


def _check_values(path: Path, state: dict[str, Any], model: Any, facts: SessionFacts, generator: Any) -> None:
    n = len(model.action_names)
    for name in ("actions", "ref_actions"):
        a = state.get(name)
        if a is not None and a.size and (a.min() < 0 or a.max() >= n):
            bad = int(a.min()) if a.min() < 0 else int(a.max())
            raise refused(path, f"its snapshot's {name} hold action {bad}, outside the checkpoint's actions 0..{n - 1}")
    for name in ("context", "fusion_ring"):
        if not np.isfinite(state[name]).all():
            raise refused(path, f"its snapshot's {name} holds NaN or inf")
    _check_scalar(path, "fusion_mode", state["fusion_mode"], [m.value for m in FusionMode] + list(range(len(FusionMode))))
    _check_scalar(path, "fusion_head", state["fusion_head"], range(-1, facts.fusion_window + 1))
    _check_scalar(path, "fusion_count", state["fusion_count"], range(facts.fusion_window + 2))
    if state["fusion_count"] and not state["fusion_ring"].size:
        raise refused(path, "its snapshot counts fused frames but holds no fusion history")
    if not -DREAM_SCORE_MAX <= state.get("dream_score", 0) <= DREAM_SCORE_MAX:
        raise refused(path, f"its snapshot's dream_score {shorten(state['dream_score'], 40)} is outside ±{DREAM_SCORE_MAX}")
    if not -1 <= state.get("dream_lives", -1) <= DREAM_LIVES_MAX:
        raise refused(path, f"its snapshot's dream_lives {shorten(state['dream_lives'], 40)} is outside -1..{DREAM_LIVES_MAX}")
    if not 0 <= state["ref_seed"] <= REF_SEED_MAX:
        raise refused(path, f"its snapshot's ref_seed {shorten(state['ref_seed'], 40)} is outside 0..2**63-1")
    try:
        check_steps("steps", [state["steps"]], facts.sampler)
    except SettingError as e:
        raise refused(path, f"its snapshot's {e}") from None
    _check_generator(path, state["generator"], generator, _todo(facts, model))


def _check_scalar(path: Path, name: str, value: Any, allowed: Any) -> None:
    if isinstance(value, bool) or value not in allowed:
        raise refused(path, f"its snapshot's {name} is {shorten(value, 40)!r}, not one a session holds")


def _check_generator(path: Path, state: np.ndarray, generator: Any, todo: str) -> None:
    """Torch itself judges the state (its mt19937 validity), on a scratch generator of the device
    regeneration runs on."""
    import torch

    try:
        generator.set_state(torch.from_numpy(np.ascontiguousarray(state, dtype=np.uint8)))
    except (RuntimeError, ValueError) as e:
        raise refused(path, f"its snapshot's sampler generator state is not one a {generator.device.type} "
                      f"generator takes ({shorten(' '.join(str(e).split()), 80)})", todo) from None


def _todo(facts: SessionFacts, model: Any) -> str:
    """What to do about a snapshot that does not fit: a session recorded on another kind of device
    (whose generator state differs in size: CPU 5056 bytes, CUDA 16) regenerates on that kind."""
    kind = facts.device.split(":")[0]
    return f"it was recorded on {facts.device}: regenerate it with device={kind}" if kind != model.device.type \
        else "record the session again"

