"""The on-disk cache of the exports: untrusted input, in folders only this user can write.

The ONNX files are exported from the loaded weights on first use and cached outside the repo, in
``$XDG_CACHE_HOME/worldgame/onnx/<sha256 of the weights>-u<uid>/`` (``~/.cache`` by default): new
weights get a new folder, and nothing is ever loaded from anywhere else. The cache is untrusted
input all the same:

* its folders (``worldgame/``, ``onnx/`` and the weights' own) are created 0700, and one that
  belongs to another user or is group/world-writable is not used (a note names it; the export
  is made in memory each run until it is removed);
* only regular files under a size cap are read (never a FIFO or a device), ``manifest.json``
  last written with each file's sha256, and a file whose hash differs is exported again;
* what is read here is never trusted as right: every load, cached or fresh, is checked against
  torch before it runs (runner.py), and only an export that passes is written here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_write, atomic_write_json, read_bounded, read_json_object
from worldgame.models.backends.export import FORMAT, OPSET, _parts
from worldgame.models.backends.int8 import INT8_RECIPE

if TYPE_CHECKING:
    from worldgame.models.world_model import WorldModel


def cache_dir(key: str) -> Path:
    """Where this user's export of the weights hashed to ``key`` lives (XDG base directory spec).
    The uid is part of the name: a shared XDG_CACHE_HOME never hands one user's export to another."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return root / "worldgame" / "onnx" / f"{key}-u{uid}"


def weights_key(model: WorldModel, precision: str = "fp32") -> str:
    """sha256 of what an export is made from: the denoiser's and VAE's configs and weights, and the
    precision (an int8 export never answers for the fp32 one, nor the other way)."""
    recipe = f"-r{INT8_RECIPE}" if precision == "int8" else ""
    h = hashlib.sha256(f"worldgame-onnx-{FORMAT}-opset{OPSET}-{precision}{recipe}".encode())
    for module in (model.denoiser, model.vae):
        config = {k: v for k, v in module.config.items() if not k.startswith("_")}  # not _name_or_path
        h.update(json.dumps([type(module).__name__, config], sort_keys=True, default=str).encode())
        for name, t in module.state_dict().items():
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _private_cache(folder: Path) -> Path | None:
    """``folder`` and the cache folders above it that worldgame makes, created 0700 where missing;
    None (with a note naming the folder) where one of them is another user's or writable by others:
    its files could be anyone's, so this run exports in memory and caches nothing."""
    for level in (folder.parent.parent, folder.parent, folder):
        reason = _unsafe_folder(level)
        if reason:
            print(f"note: ONNX cache folder {level} {reason}; not used, the export is made again each run",
                  file=sys.stderr)
            return None
    return folder


def _unsafe_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot hold the cache, or None; a missing one is created private."""
    try:
        _mkdirs_private(folder)
        st = os.stat(folder)  # a symlink counts as what it points to: its target must be safe too
    except OSError as e:
        return f"cannot be created ({e.strerror or e}; set XDG_CACHE_HOME to a writable folder)"
    fix = "remove it or set XDG_CACHE_HOME to a private folder"
    if not stat.S_ISDIR(st.st_mode):
        return f"is not a folder ({fix})"
    if os.name != "posix":  # no uids, and st_mode reports every folder as writable by all
        return None
    if st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid}; {fix})"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {stat.S_IMODE(st.st_mode):o}; {fix})"
    return None


def _mkdirs_private(folder: Path) -> None:
    """Create ``folder`` and each missing folder above it 0700 (mode & ~umask: private under any
    umask, 000 included), not with the umask's default as ``mkdir(parents=True)`` would."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: checked after
            os.mkdir(f, 0o700)


def _part_cap(model: WorldModel) -> int:
    """The most bytes a cached part may have: 4x the float32 weights of the modules it is
    exported from, plus room for the graph. A real export is ~1x; the cap keeps a crafted file
    from being read into memory."""
    n = sum(t.numel() for m in (model.denoiser, model.vae) for t in m.state_dict().values())
    return 4 * 4 * n + (16 << 20)


def _read_cache(model: WorldModel, folder: Path) -> dict[str, bytes] | None:
    """The cached export when every part is a regular file under the size cap and matches the
    sha256 its manifest records, else None (with a note saying why; it is exported again)."""
    manifest = folder / "manifest.json"
    if not os.path.lexists(manifest):
        return None
    hint = "it is exported again"
    try:
        recorded = read_json_object(manifest, 1 << 16, str(manifest), hint).get("sha256")
        blobs = {p: read_bounded(folder / p, _part_cap(model), str(folder / p), hint) for p in _parts(model)}
    except WorldgameError as e:
        print(f"note: cached ONNX export unusable: {e}", file=sys.stderr)
        return None
    if not isinstance(recorded, dict) or any(recorded.get(p) != hashlib.sha256(b).hexdigest() for p, b in blobs.items()):
        print(f"note: {folder}: a cached ONNX file does not match its recorded sha256; exporting again", file=sys.stderr)
        return None
    return blobs


def _write_cache(folder: Path, blobs: dict[str, bytes], key: str, precision: str = "fp32") -> None:
    """Cache an export that passed the check: the parts first, the manifest last (atomically)."""
    try:
        for p, b in blobs.items():
            atomic_write(folder / p, b)
        atomic_write_json(folder / "manifest.json", {
            "weights_sha256": key, "format": FORMAT, "opset": OPSET, "precision": precision, "torch": torch.__version__,
            "sha256": {p: hashlib.sha256(b).hexdigest() for p, b in blobs.items()}})
    except WorldgameError as e:  # a read-only home: the export in memory still serves this run
        print(f"note: cannot cache the ONNX export ({e}); it is made again next time", file=sys.stderr)
