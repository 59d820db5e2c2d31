"""`worldgame export-web checkpoint=DIR out=DIR`: a static folder that plays the dream in a browser,
the world model running in the visitor's browser on ONNX Runtime Web (WASM), no server logic::

    out/
      index.html style.css app.js sampler.js   the page (worldgame/web_export/), copied as is
      denoiser.onnx (or context.onnx + step.onnx) decoder.onnx [events.onnx] [agent.onnx] [chance.onnx]
      plans.json      every play plan's timesteps and coefficients (commands/web_plans.py)
      starts.bin      real start contexts: the game reset at seeds 0..N-1, its first K frames encoded
                      (float32, little-endian, (N, K, C, h, w)), as `play` starts a dream
      meta.json       actions, key bindings, tick rate, frame and latent shape, play default, parts
      ort.wasm.min.mjs ort-wasm-simd-threaded.{mjs,wasm}   ONNX Runtime Web (WASM; pinned; commands/ort_web.py)
      worldgame-export.json   the manifest that marks a folder as an export (files, sizes, sha256)

The ONNX graphs are the fast path's own (models/backends/export.py: the same parts, inputs and
example), fp32; ``weights=fp16`` stores their weights in half precision (:func:`half_weights`). ``out`` is written whole into a temporary folder beside it and swapped in: a
folder that is not empty and not a previous export (no manifest) is refused with one line, and so
is any ``out`` inside the checkpoint or holding it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldgame.commands.ort_web import ORT_WEB_FILES, ORT_WEB_VERSION, ort_web_files
from worldgame.commands.web_plans import web_plans
from worldgame.engine.lockstep import LockstepGame
from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_dir
from worldgame.games import make_game
from worldgame.models.backends.choice import _Policy
from worldgame.models.backends.export import _export, _part_specs
from worldgame.models.world_model import WorldModel, default_checkpoint, play_default, play_steps

MANIFEST = "worldgame-export.json"
EXPORT_KIND = "worldgame export-web"
EXPORT_FORMAT = 1
PAGE_FILES = ("index.html", "style.css", "app.js", "sampler.js")  # worldgame/web_export/
MAX_MANIFEST_BYTES = 1 << 20


def page_folder() -> Any:
    return resources.files("worldgame") / "web_export"


def is_export(folder: Path) -> bool:
    """Whether ``folder`` holds a previous export's manifest (a small JSON naming this exporter)."""
    path = folder / MANIFEST
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("kind") == EXPORT_KIND


