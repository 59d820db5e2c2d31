"""ONNX Runtime Web for the exported page (``worldgame export-web``): the few files of its pinned npm
package the page runs (the WASM backend's ES-module bundle and its .wasm), found in a folder the user
names, or in the cache, or fetched into the cache with ``npm pack`` (the npm client, the registry it
is configured for). Nothing here runs what it downloads: the files are copied into the export as data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from worldgame.errors import WorldgameError

ORT_WEB_VERSION = "1.22.0"  # pinned: the version the page and its browser test were checked with
# the files the page needs (dist/ of the npm package): the WASM-only ES module, the Emscripten module it
# imports, and the SIMD (threaded where the page is cross-origin isolated) WebAssembly binary that loads
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ORT_WEB_ENV = "WORLDGAME_ORT_WEB"  # a folder holding ORT_WEB_FILES (used instead of the cache / npm)
MAX_PACKAGE_BYTES = 200 << 20  # the npm tarball (about 20 MB for 1.22.0); a bigger one is refused
MAX_FILE_BYTES = 64 << 20


def cache_folder(version: str = ORT_WEB_VERSION) -> Path:
    """Where fetched ORT-web files are kept: ``$XDG_CACHE_HOME/worldgame/ort-web/<version>``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "worldgame" / "ort-web" / version


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() and not (folder / name).is_symlink() for name in ORT_WEB_FILES)


def how_to_get(version: str = ORT_WEB_VERSION) -> str:
    return (f"get them with `npm pack onnxruntime-web@{version}` and unpack package/dist/{{{','.join(ORT_WEB_FILES)}}} "
            f"into a folder, then pass ort_web=FOLDER (or set {ORT_WEB_ENV}=FOLDER)")


def ort_web_files(folder: str | None = None, fetch: bool = True, version: str = ORT_WEB_VERSION) -> Path:
    """The folder holding ORT_WEB_FILES: ``folder`` (or $WORLDGAME_ORT_WEB) when given, else the
    cache, fetched there with ``npm pack`` when missing and ``fetch``. One line when none can be had."""
    given = folder or os.environ.get(ORT_WEB_ENV)
    if given:
        path = Path(given)
        if not _complete(path):
            raise WorldgameError(f"ort_web={given} lacks ONNX Runtime Web's {', '.join(ORT_WEB_FILES)}; {how_to_get(version)}")
        return path
    cache = cache_folder(version)
    if _complete(cache):
        return cache
    if not fetch:
        raise WorldgameError(f"ONNX Runtime Web {version} is not in {cache}; {how_to_get(version)}")
    _fetch(cache, version)
    return cache


def _fetch(cache: Path, version: str) -> None:
    """``npm pack onnxruntime-web@version`` into a temporary folder, then the few files into ``cache``."""
    npm = shutil.which("npm")
    if npm is None:
        raise WorldgameError(f"ONNX Runtime Web {version} is not cached and npm is not installed; {how_to_get(version)}")
    with tempfile.TemporaryDirectory(prefix="worldgame-ort-web-") as tmp:
        try:
            done = subprocess.run([npm, "pack", f"onnxruntime-web@{version}", "--silent", "--pack-destination", tmp],
                                  cwd=tmp, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise WorldgameError(f"`npm pack onnxruntime-web@{version}` failed ({type(e).__name__}); {how_to_get(version)}") from e
        tarballs = list(Path(tmp).glob("onnxruntime-web-*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            why = (done.stderr.strip().splitlines() or ["no package"])[-1][:160]
            raise WorldgameError(f"`npm pack onnxruntime-web@{version}` failed ({why}); {how_to_get(version)}")
        tarball = tarballs[0]
        if tarball.stat().st_size > MAX_PACKAGE_BYTES:
            raise WorldgameError(f"{tarball.name} is larger than {MAX_PACKAGE_BYTES >> 20} MB; {how_to_get(version)}")
        staged = Path(tmp) / "files"
        staged.mkdir()
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                for name in ORT_WEB_FILES:  # only these members, as regular files, size-bounded
                    member = tar.getmember(f"package/dist/{name}")
                    if not member.isfile() or member.size > MAX_FILE_BYTES:
                        raise WorldgameError(f"{tarball.name}: package/dist/{name} is not a plain file of at most "
                                             f"{MAX_FILE_BYTES >> 20} MB")
                    src = tar.extractfile(member)
                    (staged / name).write_bytes(src.read(MAX_FILE_BYTES + 1))
        except (KeyError, tarfile.TarError, OSError) as e:
            raise WorldgameError(f"{tarball.name} does not hold the files the page needs ({type(e).__name__}); "
                                 f"{how_to_get(version)}") from e
        cache.parent.mkdir(parents=True, exist_ok=True)
        ready = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", dir=cache.parent))  # then renamed: never half a cache
        for name in ORT_WEB_FILES:
            shutil.copyfile(staged / name, ready / name)
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(ready, cache)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
