"""Write a trained run folder as a shipped checkpoint: fp16 weights, no resumable state or latents.

    python tools/ship_checkpoint.py SRC DST ['{"note": "..."}']
    python tools/ship_checkpoint.py SRC DST --parts events,agent

A full ship replaces DST's vae, denoiser, teacher, scheduler, chance and worldgame.json with SRC's
and drops DST's eval/ folder, whose figures belong to the old weights: run `worldgame eval
checkpoint=DST out=DST/eval` afterwards. DST's events/ and agent/ stay when SRC has none of its own
(they must still fit the new model); anything else in DST stays as it was. DST may be new, or SRC
itself (a re-ship in place). The optional JSON object is merged into worldgame.json as provenance:
only the keys ``data``, ``note``, ``play``, ``recipe`` and ``training_minutes``, plain JSON values.

``--parts`` ships only the named optional parts (events, agent) of SRC into the existing checkpoint
DST, with their training records, and keeps DST's other parts (SRC must have been trained on them).

Nothing is touched until every argument has been checked; the new checkpoint is written into a
temporary folder beside DST, loaded back with every check a user's load makes, and only then
swapped in. On any failure DST is left exactly as it was, and every misuse ends in one line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from worldgame.errors import WorldgameError, shorten

USAGE = "usage: ship_checkpoint.py SRC DST ['{\"note\": \"...\"}'] | SRC DST --parts events,agent"
PARTS = ("events", "agent")  # the optional parts --parts ships, and a full ship keeps when SRC has none
REPLACED = ("vae", "denoiser", "teacher", "scheduler", "chance", "worldgame.json")  # a full ship's own
DROPPED = ("eval",)  # figures of the old weights
# provenance a note may add to worldgame.json (as the shipped checkpoints hold it); never the game's
# facts (game, frame_size, game_config, action_names, key_bindings, ...), which come from training
NOTE_KEYS = ("data", "note", "play", "recipe", "training_minutes")
MAX_NOTES_BYTES = 64 << 10
MAX_NOTES_DEPTH = 8
MAX_NOTES_ITEMS = 4096


class Refused(Exception):
    """A misuse found before anything was written: its message is the one line to print."""


def fail(message: str) -> NoReturn:
    sys.exit("ship_checkpoint: " + " ".join(str(message).split()))  # one line, whatever the paths hold


# --- arguments ---------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> tuple[str, str, str | None, list[str] | None]:
    """(SRC, DST, NOTES_JSON or None, parts or None) from the command line; Refused otherwise."""
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        sys.exit(0)
    positional: list[str] = []
    parts_arg: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--parts" or arg.startswith("--parts="):
            if parts_arg is not None:
                raise Refused(f"--parts is given twice; name the parts once, e.g. --parts events,agent ({USAGE})")
            if arg == "--parts":
                if i + 1 >= len(argv):
                    raise Refused(f"--parts needs a list of parts, e.g. --parts events,agent ({USAGE})")
                i += 1
                parts_arg = argv[i]
            else:
                parts_arg = arg.split("=", 1)[1]
        elif arg.startswith("-") and len(arg) > 1:
            raise Refused(f"unknown option {shorten(arg, 40)!r}; {USAGE}")
        else:
            positional.append(arg)
        i += 1
    if len(positional) < 2:
        raise Refused(f"give the run folder SRC and the checkpoint folder DST; {USAGE}")
    if parts_arg is not None and len(positional) > 2:
        raise Refused("--parts ships parts with their own training records and takes no notes; "
                      f"ship the parts, then re-ship DST in place with the notes ({USAGE})")
    if len(positional) > 3:
        raise Refused(f"too many arguments ({len(positional)}); quote the notes as one JSON argument; {USAGE}")
    parts = None
    if parts_arg is not None:
        parts = list(dict.fromkeys(p.strip() for p in parts_arg.split(",")))
        bad = [p for p in parts if p not in PARTS]
        if not parts or bad:
            raise Refused(f"--parts {shorten(parts_arg, 40)!r} names {', '.join(map(repr, bad)) or 'nothing'}, "
                          f"not parts to ship; name some of {', '.join(PARTS)}, e.g. --parts events,agent")
    src, dst = positional[0], positional[1]
    if not src or not dst:
        raise Refused(f"SRC and DST must be folder paths, not empty; {USAGE}")
    return src, dst, positional[2] if len(positional) > 2 else None, parts


# --- notes -------------------------------------------------------------------------------------

def parse_notes(text: str) -> dict[str, Any]:
    """The provenance notes: a bounded, plain JSON object with only NOTE_KEYS; Refused otherwise."""
    hint = f"give a JSON object of provenance, e.g. '{{\"note\": \"...\"}}' (keys: {', '.join(NOTE_KEYS)})"
    if len(text.encode("utf-8", "surrogatepass")) > MAX_NOTES_BYTES:
        raise Refused(f"the notes are over {MAX_NOTES_BYTES // 1024} KiB; {hint}")

    def no_constants(name: str) -> NoReturn:
        raise ValueError(f"{name} is not plain JSON")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                raise ValueError(f"the key {shorten(key, 40)!r} is given twice")
            obj[key] = value
        return obj

    try:
        notes = json.loads(text, parse_constant=no_constants, object_pairs_hook=pairs)
    except RecursionError:
        raise Refused(f"the notes are nested too deeply; {hint}") from None
    except ValueError as e:
        raise Refused(f"the notes are not valid JSON ({shorten(str(e).splitlines()[0] if str(e) else e, 80)}); "
                      f"{hint}") from None
    if not isinstance(notes, dict):
        raise Refused(f"the notes are a JSON {type(notes).__name__}, not an object; {hint}")
    for key in notes:
        if key not in NOTE_KEYS:
            raise Refused(f"the notes may not set {shorten(key, 40)!r}: only provenance ({', '.join(NOTE_KEYS)}); "
                          "the game's facts come from SRC's training, retrain to change them")
    count = 0

    def check(value: Any, where: str, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > MAX_NOTES_DEPTH or count > MAX_NOTES_ITEMS:
            raise Refused(f"the notes are too deep or too large (at most {MAX_NOTES_DEPTH} levels, "
                          f"{MAX_NOTES_ITEMS} values); {hint}")
        if isinstance(value, dict):
            for k, v in value.items():
                if k.startswith("_"):  # _target_, _args_, _partial_: hydra's instantiate keys, never data
                    raise Refused(f"the notes hold the key {shorten(k, 40)!r} at {shorten(where, 60)}: keys starting "
                                  f"with '_' are not provenance; {hint}")
                check(v, f"{where}.{k}", depth + 1)
        elif isinstance(value, list):
            for n, v in enumerate(value):
                check(v, f"{where}[{n}]", depth + 1)
        elif isinstance(value, float) and not math.isfinite(value):
            raise Refused(f"the notes hold {value} at {shorten(where, 60)}, not a finite number; {hint}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2 ** 53:
            raise Refused(f"the notes hold a number too large at {shorten(where, 60)}; {hint}")

    for key, value in notes.items():
        check(value, key, 1)
    if "play" in notes:
        from worldgame.models.checkpoint_checks import play_default_ok  # the loader's own check

        if not play_default_ok(notes["play"]):
            raise Refused(f"the notes' play is {shorten(json.dumps(notes['play']), 80)}, not {{\"sampler\": "
                          "lcm|ddim|dpmsolver, \"spacing\": leading|trailing|linspace|null, \"steps\": 1|2|4|8, \"chosen_by\": \"...\"} "
                          "(lcm takes no spacing); fix or leave out play")
    return notes


# --- folders -----------------------------------------------------------------------------------

def check_folders(src_arg: str, dst_arg: str, parts: list[str] | None) -> tuple[Path, Path]:
    """SRC as given and DST absolute, symlinks followed; Refused where they cannot be shipped."""
    # SRC as given: the parts' config.json record the path they were loaded from (_name_or_path)
    src, dst = Path(src_arg), Path(dst_arg).resolve()
    if not src.exists():
        raise Refused(f"SRC {src_arg} does not exist; give the run folder `worldgame train out=` wrote")
    if not src.is_dir():
        raise Refused(f"SRC {src_arg} is not a folder; give the run folder `worldgame train out=` wrote")
    if not (src / "worldgame.json").is_file():
        raise Refused(f"SRC {src_arg} has no worldgame.json; give the run folder `worldgame train out=` wrote")
    if dst.parent == dst:
        raise Refused(f"DST {dst_arg} is the root folder; give the checkpoint folder to write, e.g. checkpoints/<game>")
    if dst.exists() and not dst.is_dir():
        raise Refused(f"DST {dst_arg} is a file, not a folder; give the checkpoint folder to write "
                      "(a new one, or an existing checkpoint)")
    if dst.is_dir() and not (dst / "worldgame.json").is_file():
        if parts is not None:
            raise Refused(f"DST {dst_arg} is not a checkpoint (no worldgame.json); --parts ships into an existing "
                          "checkpoint: ship SRC in full instead")
        with os.scandir(dst) as entries:
            if next(entries, None) is not None:
                raise Refused(f"DST {dst_arg} is a folder that is not a checkpoint (no worldgame.json) and not empty; "
                              "give a new folder or an existing checkpoint")
    if parts is not None and not dst.exists():
        raise Refused(f"DST {dst_arg} does not exist; --parts ships into an existing checkpoint: ship SRC in full instead")
    if dst.parent.exists() and not dst.parent.is_dir():
        raise Refused(f"DST {dst_arg}: {dst.parent} is a file, not a folder; give a checkpoint folder path")
    return src, dst


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (the folder is beside the original: instant, no disk) or else a plain copy."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        if not stat.S_ISREG(os.lstat(src).st_mode):
            raise
        shutil.copy2(src, dst)


def carry(entry: Path, into: Path) -> None:
    """Copy one entry of DST into the new folder as it is (symlinks stay symlinks)."""
    target = into / entry.name
    if entry.is_symlink():
        os.symlink(os.readlink(entry), target)
    elif entry.is_dir():
        shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(entry), str(target))


def old_training_records(dst: Path, parts: list[str]) -> dict[str, Any]:
    """DST's training records of the parts kept from it (empty where unreadable: records only)."""
    from worldgame.fileio import read_json_object
    from worldgame.models.checkpoint_checks import MAX_JSON_BYTES

    try:
        meta = read_json_object(dst / "worldgame.json", MAX_JSON_BYTES, f"checkpoint {dst}", "")
    except WorldgameError:
        return {}
    training = meta.get("training")
    return {p: training[p] for p in parts if isinstance(training, dict) and isinstance(training.get(p), dict)}


