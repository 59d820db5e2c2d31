"""`worldgame <command> [key=value ...]`: one hydra app per command, configs in conf/<command>.yaml."""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worldgame.errors import WorldgameError

COMMANDS = {
    "play": ("worldgame.commands.play", "open the game window (neural by default, engine=real for the real game)"),
    "collect": ("worldgame.data.collect", "write episodes of a game played by a policy"),
    "train": ("worldgame.train.loop", "train stage=vae|teacher|distill|rollout|all on collected episodes"),
    "eval": ("worldgame.eval.evaluate", "measure a checkpoint's quality; prints one JSON line"),
    "bench": ("worldgame.commands.bench", "measure play speed headless; prints one JSON line"),
    "replay": ("worldgame.commands.replay", "play back or export an episode or session"),
    "serve": ("worldgame.commands.serve", "serve the game as a web page (one dream per player)"),
    "export-web": ("worldgame.commands.export_web", "write a static web page that plays the dream in the browser"),
}
# -m sweeps run on hydra's joblib launcher (conf/base.yaml), each job with one torch thread (threads=0).
# These commands' sweeps run one job at a time: parallel jobs would distort the speed they measure.
SERIAL_SWEEPS = {"bench"}
# In a -m sweep these commands' out=null becomes the job's own folder (the default is shared by every job).
OWN_OUT = {"eval"}
# the setting a bare first argument (no '=') stands for: `worldgame replay sessions/x.wgep`
POSITIONAL = {"replay": "path"}
USAGE = "usage: worldgame <command> [key=value ...] [-m]\n       worldgame --version\n\ncommands:\n" + "\n".join(
    f"  {name:<10} {doc}" for name, (_, doc) in COMMANDS.items()
) + "\n\nShow a command's settings: worldgame <command> --cfg job"


def _quoted(value: str) -> str:
    """``value`` as one hydra override value: plain when the grammar takes it as is, else single-quoted."""
    import re

    if re.fullmatch(r"[A-Za-z0-9_./\-]+", value):
        return value
    # hydra's quoted strings: backslashes before a quote or the end are doubled, a quote escaped,
    # and ${ escaped so a file name is never read as an interpolation
    value = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return "'" + value.replace("${", "\\${") + "'"


def version() -> str:
    """The installed distribution's version, or the package's own in a bare source tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("worldgame")
    except PackageNotFoundError:
        from worldgame import __version__

        return __version__


def _one_line(e: BaseException) -> str:
    parts = []
    while e is not None and len(parts) < 3:
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        text = text.split(" Config search path")[0].split(" full_key:")[0]
        if text and text not in parts:
            parts.append(text)
        e = e.__cause__
    return ": ".join(parts) or type(e).__name__


def _suggest(message: str, cfg_keys: list[str]) -> str:
    """Turn hydra's 'Key 'x' is not in struct' advice (which suggests +x=...) into a did-you-mean."""
    import difflib
    import re

    match = re.search(r"Could not override '([^']+)'", message)
    if not match or not re.search(r"not in (struct|'\w+')", message):
        return message
    key = match.group(1)
    close = difflib.get_close_matches(key, cfg_keys, n=1)
    hint = f"; did you mean {close[0]}?" if close else "; `worldgame <command> --cfg job` lists the settings"
    return f"unknown setting {key!r}{hint}"


def _keys(command: str) -> list[str]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from worldgame.settings import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
        cfg = OmegaConf.to_container(compose(config_name=command), resolve=False)
    flat: list[str] = []

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            flat.append(prefix + k)
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")

    walk(cfg, "")
    return flat


def _compose(command: str, overrides: list[str]) -> Any:
    """Compose once before hydra runs so a typo is one line, not hydra's multi-line report."""
    from hydra import compose, initialize_config_dir

    from worldgame.settings import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
        return compose(config_name=command, overrides=overrides, return_hydra_config=True)


def _bad_setting(command: str, message: str) -> None:
    print(f"worldgame {command}: bad setting: {message}", file=sys.stderr)
    sys.exit(2)


