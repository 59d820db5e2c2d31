"""The message protocol: ``worldgame/web/app.js`` is the client, and this file is its contract.

* server → client, text: JSON ``{"type": "hello", ...}`` once (game, actions, key bindings, the
  allowed key names, frame size, native size, settings, ``max_work``, and ``commands``: the live
  controls' keys, wire names, buttons and messages from the one table, :func:`page_controls`),
  ``{"type": "stats", ...}`` a few times a second (per-stage ms in the source pipeline's terms,
  server FPS, settings, recording, who plays -- ``player`` "agent"/"you", null without an agent --,
  ``game_over``: the GAME OVER box's lines while the last frame is held, ``controls``: each page
  control's current level (``pause`` true while paused), and the HUD's ``notice``),
  ``{"type": "busy"|"error"|"refused"|"recording", "message": ...}`` (``refused``: a request over
  ``max_work``, the dream goes on; ``recording`` names the file relative to the sessions folder).
* server → client, binary: one frame: ``b"WGF1"``, uint32 frame number, uint16 panels, uint16 height,
  uint16 width (big-endian), then ``panels`` RGB images of height×width×3 bytes, left to right.
* client → server, text only, JSON objects of at most :data:`MAX_MESSAGE` bytes, checked by
  :func:`parse_message`, at most ``max_messages`` a second; anything else closes that connection
  (code 1008 and the reason), and nothing more is read from it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worldgame.engine.engines import FusionMode
from worldgame.engine.keys import CONTROLS, Control, available
from worldgame.engine.views import View, parse_native_size
from worldgame.settings import STEP_COUNTS

if TYPE_CHECKING:
    from worldgame.engine.engines import EngineStatus
    from worldgame.engine.tick_core import TickCore

MAX_MESSAGE = 1024  # bytes of one client message
MAX_HELD = 8  # keys held at once in a "keys" message
# the controls the page sends as {"type": "command", "value": name} (the others have messages of their own)
PAGE_COMMAND_NAMES: dict[str, Control] = {c.name: c for c in CONTROLS if c.page == "command"}
FRAME_MAGIC = b"WGF1"
HEADER = struct.Struct(">4sIHHH")
STATS_EVERY_S = 0.25
# the source's pipeline terms for the engine's stage names
STAGE_TERMS = {"input": "input buffer", "agent": "agent", "encode": "VAE encode", "chance": "chance code",
               "denoise": "denoise (all steps)", "fusion": "temporal fusion", "decode": "VAE decode", "events": "event head", "output": "output"}
CLOSE_INVALID, CLOSE_BUSY, CLOSE_IDLE, CLOSE_ERROR, CLOSE_GOING_AWAY = 1008, 1013, 1000, 1011, 1001


class BadMessage(ValueError):
    """A client message outside the schema (the text is the close reason)."""


@dataclass
class Message:
    type: str
    held: list[str] = field(default_factory=list)
    value: Any = None


def parse_message(data: Any, allowed_keys: frozenset[str]) -> Message:
    """Check one client text message against the schema; raise BadMessage with a short reason.

    ``{"type": "keys", "held": [name, ...]}`` (key names from the checkpoint's bindings, oldest
    press first, at most 8, no repeats); ``{"type": "steps", "value": 1|2|4|8}``; ``{"type":
    "fusion", "value": "off"|"latent"|"pixel"}``; ``{"type": "view", "value": "stream"|"lcm_steps"|
    "temporal"|"world_model"}``; ``{"type": "record", "value": true|false}``; ``{"type": "reset"}``;
    ``{"type": "resync"}``; ``{"type": "command", "value": name}`` (a live control the page sends by
    name: :data:`PAGE_COMMAND_NAMES`, from the table in engine/keys.py). No other fields.
    """
    if not isinstance(data, str):
        raise BadMessage("binary messages are not accepted")
    if len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE:
        raise BadMessage(f"message over {MAX_MESSAGE} bytes")
    try:
        obj = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise BadMessage("not JSON") from e
    if not isinstance(obj, dict):
        raise BadMessage("not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadMessage("missing or non-string 'type'")
    fields = {"keys": {"type", "held"}, "steps": {"type", "value"}, "fusion": {"type", "value"},
              "view": {"type", "value"}, "record": {"type", "value"}, "reset": {"type"}, "resync": {"type"},
              "command": {"type", "value"}}
    if kind not in fields:
        raise BadMessage(f"unknown type {kind[:20]!r}")
    if set(obj) != fields[kind]:
        raise BadMessage(f"{kind}: fields must be exactly {', '.join(sorted(fields[kind]))}")
    value = obj.get("value")
    if kind == "keys":
        held = obj["held"]
        if not isinstance(held, list) or len(held) > MAX_HELD or not all(isinstance(k, str) for k in held):
            raise BadMessage(f"keys: 'held' must be a list of at most {MAX_HELD} key names")
        if len(set(held)) != len(held):
            raise BadMessage("keys: a key is listed twice")
        unknown = [k for k in held if k not in allowed_keys]
        if unknown:
            raise BadMessage(f"keys: unknown key {unknown[0][:20]!r}")
        return Message(kind, held=list(held))
    if kind == "steps" and (isinstance(value, bool) or value not in STEP_COUNTS or not isinstance(value, int)):
        raise BadMessage(f"steps: value must be one of {', '.join(map(str, STEP_COUNTS))}")
    if kind == "fusion" and value not in [m.value for m in FusionMode]:
        raise BadMessage("fusion: value must be off, latent or pixel")
    if kind == "view" and value not in [v.value for v in View]:
        raise BadMessage("view: value must be stream, lcm_steps, temporal or world_model")
    if kind == "record" and not isinstance(value, bool):
        raise BadMessage("record: value must be true or false")
    if kind == "command" and (not isinstance(value, str) or value not in PAGE_COMMAND_NAMES):
        raise BadMessage(f"command: value must be one of {', '.join(PAGE_COMMAND_NAMES) or '(none)'}")
    return Message(kind, value=value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def frame_message(number: int, frames: list[np.ndarray]) -> bytes:
    """One binary frame message: header, then the panels' RGB bytes."""
    h, w = frames[0].shape[:2]
    body = b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames)
    return HEADER.pack(FRAME_MAGIC, number & 0xFFFFFFFF, len(frames), h, w) + body