def check_out(out: Path, checkpoint: Path) -> None:
    """Refuse (one line) an ``out`` that is a file, a non-empty folder that is not a previous export,
    the checkpoint folder, inside it, or holding it."""
    o, c = out.resolve(), checkpoint.resolve()
    if o == c or o.is_relative_to(c) or c.is_relative_to(o):
        raise WorldgameError(f"out={out} is the checkpoint folder, inside it or holds it; choose another folder (e.g. out=site)")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise WorldgameError(f"out={out} is not a folder; choose a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise WorldgameError(f"out={out} is not empty and holds no previous export ({MANIFEST}); choose a new or empty folder")


def start_contexts(model: WorldModel, seeds: int) -> tuple[np.ndarray, Any]:
    """(N, K, C, h, w) float32: the game reset at seeds 0..N-1, its first K frames encoded, as a dream
    starts (engine/model_engine.py reset + engine/dream.py start); and the game."""
    game = make_game(model.metadata["game_config"])
    real = LockstepGame(game, model.context_length)
    latents = [model.encode(real.reset(seed)).float().cpu().numpy() for seed in range(seeds)]
    return np.ascontiguousarray(np.stack(latents), dtype="<f4"), game


def export_parts(model: WorldModel) -> dict[str, bytes]:
    """The ONNX graphs the page runs: the fast path's denoiser (one graph, or the feature_cache
    denoiser's two) and decoder, plus the event head and the agent's policy where the checkpoint has them."""
    blobs = {name: _export(spec.module, spec.args, spec.inputs, spec.outputs) for name, spec in _part_specs(model).items()}
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    window = torch.zeros(1, k, c, s, s)
    if model.events is not None:
        blobs["events.onnx"] = _export(model.events, (window, torch.zeros(1, dtype=torch.long)), ("window", "action"), ("logits", "end"))
    if model.agent is not None:
        blobs["agent.onnx"] = _export(_Policy(model.agent), (window,), ("window",), ("logits",))
    if model.chance is not None:  # the chance prior's draw: the frame's code, before the steps (the page hands it the noise)
        g, v = model.chance.config.groups, model.chance.config.values
        blobs["chance.onnx"] = _export(model.chance, (window, torch.zeros(1, k, dtype=torch.long), torch.zeros(1, g, v), torch.tensor(1.0)),
                                       ("context", "actions", "noise", "temperature"), ("code",))
    return blobs


def metadata(model: WorldModel, game: Any, parts: dict[str, bytes], starts: np.ndarray, steps: int) -> dict[str, Any]:
    m, cfg = model.metadata, model.denoiser.config
    lives = getattr(game, "start_lives", None)
    events = model.events
    return {
        "format": EXPORT_FORMAT,
        "game": m.get("game"),
        "action_names": list(model.action_names),
        "key_bindings": {k: list(v) for k, v in m.get("key_bindings", getattr(game, "key_bindings", {})).items()
                         if k in model.action_names},
        "tick_hz": float(m.get("tick_hz", 30.0)),
        "frame_size": model.frame_size,
        "latent": [int(cfg.latent_channels), int(cfg.latent_size), int(cfg.latent_size)],
        "context_length": model.context_length,
        "context_noise": model.context_noise,
        "prediction_type": model.prediction_type,
        "play": play_default(m),
        "steps": steps,
        "parts": sorted(parts),
        "starts": {"file": "starts.bin", "count": int(starts.shape[0]), "seeds": list(range(starts.shape[0])),
                   "shape": list(starts.shape[1:]), "dtype": "float32"},
        "events": None if not model.has_events else {  # the head's, or drawn with the chance code (its group 0)
            "drawn": model.draws_events,
            "end_threshold": None if events is None else events.config.end_threshold,
            "start_lives": None if getattr(game, "infinite_lives", False) or not isinstance(lives, int) else lives},
        "agent": model.agent is not None,
        "chance": None if model.chance is None else {"groups": int(model.chance.config.groups),
                                                     "values": int(model.chance.config.values),
                                                     "event_group": model.draws_events},
        "ort_web": ORT_WEB_VERSION,
    }


def half_weights(blob: bytes, least: int = 16) -> bytes:
    """The ONNX graph ``blob`` with each float32 weight of ``least`` or more values stored as float16
    and widened back by a Cast node of its old name: half the bytes on the wire, the same fp32
    arithmetic in the page (ONNX Runtime folds the casts once, when the session is made)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = (model := onnx.load_from_string(blob)).graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and int(np.prod(init.dims)) >= least:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


def export_web(checkpoint: str | Path | None, out: str | Path, seeds: int = 8, steps: int | None = None,
               ort_web: str | None = None, weights: str = "fp16") -> dict[str, Any]:
    """Write the export (module docstring); returns a summary (files, MB, seconds)."""
    started = time.perf_counter()
    checkpoint = Path(checkpoint) if checkpoint else default_checkpoint("bouncer")
    out = Path(out)
    check_out(out, checkpoint)
    ort = ort_web_files(ort_web)  # before the model: a missing runtime is said at once
    model = WorldModel.from_pretrained(checkpoint, device="cpu", half=False)
    parts = export_parts(model)
    if weights == "fp16":
        parts = {name: half_weights(blob) for name, blob in parts.items()}
    starts, game = start_contexts(model, seeds)
    plans = web_plans(model.prediction_type)
    meta = {**metadata(model, game, parts, starts, play_steps(steps, model.metadata)), "weights": weights}
    page = page_folder()
    with atomic_dir(out) as tmp:
        for name, blob in parts.items():
            (tmp / name).write_bytes(blob)
        (tmp / "starts.bin").write_bytes(starts.tobytes())
        (tmp / "plans.json").write_text(json.dumps(plans))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        for name in PAGE_FILES:
            (tmp / name).write_bytes((page / name).read_bytes())
        for name in ORT_WEB_FILES:  # beside the page: the bundle finds its .wasm next to itself
            shutil.copyfile(ort / name, tmp / name)
        manifest = {"kind": EXPORT_KIND, "format": EXPORT_FORMAT, "checkpoint": str(checkpoint), "ort_web": ORT_WEB_VERSION,
                    "files": {p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                              for p in sorted(tmp.iterdir())}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    total = sum(f["bytes"] for f in manifest["files"].values())
    summary = {"out": str(out), "files": len(manifest["files"]) + 1, "mb": round(total / 1e6, 2),
               "seconds": round(time.perf_counter() - started, 2)}
    return summary


def run(cfg: Any) -> dict[str, Any]:
    """Entry point of ``worldgame export-web`` (hydra config: conf/export-web.yaml; settings.ExportWebSettings)."""
    summary = export_web(cfg.checkpoint, cfg.out, seeds=cfg.seeds, steps=cfg.steps, ort_web=cfg.ort_web,
                         weights=cfg.weights)
    print(f"exported {summary['files']} files, {summary['mb']} MB, in {summary['seconds']} s to {summary['out']}; "
          f"play it: python -m http.server -d {summary['out']}  (then open http://localhost:8000/)", file=sys.stderr)
    print(json.dumps(summary), flush=True)
    return summary
