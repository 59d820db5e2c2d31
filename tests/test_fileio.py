"""Atomic writes: a failed write leaves the old file and no temp file; readers see whole files only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_dir, atomic_path, atomic_write


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write(target, "old")
    atomic_write(target, "new")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["a.json"]


def test_failure_midway_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.bin"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_folder_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(WorldgameError, match="cannot write"):
            atomic_write(folder / "x", "data")
    finally:
        folder.chmod(0o700)


def test_atomic_dir_swaps_files_in_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    with atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "weights.safetensors").write_bytes(b"1")
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "weights.safetensors").write_bytes(b"2")
        raise RuntimeError("crash before the files were complete")
    assert (folder / "weights.safetensors").read_bytes() == b"1"
    assert sorted(os.listdir(tmp_path)) == ["vae"]  # no temp folder left behind


def test_not_a_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorldgameError, match="cannot write"):
        atomic_write(tmp_path / "file" / "inside.json", "{}")