@contextlib.contextmanager
def staging(dst: Path):
    """An empty temporary folder beside DST, removed on the way out unless it became DST."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.shipping-{os.getpid()}-", dir=dst.parent))
    try:
        mode = stat.S_IMODE(dst.stat().st_mode) if dst.is_dir() else 0o777 & ~_umask()
        tmp.chmod(mode)
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def swap_in(tmp: Path, dst: Path) -> None:
    """Put the checked folder ``tmp`` in DST's place: DST -> backup, tmp -> DST, backup removed.
    If the second rename fails, the backup goes back to DST."""
    if not dst.exists():
        os.rename(tmp, dst)
        return
    backup = tmp.with_name(tmp.name.replace(".shipping-", ".replaced-", 1))
    os.rename(dst, backup)
    try:
        os.rename(tmp, dst)
    except BaseException:
        os.rename(backup, dst)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def load_back(tmp: Path, shown: str) -> Any:
    """The written folder loaded with every check a user's load makes (teacher included)."""
    from worldgame.models import WorldModel

    try:
        return WorldModel.from_pretrained(tmp, device="cpu", teacher=True)
    except WorldgameError as e:
        raise WorldgameError(str(e).replace(str(tmp), shown)) from e


# --- the two ships -----------------------------------------------------------------------------

