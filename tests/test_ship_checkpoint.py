"""tools/ship_checkpoint.py (issue 33 item 1): a ship checks everything before it touches DST.

Misuse (bad notes, notes that would change the game's facts or carry a ``_target_``, no
arguments, a file as DST) ends in one line and leaves every byte of DST as it was; a ship is
written beside DST, loaded back with the loader's checks and only then swapped in. The command
lines run through the real script on a copy of the shipped bouncer checkpoint; the two cases that
need a crafted model (a kept part that fits, one that does not) call its ``main`` in this process,
so torch loads once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "ship_checkpoint.py"
BOUNCER = REPO / "checkpoints" / "bouncer"


def ship(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (and the folder's own entries), by relative path, with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def leftovers(folder: Path) -> list[str]:
    """Temporary or backup folders a ship left beside ``folder``."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ship_checkpoint: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A copy of the shipped bouncer checkpoint as SRC, shipped once into a new folder."""
    root = tmp_path_factory.mktemp("ship")
    src, dst = root / "src", root / "new" / "bouncer"
    shutil.copytree(BOUNCER, src)
    before = hashes(src)
    proc = ship(src, dst, '{"note": "x", "training_minutes": {"total_wall": 1.5}}')
    return src, dst, before, proc


@pytest.fixture
def victim(tmp_path):
    """A checkpoint folder that a refused ship must leave byte for byte as it was."""
    folder = tmp_path / "X"
    shutil.copytree(BOUNCER, folder)
    return folder, hashes(folder)


@pytest.mark.parametrize("notes, says", [
    ("[1,2]", "a JSON list, not an object"),
    ('{"frame_size": 9999}', "may not set 'frame_size'"),
    ('{"game_config": {"frame_size": 32}}', "may not set 'game_config'"),
    ('{"_target_": "builtins.exec"}', "may not set '_target_'"),
    ('{"note": {"deep": [{"_target_": "builtins.exec"}]}}', "'_target_'"),
    ('{"note": "x"', "not valid JSON"),
    ('{"note": NaN}', "not valid JSON"),
    ('{"note": 1, "note": 2}', "given twice"),
    ('{"note": "' + "x" * (65 << 10) + '"}', "over 64 KiB"),
    ('{"note": ' + "[" * 50 + "]" * 50 + "}", "too deep"),
])
def test_bad_notes_refused_in_place(victim, notes, says):
    """The issue's case first: `X X '[1,2]'` used to delete X's parts, then die on the notes."""
    folder, before = victim
    line = one_line(ship(folder, folder, notes))
    assert says in line
    assert hashes(folder) == before and not leftovers(folder)


@pytest.mark.parametrize("args, says", [
    ((), "give the run folder SRC and the checkpoint folder DST"),
    (("only-src",), "give the run folder SRC and the checkpoint folder DST"),
    (("{src}", "{dst}", "--bogus"), "unknown option '--bogus'"),
    (("{src}", "{dst}", '{"note": "a"}', "extra"), "too many arguments"),
    (("{src}", "{dst}", "--parts", "weights"), "'weights', not parts to ship"),
    (("{src}", "{dst}", "--parts"), "--parts needs a list of parts"),
    (("{src}", "{file}"), "is a file, not a folder"),
    (("{src}", "{file}", '{"note": "x"}'), "is a file, not a folder"),
    (("{tmp}/missing", "{dst}"), "does not exist"),
    (("{file}", "{dst}"), "is not a folder"),
    (("{src}", "{tmp}/not-a-checkpoint"), "not a checkpoint (no worldgame.json) and not empty"),
    (("{src}", "{tmp}/new", "--parts", "events"), "--parts ships into an existing checkpoint"),
])
def test_misuse_is_one_line(victim, tmp_path, args, says):
    folder, before = victim
    (tmp_path / "file").write_text("not a checkpoint")
    (tmp_path / "not-a-checkpoint").mkdir()
    (tmp_path / "not-a-checkpoint" / "notes.txt").write_text("mine")
    names = {"{src}": folder, "{dst}": folder, "{file}": tmp_path / "file", "{tmp}": tmp_path}

    def fill(arg: str) -> str:
        for name, path in names.items():
            arg = arg.replace(name, str(path))
        return arg

    line = one_line(ship(*map(fill, args)))
    assert says in line, line
    assert hashes(folder) == before and not leftovers(folder)
    assert (tmp_path / "file").read_text() == "not a checkpoint"
    assert (tmp_path / "not-a-checkpoint" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "new").exists()