def work(steps: int, view: View) -> int:
    """A frame's model work as ``max_work`` counts it: sampling steps x panels decoded."""
    return steps * (steps if view is View.lcm_steps else 1 if view is View.stream else 2)


def page_controls(live: frozenset[str]) -> list[dict[str, Any]]:
    """The table's page-facing part (engine/keys.py), for the controls an engine taking ``live`` has:
    what app.js builds its key map, buttons and key line from. Each: ``value`` (the wire name),
    ``label``, ``keys``; where they differ from a button sending ``{"type": "command", "value": ...}``
    also ``send`` (the message type), ``arg`` (its fixed value), ``levels`` (it sends the level after
    the current one, ``stats.controls[value]``) and ``button: false``."""
    out = []
    for c in CONTROLS:
        if c.page is None or not available(c, live):
            continue
        entry: dict[str, Any] = {"value": c.name, "label": c.label, "keys": list(c.keys)}
        if c.page != "command":
            entry["send"] = c.page
            if c.value is not None:
                entry["arg"] = c.value
            if c.current is not None:
                entry["levels"] = list(c.levels)  # type: ignore[arg-type]  # a typed message's levels are fixed
        if not c.button:
            entry["button"] = False
        out.append(entry)
    return out


def control_states(core: TickCore, status: EngineStatus) -> dict[str, Any]:
    """The current level of each page control that has one (a toggle's on/off, the fusion mode ...)."""
    live = core.engine.live
    return {c.name: c.current(core, status) for c in CONTROLS
            if c.page is not None and c.current is not None and available(c, live)}


def hello_message(engine: Any, status: EngineStatus, *, view: View, keys: frozenset[str], metadata: dict[str, Any],
                  fps: float | None, seed: int, max_work: int) -> dict[str, Any]:
    """The ``hello`` a connection opens with: what the page builds its keys, buttons and canvas from
    (``commands``: the live controls, :func:`page_controls`)."""
    return {
        "type": "hello", "game": metadata.get("game"), "actions": engine.action_names,
        "key_bindings": engine.key_bindings, "keys": sorted(keys),
        "frame_size": engine.frame_size, "native_size": parse_native_size(metadata.get("native_size")),
        "steps": status.steps, "step_counts": list(STEP_COUNTS), "sampler": status.sampler,
        "fusion": status.fusion.value if status.fusion else None, "commands": page_controls(engine.live),
        "view": view.value, "views": [{"value": v.value, "label": v.label} for v in View],
        "fps": fps, "stages": STAGE_TERMS, "seed": seed, "max_work": max_work,
    }


def stats_message(core: TickCore, status: EngineStatus, *, server_fps: float, stages_ms: dict[str, float],
                  frames: int, dropped: int, captions: list[str], now: float) -> dict[str, Any]:
    """The ``stats`` sent a few times a second (every STATS_EVERY_S): the page's timing table and HUD."""
    label, score = core.score_shown(status)
    return {"type": "stats", "server_fps": round(server_fps, 2), "score": None if score is None else f"{label} {score}",
            "stages_ms": {k: round(v, 3) for k, v in stages_ms.items()},
            "steps": status.steps, "sampler": status.sampler, "fusion": status.fusion.value if status.fusion else None,
            "view": core.view.value, "frames": frames, "dropped": dropped, "recording": core.recording,
            "weights": status.fusion_weights, "settings": core.settings_shown(status),
            "player": core.player, "game_over": core.game_over_lines(status),
            "controls": control_states(core, status),
            "captions": captions,
            "notice": core.notice if now < core.notice_until else None}