def ship_full(src: Path, dst: Path, notes: dict[str, Any], src_arg: str, dst_arg: str) -> None:
    """SRC's model in fp16 as DST; DST's events/agent kept where SRC has none, eval/ dropped."""
    from worldgame.models import WorldModel

    model = WorldModel.from_pretrained(src, device="cpu", teacher=True)
    kept = [p for p in PARTS if getattr(model, p) is None and (dst / p).is_dir()]
    records = old_training_records(dst, kept) if kept else {}
    if records:
        training = model.metadata.setdefault("training", {})
        if isinstance(training, dict):
            for part, record in records.items():
                training.setdefault(part, record)
    model.metadata.update(notes)
    extras = [e for e in sorted(dst.iterdir()) if e.name not in (*REPLACED, *PARTS, *DROPPED)] if dst.is_dir() else []
    with staging(dst) as tmp:
        model.save_pretrained(tmp, half=True)
        for entry in [dst / p for p in kept] + extras:
            carry(entry, tmp)
        try:
            load_back(tmp, dst_arg)
        except WorldgameError as e:
            if not kept:
                raise
            for p in kept:
                shutil.rmtree(tmp / p)
            load_back(tmp, dst_arg)  # the new model alone loads: the kept parts are what does not fit
            names = " and ".join(f"{p}/" for p in kept)
            raise WorldgameError(f"DST {dst_arg}'s {names} (kept, as SRC {src_arg} has none) do not fit SRC's model "
                                 f"({e}); retrain {names} on SRC and ship with them, or ship into a new folder") from e
        swap_in(tmp, dst)
    kept_note = f"; kept its {', '.join(kept)}" if kept else ""
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"wrote {dst_arg} ({size / 1e6:.1f} MB){kept_note}:", sorted(x.name for x in dst.iterdir()))
    print(f"run `worldgame eval checkpoint={dst_arg} out={dst_arg}/eval` for its figures")


