"""Hostile files: what is not a regular file, or is too big, or is a crafted ONNX cache.

Issue 19, items 1 and 4. Every user file is stat'ed before it is opened (a FIFO would block the
open, ``/dev/zero`` never ends, a sparse 8 GB file costs no disk but would cost 8 GB of memory),
and the ONNX export cache (models/backends/) is untrusted input: private folders only, bounded
regular files only, checked against torch on random timesteps, exported again when wrong.

Each case must end within 10 s (the ``deadline`` fixture turns a hang into a failure). The
command lines run through the real CLI (``worldgame.cli.main``), batched in one driver subprocess
(tests/hostile/driver.py) under an address-space cap, so torch and hydra load once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from hostile import episodes as E

from worldgame.data.episode import MAX_EPISODE_BYTES, list_episodes, read_episode, read_metadata
from worldgame.errors import WorldgameError
from worldgame.models import WorldModel, backends

REPO = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "hostile" / "driver.py"
AS_CAP = 4 << 30  # the driver's address-space cap: an 8 GB file read into memory would fail under it
CASE_SECONDS = 10

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def deadline():
    """A case that blocks (a FIFO opened for reading waits for a writer) fails after CASE_SECONDS
    instead of hanging the suite: SIGALRM interrupts the blocking call and raises."""
    def expired(*_):
        raise TimeoutError(f"the case did not end within {CASE_SECONDS} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    started = time.perf_counter()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
    assert time.perf_counter() - started < CASE_SECONDS


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private XDG cache root for the ONNX export (not yet created: the code makes it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def _sparse(path: Path, size: int = 8 << 30) -> Path:
    """An ``size`` file that uses no disk (``truncate -s 8G``)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _one_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# --- episodes, in-process ------------------------------------------------------------------------
@pytest.mark.parametrize("reader", [read_episode, read_metadata, list_episodes])
def test_fifo_episode_is_refused_without_blocking(tmp_path, reader):
    fifo = tmp_path / "ep_000000.wgep"
    os.mkfifo(fifo)
    with pytest.raises(WorldgameError) as e:
        reader(fifo)
    _one_line(e, "ep_000000.wgep", "a FIFO")