def test_ship_into_new_folder(shipped):
    from worldgame.models import WorldModel

    src, dst, before, proc = shipped
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and "wrote" in proc.stdout
    assert hashes(src) == before  # SRC is only read
    assert not leftovers(dst)
    assert sorted(p.name for p in dst.iterdir()) == ["agent", "denoiser", "events", "scheduler", "teacher", "vae",
                                                     "worldgame.json"]  # SRC's eval/ figures do not travel
    meta = json.loads((dst / "worldgame.json").read_text())
    assert meta["note"] == "x" and meta["training_minutes"] == {"total_wall": 1.5}
    assert meta["frame_size"] == 64 and meta["game"] == "bouncer"
    model = WorldModel.from_pretrained(dst, device="cpu")  # the tool loaded it back with its teacher already
    assert model.events is not None and model.agent is not None and (dst / "teacher" / "config.json").is_file()
    from safetensors import safe_open

    with safe_open(str(next((dst / "denoiser").glob("*.safetensors"))), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118 -- safe_open has no __iter__


def test_reship_in_place_keeps_parts(shipped, tmp_path):
    """SRC == DST with good notes: everything is read first, so a re-ship in place works; eval/
    goes, events/ and agent/ stay, and anything else in the folder stays as it was."""
    _, dst, _, proc = shipped
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "ckpt"
    shutil.copytree(dst, folder)
    (folder / "eval").mkdir()
    (folder / "eval" / "report.json").write_text("{}")
    (folder / "README.md").write_text("kept")
    weights = {p: hashes(folder / p) for p in ("events", "agent")}
    done = ship(folder, folder, '{"note": "y", "play": {"sampler": "ddim", "spacing": "trailing", "chosen_by": "t"}}')
    assert done.returncode == 0, done.stderr
    assert not leftovers(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "agent", "denoiser", "events", "scheduler",
                                                        "teacher", "vae", "worldgame.json"]
    for part, before in weights.items():  # fp16 in, fp16 out: the same weights
        after = hashes(folder / part)
        assert {k: v for k, v in after.items() if k.endswith(".safetensors")} == \
               {k: v for k, v in before.items() if k.endswith(".safetensors")}
    assert (folder / "README.md").read_text() == "kept"
    meta = json.loads((folder / "worldgame.json").read_text())
    assert meta["note"] == "y" and meta["play"]["sampler"] == "ddim" and meta["training_minutes"] == {"total_wall": 1.5}


# --- kept parts: a full ship keeps DST's events/ and agent/ when SRC has none --------------------

def _tool():
    spec = importlib.util.spec_from_file_location("ship_checkpoint_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        _tool().main([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bad_play_note_refused(tmp_path, capsys):
    """``play`` passes the loader's own check (LCM takes no spacing) before anything is written
    (in this process: the check loads torch, which the tests below load anyway)."""
    folder = tmp_path / "X"
    shutil.copytree(BOUNCER, folder)
    before = hashes(folder)
    code, out, err = _run([folder, folder, '{"play": {"sampler": "lcm", "spacing": "leading"}}'], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "play" in err and "lcm takes no spacing" in err
    assert hashes(folder) == before and not leftovers(folder)


def test_kept_parts_that_fit(tiny_checkpoint, tmp_path, capsys, torch_one_thread):
    """The tiny model (no events, no agent) shipped over a bouncer copy: its events/ and agent/
    fit the tiny model's actions and latents, so they stay (with their training records)."""
    from worldgame.models import WorldModel

    dst = tmp_path / "X"
    shutil.copytree(BOUNCER, dst)
    kept = {p: hashes(dst / p) for p in ("events", "agent")}
    code, out, err = _run([tiny_checkpoint, dst], capsys)
    assert code == 0, err
    assert "kept its events, agent" in out and not leftovers(dst)
    assert {p: hashes(dst / p) for p in kept} == kept and not (dst / "eval").exists()
    meta = json.loads((dst / "worldgame.json").read_text())
    assert set(meta["training"]) == {"events", "agent"} and meta["context_length"] == 2
    model = WorldModel.from_pretrained(dst, device="cpu", teacher=True)
    assert model.events is not None and model.agent is not None and model.teacher is None


def test_kept_parts_that_do_not_fit(tiny_checkpoint, tmp_path, capsys, torch_one_thread):
    """A model of 8 latent channels shipped over a bouncer copy: its kept events/ and agent/ read
    4 channels, the load-back check refuses in one line, and DST is left byte for byte."""
    import torch

    from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel

    base = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    torch.manual_seed(0)
    other = WorldModel(TinyAutoencoder(latent_channels=8, width=16, encoder_blocks=1, decoder_blocks=1),
                       ActionDenoiser(num_actions=len(base.action_names), context_length=2, latent_channels=8,
                                      block_out_channels=(16, 16), norm_num_groups=8),
                       metadata=dict(base.metadata))
    src = tmp_path / "src8"
    other.save_pretrained(src)
    dst = tmp_path / "X"
    shutil.copytree(BOUNCER, dst)
    before = hashes(dst)
    code, out, err = _run([src, dst, '{"note": "x"}'], capsys)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "events/ and agent/ (kept" in lines[0] and "retrain events/ and agent/" in lines[0]
    assert ".shipping-" not in lines[0]  # the message names DST, not the temporary folder
    assert hashes(dst) == before and not leftovers(dst)


def test_parts_ship_into_existing_checkpoint(tiny_checkpoint, tmp_path, capsys, torch_one_thread):
    """``--parts events`` moves SRC's event head into DST and keeps DST's other parts; naming a
    part SRC lacks is one line, and DST stays as it was."""
    import torch

    from worldgame.models import WorldModel
    from worldgame.models.events import EventHead

    base = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    torch.manual_seed(0)
    meta = {**base.metadata, "training": {"events": {"data": "data/tiny"}}}
    donor = WorldModel(base.vae, base.denoiser, meta, events=EventHead(num_actions=len(base.action_names)))
    src, dst = tmp_path / "run", tmp_path / "ckpt"
    donor.save_pretrained(src)
    shutil.copytree(tiny_checkpoint, dst)
    (dst / "eval").mkdir()
    before = hashes(dst)

    code, out, err = _run([src, dst, "--parts", "agent"], capsys)
    assert code == 1 and "has no agent/ part to ship" in err and len(err.strip().splitlines()) == 1
    assert hashes(dst) == before and not leftovers(dst)

    code, out, err = _run([src, dst, "--parts", "events"], capsys)
    assert code == 0, err
    assert "shipped events" in out and not leftovers(dst) and not (dst / "eval").exists()
    after = hashes(dst)
    assert {k: v for k, v in after.items() if k.startswith(("vae/", "denoiser/")) and k.endswith(".safetensors")} \
        == {k: v for k, v in before.items() if k.startswith(("vae/", "denoiser/")) and k.endswith(".safetensors")}
    shipped = WorldModel.from_pretrained(dst, device="cpu")
    assert shipped.events is not None and shipped.metadata["training"]["events"] == {"data": "data/tiny"}