def ship_parts(src: Path, dst: Path, parts: list[str], src_arg: str, dst_arg: str) -> None:
    """SRC's optional parts (fp16) and their training records into the checkpoint DST."""
    from worldgame.models import WorldModel

    model = WorldModel.from_pretrained(dst_arg, device="cpu", teacher=True)
    donor = WorldModel.from_pretrained(src, device="cpu")
    for part in parts:
        if getattr(donor, part) is None:
            raise Refused(f"--parts: SRC {src_arg} has no {part}/ part to ship; train it first "
                          f"(parts SRC has: {', '.join(p for p in PARTS if getattr(donor, p) is not None) or 'none'})")
        setattr(model, part, getattr(donor, part))
        record = (donor.metadata.get("training") or {}).get(part)
        training = model.metadata.setdefault("training", {})
        if isinstance(training, dict):
            training[part] = record
    owned = (*REPLACED, *PARTS, *DROPPED)
    extras = [e for e in sorted(dst.iterdir()) if e.name not in owned]
    with staging(dst) as tmp:
        model.save_pretrained(tmp, half=True)
        for entry in extras:
            carry(entry, tmp)
        try:
            load_back(tmp, dst_arg)
        except WorldgameError as e:
            raise WorldgameError(f"SRC {src_arg}'s {', '.join(parts)} do not fit DST {dst_arg}'s model ({e}); "
                                 "train them on DST's autoencoder and denoisers, then ship them") from e
        swap_in(tmp, dst)
    print(f"shipped {', '.join(parts)} of {src_arg} into {dst_arg}; "
          f"run `worldgame eval checkpoint={dst_arg} out={dst_arg}/eval`")


def main(argv: list[str] | None = None) -> None:
    try:
        src_arg, dst_arg, notes_text, parts = parse_args(sys.argv[1:] if argv is None else argv)
        notes = parse_notes(notes_text) if notes_text is not None else {}
        src, dst = check_folders(src_arg, dst_arg, parts)
        if parts is not None:
            ship_parts(src, dst, parts, src_arg, dst_arg)
        else:
            ship_full(src, dst, notes, src_arg, dst_arg)
    except (Refused, WorldgameError) as e:
        fail(str(e))
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        fail(f"cannot ship into {dst_arg} ({e.strerror or e}{where}); DST is as it was: check the folders are "
             "readable, DST's folder is writable and the disk has room")
    except KeyboardInterrupt:
        fail("interrupted; DST is as it was")


if __name__ == "__main__":
    main()
