"""Tabulate and plot `worldgame bench -m ...` / `worldgame eval -m ...` sweeps: quality against speed.

    worldgame bench -m 'steps=[1],[2],[4]' backend=torch,onnx         # one job at a time
    worldgame eval -m rollout_steps=1,2,4                              # jobs in parallel
    python tools/sweep_table.py multirun/<date>/<time> [MULTIRUN_DIR ...] [--out DIR] [--x PATH] [--y PATH]

Reads every ``result.json`` under the folders (each job of a sweep writes one: the command, the job's
overrides and what the command returned) and writes ``sweep.csv``, ``sweep.md`` and ``sweep.png`` into
``--out`` (default: the first folder). One row per bench result (one per step count) and one per eval
job; columns: the swept settings (from the jobs' overrides, with the sweep's ``multirun.yaml`` for the
values a job did not override), then metrics -- bench: fps, latency p50/p95 (ms), the backend that
ran; eval: teacher-forced psnr / fg_psnr at the job's rollout_steps, rollout psnr / fg_psnr and
objects alive (blobs, and orbs in the built-in game; dream and real) at the largest horizon.

The plot: with bench and eval rows, each bench row is joined to the eval rows of the same
configuration (checkpoint, fusion, fusion_window, fusion_base, device; bench steps = eval
rollout_steps) and drawn as one labelled point, x = speed (``--x``, default fps) and y = quality
(``--y``, default tf_fg_psnr). With one kind only: its metric (``--y``, default fps or tf_fg_psnr)
against the first swept setting (``--x``), one line per combination of the other swept settings.
``--x``/``--y`` name a column, or a dotted path into the row's JSON: a bench result item
(``stages_ms.denoise``) or an eval result (``teacher_forced.fg_psnr.2``, ``objects.blobs.dream.100``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

MAX_BYTES = 32 << 20  # a result.json or multirun.yaml larger than this is not a sweep's
KEY_ORDER = ("checkpoint", "steps", "rollout_steps", "fusion", "fusion_window", "fusion_base", "backend",
             "sampler", "context_noise", "device", "half", "threads")
JOIN_KEYS = ("checkpoint", "fusion", "fusion_window", "fusion_base", "device")
BENCH_METRICS = ("fps", "latency_p50_ms", "latency_p95_ms")
EVAL_METRICS = ("tf_psnr", "tf_fg_psnr", "rollout_psnr", "rollout_fg_psnr", "blobs_dream", "blobs_real",
                "orbs_dream", "orbs_real", "horizon")
HIDDEN = ("_raw", "_settings")


def warn(message: str) -> None:
    print(f"sweep_table: {message}", file=sys.stderr)


def read_text(path: Path) -> str | None:
    """The file's text, or None (announced in one line) when it is unreadable or too large."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES >> 20} MiB")
        return data.decode("utf-8")
    except (OSError, ValueError) as e:
        warn(f"skipping {path}: {getattr(e, 'strerror', None) or e}")
        return None


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` as hydra parses it (``fusion=off`` is the string "off", ``steps=[1]`` a list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        o = OverridesParser.create().parse_override(text)
        return o.key_or_group, o.value()
    except Exception:  # noqa: BLE001 -- hydra raises several types; keep the text as it is
        key, _, value = text.lstrip("+~").partition("=")
        return key, value


def sweep_defaults(job_dir: Path, cache: dict[Path, dict]) -> dict[str, Any]:
    """The top-level settings of the nearest ``multirun.yaml`` above a job (the values it did not override)."""
    for folder in (job_dir, *job_dir.parents):
        if folder in cache:
            return cache[folder]
        if (folder / "multirun.yaml").is_file():
            text, settings = read_text(folder / "multirun.yaml"), {}
            if text is not None:
                from omegaconf import OmegaConf

                try:
                    cfg = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
                    settings = {k: v for k, v in cfg.items() if k != "hydra" and not isinstance(v, dict)}
                except Exception as e:  # noqa: BLE001 -- a broken yaml only loses the defaults
                    warn(f"ignoring {folder / 'multirun.yaml'}: {str(e).splitlines()[0]}")
            cache[folder] = settings
            return settings
    return {}


def dig(obj: Any, path: str) -> Any:
    """``a.b.2`` into nested dicts and lists; None where it leads nowhere."""
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def last(by_key: Any) -> Any:
    """The value at the largest numeric key of ``{"1": .., "100": ..}`` (a by-horizon dict)."""
    if not isinstance(by_key, dict):
        return None
    keys = [k for k in by_key if str(k).isdigit()]
    return by_key[max(keys, key=int)] if keys else None


def eval_metrics(r: dict) -> dict[str, Any]:
    steps = str(dig(r, "rollout.steps"))
    horizons = [h for h in (dig(r, "objects.horizons") or []) if isinstance(h, int)]
    return {
        "tf_psnr": dig(r, f"teacher_forced.psnr.{steps}"),
        "tf_fg_psnr": dig(r, f"teacher_forced.fg_psnr.{steps}"),
        "rollout_psnr": last(dig(r, "rollout.psnr_by_horizon")),
        "rollout_fg_psnr": last(dig(r, "rollout.fg_psnr_by_horizon")),
        "blobs_dream": last(dig(r, "objects.blobs.dream")),
        "blobs_real": last(dig(r, "objects.blobs.real")),
        "orbs_dream": last(dig(r, "objects.bouncer.orbs.dream")),
        "orbs_real": last(dig(r, "objects.bouncer.orbs.real")),
        "horizon": max(horizons) if horizons else None,
    }


def load_rows(folders: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cache: dict[Path, dict] = {}
    for folder in folders:
        paths = sorted(folder.rglob("result.json"), key=lambda p: [int(s) if s.isdigit() else s for s in p.parts])
        if not paths:
            warn(f"no result.json under {folder}")
        for path in paths:
            text = read_text(path)
            try:
                record = json.loads(text) if text is not None else None
            except json.JSONDecodeError as e:
                warn(f"skipping {path}: not JSON ({e.msg} at line {e.lineno})")
                continue
            if record is None:
                continue
            command, result = record.get("command") if isinstance(record, dict) else None, None
            if command in ("bench", "eval") and isinstance(record.get("result"), dict):
                result = record["result"]
            if result is None:
                warn(f"skipping {path}: not the result of a bench or eval job")
                continue
            given = dict(parse_override(o) for o in record.get("overrides") or [] if isinstance(o, str))
            settings = {**sweep_defaults(path.parent, cache), **given}
            job = {"kind": command, "job": str(path.parent), "_given": set(given), "_settings": settings}
            if command == "eval":
                settings.setdefault("rollout_steps", dig(result, "rollout.steps"))
                rows.append({**job, **eval_metrics(result), "_raw": result})
                continue
            for item in result.get("results") or []:
                if isinstance(item, dict):
                    raw = {"device": result.get("device"), "threads": result.get("threads"), **item}
                    metrics = {"fps": item.get("fps"), "latency_p50_ms": dig(item, "latency_ms.p50"),
                               "latency_p95_ms": dig(item, "latency_ms.p95")}
                    each = {**settings, "steps": item.get("steps"), "backend": item.get("backend")}
                    rows.append({**job, "_settings": each, **metrics, "_raw": raw})
    return rows


def same(key: str, value: Any) -> str:
    """A setting's value as compared and shown: checkpoint paths normalised, lists as JSON."""
    if value is None:
        return ""
    if key == "checkpoint":
        return os.path.normpath(str(value))
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def setting_columns(rows: list[dict]) -> list[str]:
    """The overridden settings that vary between rows of one kind, and the usual ones (KEY_ORDER) when given."""
    given = set().union(*(r["_given"] for r in rows))
    if any(r["kind"] == "bench" for r in rows):
        given |= {"steps", "backend"}  # per bench result: the step count and the backend that ran
    varying = {k for kind in {r["kind"] for r in rows} for k in given
               if len({same(k, r["_settings"].get(k)) for r in rows if r["kind"] == kind}) > 1}
    keep = [k for k in given if k in KEY_ORDER or k in varying]
    return sorted(keep, key=lambda k: (KEY_ORDER.index(k) if k in KEY_ORDER else len(KEY_ORDER), k))


def table(rows: list[dict]) -> tuple[list[str], list[dict[str, Any]]]:
    kinds = {r["kind"] for r in rows}
    metrics = [m for kind, ms in (("bench", BENCH_METRICS), ("eval", EVAL_METRICS)) if kind in kinds for m in ms]
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    names = {k: f"{k}_setting" if k in (*BENCH_METRICS, *EVAL_METRICS) else k for k in setting_columns(rows)}
    for r in rows:
        r.update({name: same(k, r["_settings"].get(k)) for k, name in names.items()})

    def order(r: dict) -> tuple:
        return (r["kind"], *[(0, float(v), "") if number(v) else (1, 0.0, str(v)) for v in (r[k] for k in names.values())],
                r["job"])

    return ["kind", *names.values(), *metrics, "job"], sorted(rows, key=order)


def number(v: Any) -> bool:
    if isinstance(v, bool) or v is None or v == "":
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows([["" if r.get(c) is None else r.get(c) for c in columns] for r in rows])


def write_md(path: Path, columns: list[str], rows: list[dict]) -> None:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def value(row: dict, path: str) -> Any:
    """A column of the row, a setting, or a dotted path into its JSON."""
    if path in row and path not in HIDDEN:
        return row[path]
    if path in row["_settings"]:
        return row["_settings"][path]
    return dig(row["_raw"], path)


def joined(rows: list[dict]) -> list[tuple[dict, dict]]:
    bench = [r for r in rows if r["kind"] == "bench"]
    evals = [r for r in rows if r["kind"] == "eval"]

    def match(b: dict, e: dict) -> bool:
        sb, se = b["_settings"], e["_settings"]
        if same("steps", sb.get("steps")) != same("rollout_steps", se.get("rollout_steps")):
            return False
        return all(same(k, sb[k]) == same(k, se[k]) for k in JOIN_KEYS if k in sb and k in se)

    return [(b, e) for b in bench for e in evals if match(b, e)]


def label(settings: dict, keys: list[str]) -> str:
    return " ".join(f"{k}={Path(str(settings.get(k))).name if k == 'checkpoint' else same(k, settings.get(k))}"
                    for k in keys)


def plot(path: Path, rows: list[dict], x: str | None, y: str | None) -> str:
    """Draw sweep.png; returns what it shows, in one line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = setting_columns(rows)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    kinds = {r["kind"] for r in rows}
    if kinds == {"bench", "eval"}:
        x, y = x or "fps", y or "tf_fg_psnr"
        points = []
        for b, e in joined(rows):
            xv = next((v for v in (value(b, x), value(e, x)) if v is not None), None)
            yv = next((v for v in (value(e, y), value(b, y)) if v is not None), None)
            if number(xv) and number(yv):
                points.append((float(xv), float(yv), {**e["_settings"], **b["_settings"]}, b["job"]))
        shown = [k for k in keys if k != "rollout_steps" and len({same(k, s.get(k)) for *_, s, _ in points}) > 1]
        labels = [label(settings, shown) for *_, settings, _ in points]
        for (xv, yv, _, job), text in zip(points, labels):
            text += f" ({job})" if labels.count(text) > 1 else ""  # the same configuration in two sweeps
            ax.plot(xv, yv, "o", color="tab:blue")
            ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(5, 4), fontsize=8)
        what = f"{y} against {x}: {len(points)} configurations (bench joined with eval)"
        if not points:
            ax.text(0.5, 0.5, "no bench row matches an eval row\n(checkpoint, fusion, steps = rollout_steps)",
                    ha="center", va="center", transform=ax.transAxes)
    else:
        (kind,) = kinds
        varying = [k for k in keys if len({same(k, r["_settings"].get(k)) for r in rows}) > 1]
        y = y or ("fps" if kind == "bench" else "tf_fg_psnr")
        x = x or next((k for k in ("steps", "rollout_steps") if k in varying), varying[0] if varying else "job")
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(label(r["_settings"], [k for k in varying if k != x]), []).append(r)
        categorical = not all(number(value(r, x)) for r in rows)
        ticks = sorted({str(value(r, x)) for r in rows}) if categorical else []
        for name, members in groups.items():
            xs = [ticks.index(str(value(r, x))) if categorical else float(value(r, x)) for r in members]
            ys = [float(value(r, y)) if number(value(r, y)) else math.nan for r in members]
            xs, ys = zip(*sorted(zip(xs, ys)))
            ax.plot(xs, ys, "o-", label=name or None)
        if categorical:
            ax.set_xticks(range(len(ticks)), ticks, rotation=20, ha="right", fontsize=8)
        if len(groups) > 1:
            ax.legend(fontsize=8)
        what = f"{kind}: {y} against {x}, {len(rows)} rows"
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} against {x}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="MULTIRUN_DIR")
    parser.add_argument("--out", type=Path, help="where sweep.csv/.md/.png go (default: the first folder)")
    parser.add_argument("--x", help="the plot's x: a column or dotted JSON path (default fps, or the swept setting)")
    parser.add_argument("--y", help="the plot's y: a column or dotted JSON path (default tf_fg_psnr, or fps)")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not folder.is_dir():
            warn(f"{folder}: no such folder")
            return 2
    rows = load_rows(args.folders)
    if not rows:
        warn("no bench or eval results found (sweeps write <job>/result.json: `worldgame bench -m ...`)")
        return 1
    columns, rows = table(rows)
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sweep.csv", columns, rows)
    write_md(out / "sweep.md", columns, rows)
    print((out / "sweep.md").read_text(), end="")
    try:
        what = plot(out / "sweep.png", rows, args.x, args.y)
    except ImportError:
        warn("the plot needs matplotlib: pip install -e '.[sweep]'")
        return 1
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}, {out / 'sweep.png'} ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
