"""Hostile sessions and exports: crafted copies of a real recorded model session through the real CLI.

`replay regenerate=true` trusts nothing in a session (engine/session_checks.py): each crafted
session must end with one line on stderr, a non-zero exit, no traceback, within 10 s and under
the driver's memory cap (a snapshot that inflates to 4 GiB among them). `replay export=` must not
overwrite its own input (by path, symlink or hard link) or a read-only file, and must refuse a
frame rate the video type cannot store. All cases run in one driver process (tests/hostile/driver.py:
torch and hydra load once).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hostile.episodes import npy_header
from test_hostile import assert_one_line, run_driver

from worldgame.data.episode import EpisodeWriter, read_episode
from worldgame.engine.session import decode_state, encode_state

REPO = Path(__file__).resolve().parent.parent
CASE_SECONDS = 10
REAL = "a_real_session_still_regenerates"
REPLACED = "export_onto_an_earlier_video_replaces_it"
WARMUP = "warmup:a_real_session_still_regenerates"


def cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "worldgame.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_checkpoint) -> Path:
    """A short model session recorded by `worldgame play record=true` (torch backend: no ONNX export)."""
    out = tmp_path_factory.mktemp("recorded")
    r = cli("play", f"checkpoint={tiny_checkpoint}", "fps=0", "frames=12", "record=true", "backend=torch",
            f"sessions={out}", "seed=1", timeout=300)
    assert r.returncode == 0, r.stderr
    (path,) = out.glob("*.wgep")
    return path


def craft(session: Path, out: Path, meta: dict | None = None, state: dict | None = None, drop: tuple[str, ...] = (),
          snapshot: object = None, columns: dict | None = None) -> Path:
    """A copy of ``session`` with metadata, snapshot arrays or per-frame columns changed."""
    ep = read_episode(session)
    m = {k: v for k, v in ep.metadata.items() if k != "rows"}
    if state or drop:
        st = {k: v for k, v in decode_state(m["snapshot"]).items() if k not in drop}
        m["snapshot"] = encode_state({**st, **(state or {})})
    if snapshot is not None:
        m["snapshot"] = snapshot
    m.update(meta or {})
    cols = {**ep.timings_ms, **(columns or {})}
    with EpisodeWriter(out, m) as w:
        for i in range(len(ep)):
            w.add(ep.frames[i], int(ep.actions[i]), float(ep.rewards[i]), bool(ep.dones[i]),
                  {k: float(v[i]) for k, v in cols.items()})
    return out


def npz_bytes(members: dict[str, bytes]) -> str:
    """base64 of a zip holding raw ``.npy`` members (for snapshots numpy would not write)."""
    import base64
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


def bomb_snapshot(size: int = (4 << 30) - (1 << 20)) -> str:
    """base64 of an npz whose context.npy declares ``size`` bytes of float32 and deflates them
    ~1000:1 (a 5.5 MB session): one compressed MiB of zeros repeated, full flushes making each
    piece independent of the ones before."""
    import base64

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = npy_header((size // 4,), "<f4")
    data = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    piece = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    data += piece * (size >> 20) + c.flush()
    name = b"context.npy"
    usize = len(head) + (size >> 20 << 20)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(data), usize, len(name), 0) + name
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(data), usize,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return base64.b64encode(local + data + central + end).decode()


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def session_cases(session: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """id -> (crafted session, a word its one line must hold)."""
    st = decode_state(read_episode(session).metadata["snapshot"])
    rows = len(read_episode(session))
    fifo = root / "fifo"
    os.mkfifo(fifo)
    meta_fifo = root / "meta_fifo_ck"  # a checkpoint folder whose worldgame.json is a FIFO, reached by a symlink
    meta_fifo.mkdir()
    os.mkfifo(meta_fifo / "worldgame.json")
    (root / "link_ck").symlink_to(meta_fifo)
    col = lambda value: np.full(rows, value, np.float32)
    cases = {
        # the findings
        "seed_abc": ({"meta": {"seed": "abc"}}, "seed"),
        "seed_1e40": ({"meta": {"seed": 10**40}}, "seed"),
        "threads_x": ({"meta": {"threads": "x"}}, "threads"),
        "snapshot_not_base64": ({"snapshot": "not base64 at all!"}, "base64"),
        "context_wrong_shape": ({"state": {"context": np.zeros((3, *st["context"].shape[1:]), np.float32)}}, "context"),
        "action_1e6": ({"state": {"actions": np.array([0, 10**6])}}, "actions"),
        "generator_3_bytes": ({"state": {"generator": np.zeros(3, np.uint8)}}, "generator"),
        "steps_99": ({"state": {"steps": 99}}, "steps"),
        "snapshot_inflates_to_4GiB": ({"snapshot": bomb_snapshot()}, "context"),
        "checkpoint_folder_holds_fifo_via_symlink": ({"meta": {"checkpoint": str(root / "link_ck")}}, "meta_fifo_ck"),
        # metadata: typed and ranged
        "seed_negative": ({"meta": {"seed": -1}}, "seed"),
        "seed_float": ({"meta": {"seed": 1.5}}, "seed"),
        "reset_index_list": ({"meta": {"reset_index": [1]}}, "reset_index"),
        "fusion_window_huge": ({"meta": {"fusion_window": 10**9}}, "fusion_window"),
        "fusion_base_nan": ({"meta": {"fusion_base": float("nan")}}, "fusion_base"),
        "threads_huge": ({"meta": {"threads": 10**6}}, "threads"),
        "backend_evil": ({"meta": {"backend": "evil"}}, "backend"),
        "device_list": ({"meta": {"device": ["cpu"]}}, "device"),
        "dtype_evil": ({"meta": {"dtype": "complex128"}}, "dtype"),
        "sampler_euler": ({"meta": {"sampler": "euler"}}, "sampler"),
        "spacing_huge": ({"meta": {"sampler": "ddim", "spacing": "x" * 100_000}}, "spacing"),
        "lcm_with_spacing": ({"meta": {"spacing": "leading"}}, "spacing"),
        "context_length_other": ({"meta": {"context_length": 7}}, "K="),
        "snapshot_json_number": ({"snapshot": 12345}, "base64"),
        # the checkpoint path: absolute, resolved, then the one loader's checks
        "checkpoint_relative": ({"meta": {"checkpoint": "checkpoints/bouncer"}}, "absolute"),
        "checkpoint_not_text": ({"meta": {"checkpoint": {"a": 1}}}, "checkpoint"),
        "checkpoint_is_a_fifo": ({"meta": {"checkpoint": str(fifo)}}, str(fifo)),
        "checkpoint_is_dev_zero": ({"meta": {"checkpoint": "/dev/zero"}}, "/dev/zero"),
        "checkpoint_from_the_environment": ({"meta": {"checkpoint": "${oc.env:HOME}"}}, "interpolation"),
        "seed_decoded_by_omegaconf": ({"meta": {"seed": "${oc.decode:'5'}"}}, "interpolation"),
        "checkpoint_nul_byte": ({"meta": {"checkpoint": "/tmp/a\x00b"}}, "checkpoint"),
        # per-frame columns the Driver is fed
        "column_lcm_steps_99": ({"columns": {"lcm_steps": col(99)}}, "lcm_steps"),
        "column_lcm_steps_nan": ({"columns": {"lcm_steps": col(np.nan)}}, "lcm_steps"),
        "column_lcm_steps_1e30": ({"columns": {"lcm_steps": col(1e30)}}, "lcm_steps"),
        "column_fusion_mode_7": ({"columns": {"fusion_mode": col(7)}}, "fusion_mode"),
        "column_event_9": ({"columns": {"event": col(9)}}, "event"),
        "column_context_noise_inf": ({"columns": {"context_noise": col(np.inf)}}, "context_noise"),
        # the snapshot's arrays and values
        "snapshot_base64_not_zip": ({"snapshot": "aGVsbG8gd29ybGQ="}, "npz"),
        "snapshot_lacks_generator": ({"drop": ("generator",)}, "generator"),
        "snapshot_extra_member": ({"state": {"evil": np.zeros(3)}}, "evil"),
        "snapshot_pickled_member": ({"snapshot": npz_bytes({"steps.npy": npy(np.array([object()] * 2), True)})}, "steps"),
        "context_nan": ({"state": {"context": np.full_like(st["context"], np.nan)}}, "NaN"),
        "context_int": ({"state": {"context": st["context"].astype(np.int32)}}, "context"),
        "recorded_on_cuda": ({"meta": {"device": "cuda:0"}, "state": {"generator": np.zeros(16, np.uint8)}}, "device=cuda"),
        "generator_garbage": ({"state": {"generator": np.full(st["generator"].shape, 7, np.uint8)}}, "generator"),
        "fusion_mode_evil": ({"state": {"fusion_mode": "evil"}}, "fusion_mode"),
        "fusion_ring_shape": ({"state": {"fusion_ring": np.zeros((5, 7), np.float32)}}, "fusion_ring"),
        "fusion_head_99": ({"state": {"fusion_head": 99}}, "fusion_head"),
        "ref_actions_99": ({"state": {"ref_actions": np.array([99], np.int8)}}, "ref_actions"),
        "ref_seed_negative": ({"state": {"ref_seed": -5}}, "ref_seed"),
    }
    return {name: (craft(session, root / f"{name}.wgep", **change), needle) for name, (change, needle) in cases.items()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hostile_sessions_and_exports_are_one_line(session: Path, tmp_path: Path) -> None:
    crafted = session_cases(session, tmp_path)
    regen = ["regenerate=true", "device=cpu", "progress=false"]
    # first, the recorded session itself: still regenerates (and pays for loading torch, once per driver:
    # the cases are dealt to two drivers side by side, the second warmed up by the same command line)
    cases = [(REAL, ["replay", f"path={session}", *regen]), (WARMUP, ["replay", f"path={session}", *regen])]
    cases += [(name, ["replay", f"path={path}", *regen]) for name, (path, _) in crafted.items()]
    # export: never onto its own input (by name, symlink or hard link) or a read-only file
    source = tmp_path / "input.gif"  # an episode file with a video name: export=its own path is a typo away
    shutil.copy(session, source)
    (tmp_path / "link.gif").symlink_to(source)
    os.link(source, tmp_path / "hard.gif")
    readonly = tmp_path / "readonly.gif"
    readonly.write_bytes(b"keep me")
    readonly.chmod(0o444)
    export = {
        "export_onto_its_input": ([f"path={source}", f"export={source}"], "input.gif"),
        "export_onto_a_symlink_to_its_input": ([f"path={source}", f"export={tmp_path / 'link.gif'}"], "link.gif"),
        "export_onto_a_hard_link_to_its_input": ([f"path={source}", f"export={tmp_path / 'hard.gif'}"], "hard.gif"),
        "export_onto_a_read_only_file": ([f"path={session}", f"export={readonly}"], "read-only"),
        "export_gif_at_fps_0.001": ([f"path={session}", f"export={tmp_path / 'slow.gif'}", "fps=0.001"], "fps"),
        "export_gif_at_fps_500": ([f"path={session}", f"export={tmp_path / 'fast.gif'}", "fps=500"], "fps"),
        "export_mp4_at_fps_1e-9": ([f"path={session}", f"export={tmp_path / 'slow.mp4'}", "fps=1e-9"], "fps"),
    }
    cases += [(name, ["replay", *args, "progress=false"]) for name, (args, _) in export.items()]
    existing = tmp_path / "existing.gif"  # an earlier video of another file is still replaced
    existing.write_bytes(b"an old video")
    cases.append((REPLACED, ["replay", f"path={session}", f"export={existing}", "progress=false"]))
    before = {p: sha(p) for p in (session, source, readonly)}

    results = run_driver(cases, tmp_path, timeout=600, workers=2)

    slow = {k: r["seconds"] for k, r in results.items()
            if k not in (REAL, WARMUP, "__peak_rss_mb__") and r["seconds"] > CASE_SECONDS}
    assert not slow, slow
    for warm in (REAL, WARMUP):
        assert results[warm]["rc"] == 0 and results[warm]["escaped"] is None, results[warm]
    assert results[REPLACED]["rc"] == 0 and existing.read_bytes()[:3] == b"GIF", results[REPLACED]
    assert results["__peak_rss_mb__"]["seconds"] < 2048  # no snapshot inflated (the driver's cap is 4 GiB)
    for name, needle in [*((n, w) for n, (_, w) in crafted.items()), *((n, w) for n, (_, w) in export.items())]:
        line = assert_one_line(results[name], needle=needle)
        assert "cannot be regenerated" in line or name.startswith("export") or "checkpoint" in line, (name, line)
    assert {p: sha(p) for p in before} == before  # nothing was overwritten
    assert not list(tmp_path.glob("slow.*")) + list(tmp_path.glob("fast.*"))


def test_a_session_whose_checkpoint_holds_a_fifo_part_does_not_hang(session: Path, tiny_checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    """The folder a session names is loaded by the one checkpoint loader; a FIFO among its parts is
    refused there, before any open (a hang fails the test at 15 s instead of hanging the suite)."""
    checkpoint = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (weights,) = (checkpoint / "vae").glob("*.safetensors")
    weights.unlink()
    os.mkfifo(weights)
    path = craft(session, tmp_path / "fifo_part.wgep", meta={"checkpoint": str(checkpoint)})
    r = cli("replay", f"path={path}", "regenerate=true", "device=cpu", timeout=15)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert json.dumps(str(checkpoint))[1:-1] in lines[0] or "FIFO" in lines[0], lines[0]


def test_regenerate_states_its_work_and_refuses_above_max_steps(session: Path, tmp_path: Path) -> None:
    """A session is a file from anywhere: it may ask 1,000 teacher steps on every row. regenerate
    counts the work (the rows' steps) before anything loads and refuses above ``max_steps`` in one
    line that says how to run it anyway (issue 33 item 3)."""
    rows = len(read_episode(session))
    heavy = craft(session, tmp_path / "heavy.wgep", meta={"sampler": "teacher"},
                  columns={"lcm_steps": np.full(rows, 1000, np.float32)})
    regen = ["regenerate=true", "device=cpu", "progress=false"]
    got = run_driver([("heavy", ["replay", f"path={heavy}", *regen, "max_steps=10000"]),
                      ("small_cap", ["replay", f"path={session}", *regen, "max_steps=1"])], tmp_path, timeout=120)
    line = assert_one_line(got["heavy"], needle=f"{(rows - 1) * 1000:,} network steps")
    assert f"pass max_steps={(rows - 1) * 1000}" in line and "up to 1000 steps each" in line
    assert got["heavy"]["seconds"] < CASE_SECONDS
    assert "pass max_steps=" in assert_one_line(got["small_cap"], needle="max_steps=1")
