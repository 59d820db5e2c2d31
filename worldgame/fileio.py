"""Atomic, durable writes: temp file in the same folder, fsync, rename.

A reader never sees half a file, a crash or a full disk leaves the old file (or none), never an
empty or partial one. Every file the project writes into a checkpoint, session or report goes
through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worldgame.errors import WorldgameError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: the permissions a plain open() would give


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For libraries that write a file themselves (safetensors, PIL, torch): write to the yielded path.
    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should get the usual permissions
    except OSError as e:
        raise WorldgameError(f"cannot write {path} ({e.strerror or e}); check the folder exists, is writable and the disk has room") from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise WorldgameError(f"cannot write {path} ({e.strerror or e}); check the folder is writable and the disk has room") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically and durably."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(folder: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside ``folder``; on success its files are fsynced and it replaces
    ``folder``: in one step where the OS can exchange two folders (Linux), else file by file
    (weights before config.json). For ``save_pretrained``-style writers: a loader polling
    ``folder`` always sees complete files. On error the temporary folder is removed.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700; the folder should get the usual permissions
    except OSError as e:
        raise WorldgameError(f"cannot write {folder} ({e.strerror or e}); check the folder is writable and the disk has room") from e
    try:
        yield tmp
        files = sorted((p for p in tmp.iterdir() if p.is_file()), key=lambda p: p.suffix == ".json")
        for f in files:
            f.chmod(0o666 & ~_UMASK)
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        if not (folder.is_dir() and _exchange(tmp, folder)):  # after an exchange tmp holds the old files
            folder.mkdir(exist_ok=True)
            for f in files:
                os.replace(f, folder / f.name)
        _fsync_dir(folder)
    except OSError as e:
        raise WorldgameError(f"cannot write {folder} ({e.strerror or e}); check the folder is writable and the disk has room") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swap two folders in one step. False where unsupported."""
    try:
        import ctypes

        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def output_folder(value: str | Path, setting: str) -> Path:
    """Setting ``setting``'s folder, made if missing and checked writable before any work; one line
    naming the setting otherwise (a long run never ends in an OSError when it saves)."""
    folder = Path(value)
    try:
        if folder.exists() and not folder.is_dir():
            raise WorldgameError(f"{setting}={value} is a file, not a folder; choose a folder")
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise WorldgameError(f"{setting}={value} is not writable; choose a folder you can write to")
    except OSError as e:
        raise WorldgameError(f"{setting}={value}: cannot make the folder ({e.strerror or e}); choose a writable folder") from e
    return folder


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | Path, what: str, hint: str) -> os.stat_result:
    """``stat`` of ``path`` (symlinks followed) if it is a regular file; one line naming ``what`` otherwise.

    Called before any open: a FIFO would block the open itself, a device (``/dev/zero``) never ends.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise WorldgameError(f"{what} cannot be read ({e.strerror or e}); {hint}") from e
    if not stat.S_ISREG(st.st_mode):
        raise WorldgameError(f"{what} is {_kind(st.st_mode)}, not a regular file; {hint}")
    return st


@contextlib.contextmanager
def open_regular(path: str | Path, what: str, hint: str) -> Iterator[Any]:
    """Open ``path`` for reading only if it is a regular file, checked before and after the open.

    O_NONBLOCK makes the open of a FIFO swapped in after the first check return at once (then
    refused by fstat) instead of waiting for a writer; on a regular file the flag changes nothing.
    """
    check_regular(path, what, hint)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise WorldgameError(f"{what} cannot be read ({e.strerror or e}); {hint}") from e
    f = os.fdopen(fd, "rb")
    with f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise WorldgameError(f"{what} is {_kind(mode)}, not a regular file; {hint}")
        os.set_blocking(fd, True)
        yield f


def read_bounded(path: str | Path, max_bytes: int, what: str, hint: str) -> bytes:
    """The bytes of regular file ``path``, refusing more than ``max_bytes`` (checked before reading
    and while reading: a file that grows is cut off, never read to the end)."""
    try:
        with open_regular(path, what, hint) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise WorldgameError(f"{what} is larger than {max_bytes} bytes; {hint}")
            # read(n) allocates n bytes up front: ask for what fstat saw, and more only if it grew
            data = f.read(size + 1)
            if len(data) > size:
                data += f.read(max_bytes + 1 - len(data))
    except OSError as e:
        raise WorldgameError(f"{what} cannot be read ({e.strerror or e}); {hint}") from e
    if len(data) > max_bytes:
        raise WorldgameError(f"{what} is larger than {max_bytes} bytes; {hint}")
    return data


def read_json_object(path: Path, max_bytes: int, what: str, hint: str) -> dict[str, Any]:
    """A JSON object from ``path``, refusing files over ``max_bytes``; one line naming ``what`` otherwise."""
    try:
        obj = json.loads(read_bounded(path, max_bytes, what, hint).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WorldgameError(f"{what} is damaged (invalid JSON: {type(e).__name__}); {hint}") from e
    if not isinstance(obj, dict):
        raise WorldgameError(f"{what} is damaged (a JSON {type(obj).__name__}, not an object); {hint}")
    return obj