def _sweep_job() -> Any:
    """hydra's config of this job when it is one job of a ``-m`` sweep, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc if hc.mode == RunMode.MULTIRUN else None


def _jsonable(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy and torch scalars
    return item() if callable(item) else str(obj)


def _write_result(command: str, job: Any, result: Any) -> None:
    """``<job output dir>/result.json``: what one sweep job returned, with the overrides that made it
    (``tools/sweep_table.py`` tabulates a sweep folder of them)."""
    if os.environ.get("RANK", "0") != "0":  # a multi-process job (DDP): its process 0 writes
        return
    from worldgame.fileio import atomic_write

    record = {"command": command, "overrides": list(job.overrides.task), "result": result}
    path = Path(job.runtime.output_dir) / "result.json"
    try:
        atomic_write(path, json.dumps(record, indent=2, default=_jsonable))
    except OSError as e:
        raise WorldgameError(f"cannot write {path}: {e.strerror or e}") from e


def _task(command: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    from worldgame.schema import SettingError
    from worldgame.settings import validate

    def task(cfg: Any) -> Any:
        try:
            settings = validate(command, cfg)  # again here: each job of a -m sweep has its own settings
        except WorldgameError as e:
            _bad_setting(command, str(e))
        job = _sweep_job()
        if job is not None and command in OWN_OUT and settings.out is None:
            settings.out = str(job.runtime.output_dir)  # jobs of one sweep never share a report folder
        try:
            result = fn(settings)
            if job is not None:
                _write_result(command, job, result)
            return result
        except SettingError as e:  # a relation only checkable once the checkpoint is read (e.g. display_hz vs its tick rate)
            _bad_setting(command, str(e))
        except WorldgameError as e:
            print(f"worldgame {command}: error: {e}", file=sys.stderr)
            sys.exit(1)
        except OSError as e:  # what no check could foresee: a folder made read-only or a disk filled mid-run
            where = f"{e.filename}: " if e.filename else ""
            print(f"worldgame {command}: error: {where}{e.strerror or e}; check the path, its permissions and free space",
                  file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(f"worldgame {command}: interrupted", file=sys.stderr)
            sys.exit(130)

    return task


def _sweep_overrides(command: str, overrides: list[str]) -> list[str]:
    """A ``-m`` sweep of a command in SERIAL_SWEEPS runs one job at a time on the joblib launcher
    (conf/base.yaml) unless the command line picks the launcher or its ``n_jobs``."""
    if command not in SERIAL_SWEEPS or not {"-m", "--multirun"} & set(overrides):
        return overrides
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    if any(k in ("hydra/launcher", "hydra.launcher.n_jobs") for k in keys):
        return overrides
    return [*overrides, "hydra.launcher.n_jobs=1"]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if argv else 2)
    if argv[0] in ("-V", "--version"):
        print(f"worldgame {version()}")
        sys.exit(0)
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"worldgame: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    if command in POSITIONAL and overrides and "=" not in overrides[0] and not overrides[0].startswith("-"):
        overrides[0] = f"{POSITIONAL[command]}={_quoted(overrides[0])}"  # `worldgame replay x.wgep` as users type it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from checkpoints/, never a hub
    warnings.filterwarnings("ignore", category=FutureWarning)
    from worldgame.settings import check_overrides, config_dir, validate  # registers the ConfigStore schemas

    try:
        check_overrides(command, overrides)  # a value of the wrong type: our line, which names the setting
    except WorldgameError as e:
        _bad_setting(command, str(e))
    except Exception:  # noqa: BLE001, S110 -- hydra's parser refuses the line itself; compose below says why
        pass
    plain = [o for o in overrides if not o.startswith("-")]
    if len(plain) == len(overrides):  # -m sweeps and --cfg/--help are checked by hydra itself
        try:
            cfg = _compose(command, plain)
        except Exception as e:  # noqa: BLE001 -- hydra raises several types; all mean a bad setting
            _bad_setting(command, _suggest(_one_line(e), _keys(command)))
        try:
            validate(command, cfg)  # ranges, choices and relations, before any work or heavy import
        except WorldgameError as e:
            _bad_setting(command, str(e))
    import hydra

    module = importlib.import_module(COMMANDS[command][0])
    app = hydra.main(config_path=str(config_dir()), config_name=command, version_base="1.3")(
        _task(command, module.run)
    )
    sys.argv = [f"worldgame {command}", *_sweep_overrides(command, overrides), f"hydra.job.name={command}"]
    app()


if __name__ == "__main__":
    main()