@pytest.mark.parametrize("magic", [b"", E.file2()[:6]], ids=["zeros", "valid_magic"])
def test_sparse_8g_episode_is_refused_at_once_without_memory(tmp_path, magic):
    path = _sparse(tmp_path / "huge.wgep")
    with open(path, "r+b") as f:
        f.write(magic)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(WorldgameError) as e:
            read_episode(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1 and peak < 1 << 20, (time.perf_counter() - started, peak)
    _one_line(e, "huge.wgep", "MiB, more than" if magic else "bad magic")


def test_episode_over_the_cap_is_refused_on_its_size(tmp_path, monkeypatch):
    path = tmp_path / "ep.wgep"
    path.write_bytes(E.good_file())
    tracemalloc.start()
    try:
        assert read_episode(path).complete  # a real file is far under the cap ...
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # ... and costs its size, not the cap (read(n) allocates n up front)
    monkeypatch.setattr("worldgame.data.episode.MAX_EPISODE_BYTES", path.stat().st_size - 1)
    with pytest.raises(WorldgameError) as e:
        read_episode(path)
    _one_line(e, "more than an episode may hold")
    assert MAX_EPISODE_BYTES >= 256 << 20


def test_a_bounded_read_costs_the_file_not_the_cap(tmp_path):
    from worldgame.fileio import read_bounded

    path = tmp_path / "small"
    path.write_bytes(b"x" * 100)
    tracemalloc.start()
    try:
        assert read_bounded(path, 1 << 30, "small", "") == b"x" * 100
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_devices_and_dev_zero_symlinks_are_refused(tmp_path):
    link = tmp_path / "zero.wgep"
    link.symlink_to("/dev/zero")
    with pytest.raises(WorldgameError) as e:
        read_episode(link)
    _one_line(e, "zero.wgep", "a device")


# --- the command lines: one line, non-zero exit, within 10 s each ---------------------------------
@pytest.fixture(scope="module")
def cli(tmp_path_factory, tiny_checkpoint):
    """Every command-line case, run by the real CLI in one driver subprocess."""
    work = tmp_path_factory.mktemp("hostile_files")
    fifo_ep = work / "fifo" / "ep_000000.wgep"
    fifo_ep.parent.mkdir()
    os.mkfifo(fifo_ep)
    sparse_ep = work / "sparse" / "ep_000000.wgep"
    sparse_ep.parent.mkdir()
    _sparse(sparse_ep)
    fifo_ckpt = _checkpoint_with_fifo_part(tiny_checkpoint, work / "fifo_ckpt")
    small_train = ["train=tiny", "model=tiny", "progress=false"]
    cases = {
        # not timed: the first command to import diffusers and the training code pays seconds of
        # imports (more on a busy 2-core machine); every case after it is timed on its own work
        "warmup:imports": ["train", f"data={work / 'nope'}", f"out={work / 'runs' / 'nope'}", *small_train],
        "replay:fifo": ["replay", f"path={fifo_ep}", "progress=false"],
        "replay:sparse": ["replay", f"path={sparse_ep}", "progress=false"],
        "replay:fifo_in_folder": ["replay", f"path={fifo_ep.parent}", "progress=false"],
        "train:fifo": ["train", f"data={fifo_ep.parent}", f"out={work / 'runs' / 'fifo'}", *small_train],
        "train:sparse": ["train", f"data={sparse_ep.parent}", f"out={work / 'runs' / 'sparse'}", *small_train],
        "collect:fifo": ["collect", f"out={fifo_ep.parent}", "episodes=1", "steps=3", "progress=false"],
        "collect:sparse": ["collect", f"out={sparse_ep.parent}", "episodes=1", "steps=3", "progress=false"],
        "play:fifo_part": ["play", f"checkpoint={fifo_ckpt}", "frames=1", "fps=0"],
        "bench:fifo_part": ["bench", f"checkpoint={fifo_ckpt}", "frames=2", "warmup=0", "steps=[1]"],
        "bench:wrong_cache": ["bench", f"checkpoint={tiny_checkpoint}", "frames=2", "warmup=0", "steps=[1]",
                              "backend=onnx"],
    }
    xdg = work / "xdg"  # the driver's own cache, holding a consistent but wrong export of tiny_checkpoint
    with _env("XDG_CACHE_HOME", str(xdg)):
        _plant(_model(tiny_checkpoint), _timestep_dependent_wrong(_model(tiny_checkpoint)))
    spec = work / "cases.json"
    spec.write_text(json.dumps({"as_bytes": AS_CAP, "fsize_bytes": None,
                                "cases": [{"id": i, "argv": a} for i, a in cases.items()]}))
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": str(REPO),
           "XDG_CACHE_HOME": str(xdg)}
    signal.setitimer(signal.ITIMER_REAL, 0)  # the subprocess has its own limit: startup + 10 s a case
    r = subprocess.run([sys.executable, str(DRIVER), str(spec), str(work / "results.json")], cwd=work, env=env,
                       capture_output=True, text=True, timeout=60 + CASE_SECONDS * len(cases), check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return {res["id"]: res for res in json.loads((work / "results.json").read_text())}


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def _checkpoint_with_fifo_part(source: Path, folder: Path) -> Path:
    """A copy of ``source`` whose denoiser weights are a FIFO (nobody ever writes to it)."""
    import shutil

    shutil.copytree(source, folder)
    weights = folder / "denoiser" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    os.mkfifo(weights)
    return folder


@pytest.mark.parametrize(("case", "needle"), [
    ("replay:fifo", "a FIFO"), ("replay:sparse", "bad magic"), ("replay:fifo_in_folder", "a FIFO"),
    ("train:fifo", "a FIFO"), ("train:sparse", "bad magic"),
    ("collect:fifo", "a FIFO"), ("collect:sparse", "bad magic"),
    ("play:fifo_part", "a FIFO"), ("bench:fifo_part", "a FIFO"),
])
def test_command_refuses_in_one_line_within_10_s(cli, case, needle):
    res = cli[case]
    assert res["escaped"] is None and res["rc"] not in (0, None), res
    lines = [line for line in res["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("worldgame ") and needle in lines[0], res["stderr"]
    assert res["seconds"] < CASE_SECONDS, res


def test_bench_rejects_a_consistent_but_wrong_cache_and_runs_on_a_fresh_export(cli):
    res = cli["bench:wrong_cache"]
    assert res["rc"] == 0, res["stderr"]
    assert "cached ONNX export rejected (the ONNX export differs from torch" in res["stderr"], res["stderr"]
    assert res["seconds"] < CASE_SECONDS, res


# --- the ONNX cache: untrusted input --------------------------------------------------------------
class _WrongOffProbe(torch.nn.Module):
    """The denoiser, right at t=499 (the one timestep the old load check used) and off by 1 elsewhere."""

    def __init__(self, denoiser: torch.nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, noisy, timesteps, context, actions, context_noise):
        out = self.denoiser(noisy, timesteps, context, actions, context_noise)
        return out + (timesteps != 499).float().reshape(-1, 1, 1, 1)


def _model(checkpoint: Path) -> WorldModel:
    return WorldModel.from_pretrained(checkpoint, device="cpu")


def _plant(model: WorldModel, denoiser: bytes | None = None) -> Path:
    """A cache folder holding a real export with ``denoiser`` in place of its own, and a manifest
    that matches it: consistent, so only the check against torch can tell."""
    runner = backends.OnnxRunner(model)  # makes the folder and a good cache
    del runner
    folder = backends.cache_dir(backends.weights_key(model))
    if denoiser is not None:
        (folder / "denoiser.onnx").write_bytes(denoiser)
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["sha256"]["denoiser.onnx"] = hashlib.sha256(denoiser).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _timestep_dependent_wrong(model: WorldModel) -> bytes:
    return backends._export(_WrongOffProbe(model.denoiser), backends._probe(model), backends.DENOISER_INPUTS)


def _matches_torch_everywhere(runner: backends.OnnxRunner, model: WorldModel) -> None:
    g = torch.Generator().manual_seed(11)
    with torch.inference_mode():
        for t in (999, 750, 499, 250, 0):
            probe = backends._random_probe(model, g, 0)
            probe = (probe[0], torch.tensor([t]), *probe[2:])
            assert (runner.denoise(*probe) - model.denoiser(*probe)).abs().max() < 1e-3, t


def test_timestep_dependent_wrong_denoiser_is_exported_again(tiny_checkpoint, cache, capfd):
    model = _model(tiny_checkpoint)
    bad = _timestep_dependent_wrong(model)
    folder = _plant(model, bad)
    capfd.readouterr()
    runner = backends.OnnxRunner(model)
    err = capfd.readouterr().err
    assert "cached ONNX export rejected" in err and "differs from torch" in err and str(folder) in err
    assert (folder / "denoiser.onnx").read_bytes() != bad  # the fresh, checked export replaced it
    _matches_torch_everywhere(runner, model)
    backends.OnnxRunner(model)  # and the next load uses the cache quietly
    assert "note" not in capfd.readouterr().err


def test_an_export_wrong_even_when_fresh_names_the_cache(tiny_checkpoint, cache, monkeypatch, capfd):
    from worldgame.models.sampler import Sampler

    model = _model(tiny_checkpoint)
    folder = _plant(model, _timestep_dependent_wrong(model))
    real_export = backends._export
    monkeypatch.setattr(backends.runner, "_export", lambda module, *a: real_export(
        _WrongOffProbe(module) if module is model.denoiser else module, *a))
    with pytest.raises(WorldgameError) as e:
        backends.attach(Sampler(model), "onnx")
    _one_line(e, "differs from torch", f"remove {folder}", "backend=torch")
    capfd.readouterr()
    assert backends.attach(Sampler(model), "auto") == "torch"
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note: backend=auto")]
    assert len(lines) == 1 and str(folder) in lines[0]


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "sparse"])
def test_cached_part_that_is_not_a_bounded_regular_file_is_refused_and_rebuilt(tiny_checkpoint, cache, capfd, kind):
    model = _model(tiny_checkpoint)
    folder = _plant(model)
    part = folder / "denoiser.onnx"
    good = part.read_bytes()
    part.unlink()
    if kind == "fifo":
        os.mkfifo(part)
    elif kind == "dev_zero":
        part.symlink_to("/dev/zero")
    else:
        _sparse(part)
    capfd.readouterr()
    started = time.perf_counter()
    backends.OnnxRunner(model)
    assert time.perf_counter() - started < CASE_SECONDS
    err = capfd.readouterr().err
    assert "cached ONNX export unusable" in err and str(part) in err, err
    assert part.is_file() and not part.is_symlink() and part.read_bytes() == good  # rebuilt


def _owner_is_foreign(path: Path) -> None:
    os.chown(path, 54321, 54321)


@pytest.mark.parametrize("level", ["key", "onnx", "worldgame"])
@pytest.mark.parametrize("loose", ["world_writable", "group_writable", "foreign_owner"])
def test_a_loose_or_foreign_cache_folder_is_not_used(tiny_checkpoint, cache, capfd, level, loose):
    if loose == "foreign_owner" and os.getuid() != 0:
        pytest.skip("another user's folder can only be made by root (chown); the mode checks run here")
    model = _model(tiny_checkpoint)
    key_folder = _plant(model, _timestep_dependent_wrong(model))  # planted by "someone else"
    target = {"key": key_folder, "onnx": key_folder.parent, "worldgame": key_folder.parent.parent}[level]
    if loose == "foreign_owner":
        _owner_is_foreign(target)
    else:
        target.chmod(0o777 if loose == "world_writable" else 0o770)
    planted = {p.name: p.read_bytes() for p in key_folder.iterdir()}
    capfd.readouterr()
    runner = backends.OnnxRunner(model)
    err = capfd.readouterr().err
    why = "belongs to another user" if loose == "foreign_owner" else "is writable by others"
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"ONNX cache folder {target} {why}" in notes[0] and "remove it" in notes[0], err
    assert "rejected" not in err  # its files were never read ...
    assert {p.name: p.read_bytes() for p in key_folder.iterdir()} == planted  # ... nor written
    _matches_torch_everywhere(runner, model)  # the export made in memory serves this run


def test_the_cache_is_private_under_umask_000_and_per_user(tiny_checkpoint, cache):
    model = _model(tiny_checkpoint)
    old = os.umask(0)
    try:
        backends.OnnxRunner(model)
    finally:
        os.umask(old)
    folder = backends.cache_dir(backends.weights_key(model))
    assert folder.name.endswith(f"-u{os.getuid()}")
    for level in (cache, cache / "worldgame", folder.parent, folder):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    assert (folder / "manifest.json").is_file()


def test_the_check_covers_the_whole_schedule(tiny_checkpoint):
    model = _model(tiny_checkpoint)
    g = torch.Generator().manual_seed(0)
    span = model.scheduler.config.num_train_timesteps / backends.CHECK_PROBES
    for i in range(backends.CHECK_PROBES):
        t = int(backends._random_probe(model, g, i)[1])
        assert span * i <= t < span * (i + 1)
