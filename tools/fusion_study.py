"""The φ-fusion study: does the display fusion help what a player sees? Regenerates docs/fusion.md
(a table per game) and docs/fusion.png in one command:

    python tools/fusion_study.py                       # both shipped checkpoints, ~7 min on 1 CPU thread
    python tools/fusion_study.py checkpoints/boxing --episodes 2 --frames 200   # quicker, one game

Per checkpoint the teacher-forced predictions of the held-out episodes are made once
(worldgame/eval/display.py), then every display setting is applied to them and measured: fusion
off; latent and pixel fusion; decay 0.5, φ⁻¹ and 0.8 (base 2, φ, 1.25); windows N = 2..6 (N past
frames fused with the current one, N + 1 in all, as conf/play.yaml's ``fusion_window``). A short
closed-loop dream (the model fed its own frames, as play does) adds the flicker a player sees on
still background. The verdict in docs/fusion.md, between the ``verdict`` markers, is kept.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from worldgame.engine.fusion import PHI
from worldgame.eval.display import measure, predict_latents, shown_frames
from worldgame.eval.metrics import frames_to_unit
from worldgame.eval.objects import foreground_mask, median_background
from worldgame.eval.rollout import held_out_episode
from worldgame.models.sampler import Sampler
from worldgame.models.world_model import WorldModel

BASES = {"0.5": 2.0, "φ⁻¹": PHI, "0.8": 1.25}  # decay per frame back -> base b (weight b^-i)
WINDOWS = [2, 3, 4, 5, 6]
MODES = ["latent", "pixel"]
SEED = 10000  # held-out seeds, as `worldgame eval`
BEGIN, END = "<!-- verdict -->", "<!-- /verdict -->"


def settings() -> list[tuple[str, str, int]]:
    """(mode, decay name, window) for every setting; off first."""
    return [("off", "", 0)] + [(m, d, n) for m in MODES for d in BASES for n in WINDOWS]


@torch.no_grad()
def study(checkpoint: Path, episodes: int, frames: int, steps: int, dream_frames: int) -> dict:
    t0 = time.perf_counter()
    model = WorldModel.from_pretrained(checkpoint, device="cpu")
    k, game_cfg = model.context_length, model.metadata["game_config"]
    eps = [held_out_episode(game_cfg, SEED + e, frames) for e in range(episodes)]
    preds = []
    for e, (f, a) in enumerate(eps):
        latents = predict_latents(model, f, a, steps, SEED + e)
        preds.append((latents, shown_frames(model, latents), f[k:], median_background(f)))
    print(f"{checkpoint.name}: {episodes} x {frames - k} teacher-forced frames in {time.perf_counter() - t0:.0f} s",
          flush=True)
    dream_frames = min(dream_frames, frames - k)
    dream = _dream(model, eps, steps, dream_frames)
    rows = []
    for mode, decay, n in settings():
        fusion = None if mode == "off" else (mode, n, BASES[decay])
        shown = [(shown_frames(model, lat, fusion, dec), real, bg) for lat, dec, real, bg in preds]
        row = {"mode": mode, "decay": decay, "window": n, **measure(shown)}
        row["dream_flicker"] = _dream_flicker(model, dream, fusion)
        rows.append(row)
        print(f"  {mode:6} {decay:4} N={n}: flicker {row['flicker']:.2f} (still {row['still_flicker']:.2f})  fg PSNR {row['fg_psnr']:.2f}  "
              f"lag {row['lag_frames']:.2f}  dream flicker {row['dream_flicker']:.2f}", flush=True)
    real = [(r, r, bg) for _, _, r, bg in preds]
    late = [(np.concatenate([r[:1], r[:-1]]), r, bg) for _, _, r, bg in preds]
    return {"name": checkpoint.name, "checkpoint": str(checkpoint), "rows": rows, "real": measure(real),
            "late": measure(late), "episodes": episodes, "frames": frames - k, "steps": steps,
            "dream_frames": dream_frames, "seconds": time.perf_counter() - t0}


def _dream(model: WorldModel, eps: list, steps: int, horizon: int) -> dict:
    """Closed-loop dreams (one per episode, from its first real context, its real actions): the
    unfused latents and the real background, for the flicker a player sees."""
    k = model.context_length
    gen, sampler = torch.Generator().manual_seed(SEED), Sampler(model)
    context = torch.stack([model.encode(f[:k]) for f, _ in eps])
    acts = torch.as_tensor(np.stack([a for _, a in eps]))
    out = []
    for h in range(horizon):
        latent = sampler.step(context, acts[:, h + 1 : h + k + 1], steps=steps, generator=gen)
        context = torch.cat([context[:, 1:], latent[:, None]], dim=1)
        out.append(latent)
    latents = torch.stack(out, dim=1)
    return {"latents": latents, "unfused": [shown_frames(model, d) for d in latents],
            "backgrounds": [median_background(f) for f, _ in eps]}


def _dream_flicker(model: WorldModel, dream: dict, fusion) -> float:
    """Mean |change| (0-255) of the shown dream on still background: pixels that are background
    (objects.foreground_mask) in both of two consecutive *unfused* dream frames, so the same
    pixels for every setting; fusion's trails of moving objects there count as change."""
    total, count = 0.0, 0
    for latents, unfused, bg in zip(dream["latents"], dream["unfused"], dream["backgrounds"], strict=True):
        shown = shown_frames(model, latents, fusion, unfused).float()
        still = ~foreground_mask(frames_to_unit(unfused), bg)
        still = still[1:] & still[:-1]
        change = (shown[1:] - shown[:-1]).abs().mean(-1)
        total, count = total + float(change[still].sum()), count + int(still.sum())
    return total / max(count, 1)


def table(res: dict) -> list[str]:
    lines = ["| fusion | decay | window N | flicker | still flicker | fg PSNR (dB) | lag (frames) | dream flicker |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        mode = "**off**" if r["mode"] == "off" else r["mode"]
        lines.append(f"| {mode} | {r['decay'] or '–'} | {r['window'] or '–'} | {r['flicker']:.2f} | {r['still_flicker']:.2f} | {r['fg_psnr']:.2f} | "
                     f"{r['lag_frames']:.2f} | {r['dream_flicker']:.2f} |")
    for label, m in (("real game", res["real"]), ("real game, 1 frame late", res["late"])):
        lines.append(f"| *{label}* | | | {m['flicker']:.2f} | {m['still_flicker']:.2f} | {min(m['fg_psnr'], 100):.2f} | {m['lag_frames']:.2f} | |")
    return lines


def best(res: dict) -> list[str]:
    rows, off = res["rows"], res["rows"][0]

    def name(r):
        return "off" if r["mode"] == "off" else f"{r['mode']} decay {r['decay']} N={r['window']}"

    low = min(rows, key=lambda r: r["flicker"])
    out = [(f"lowest flicker: {name(low)} {low['flicker']:.2f} (off {off['flicker']:.2f}), at fg PSNR "
           f"{low['fg_psnr']:.2f} dB (off {off['fg_psnr']:.2f}) and lag {low['lag_frames']:.2f} frames "
           f"(off {off['lag_frames']:.2f})")]
    top = max(rows, key=lambda r: r["fg_psnr"])
    out.append(f"highest fg PSNR: {name(top)} {top['fg_psnr']:.2f} dB")
    least = min(rows, key=lambda r: abs(r["lag_frames"]))
    out.append(f"least lag: {name(least)} {least['lag_frames']:.2f} frames")
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("flicker", "flicker (0-255)  ↓"), ("still_flicker", "flicker, long-still pixels  ↓"), ("fg_psnr", "foreground PSNR (dB)  ↑"),
            ("lag_frames", "lag (frames)  ↓"), ("dream_flicker", "closed-loop dream flicker  ↓")]
    fig, axes = plt.subplots(len(results), len(keys), figsize=(3.6 * len(keys), 3.3 * len(results)), squeeze=False)
    colours = dict(zip(BASES, ["tab:blue", "tab:orange", "tab:red"], strict=True))
    for row, res in zip(axes, results, strict=True):
        off = res["rows"][0]
        for ax, (key, label) in zip(row, keys, strict=True):
            for mode, style in zip(MODES, ["-", "--"], strict=True):
                for decay, colour in colours.items():
                    ys = [r[key] for r in res["rows"] if r["mode"] == mode and r["decay"] == decay]
                    ax.plot(WINDOWS, ys, style, marker="o", ms=3, color=colour, label=f"{mode}, decay {decay}")
            ax.axhline(off[key], color="black", lw=1.5, label="off")
            ax.set_title(f"{res['name']}: {label}", fontsize=10)
            ax.set_xlabel("window N (past frames fused)")
            ax.set_xticks(WINDOWS)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_doc(results: list[dict], path: Path, command: str) -> None:
    old = path.read_text() if path.exists() else ""
    verdict = old[old.index(BEGIN) : old.index(END) + len(END)] if BEGIN in old and END in old else \
        f"{BEGIN}\n## Verdict\n\n(not written yet)\n{END}"
    cpu = _cpu()
    lines = ["# The φ-fusion study: does display fusion help?", "",
             ("Play can show the world model's frames through a φ-decay fusion (`engine/fusion.py`: "
             "y_t = Σ_{i=0..N} b^{-i} x_{t-i} / Σ b^{-i}). The claim: it gives temporal coherence. The risk: an "
             "average of past frames ghosts and lags moving objects. This measures both on held-out play."), "",
             verdict, "",
             "## Method", "",
             ("Teacher-forced, so the shown stream keeps tracking the real game: each frame is predicted from the "
             "real K frames before it and the real actions (the shipped model, LCM steps as play's default), then "
             "fused along time exactly as play fuses (latent: fuse latents, then decode; pixel: fuse decoded "
             "frames, round). `worldgame/eval/display.py` has the measures; each is taken after an 8-frame "
             "warm-up and pooled over the episodes:"), "",
             ("* **flicker**: mean |shown[t] − shown[t−1]| (0–255) on the pixels where the real game did not "
             "change between t−1 and t. The real game scores 0."),
             ("* **still flicker**: the same on pixels where the real game has been still for 9 frames "
              "(t−8..t), so no fused window reaches back to a moving object: the shimmer alone, without fading "
              "trails."),
             ("* **fg PSNR** (ghosting): foreground PSNR of each shown frame against its real frame (pixels away "
             "from the episode's median background in either)."),
             ("* **lag**: the τ (refined to a fraction by a parabola) at which shown[t] best matches real[t−τ], "
             "on the frames where the real game moves and over the pixels that move around them. Calibration: "
             "the real game 0, the real game shown one frame late 1 (last two table rows)."),
             ("* **dream flicker**: the same flicker in a closed-loop dream (the model fed its own frames, as in "
             "play) on pixels that are background in two consecutive unfused dream frames."), "",
             ("Decay is the weight ratio between a frame and the one after it: 0.5 (base 2), φ⁻¹ ≈ 0.618 (base φ, "
             "the source's), 0.8 (base 1.25). **Window N** = the past frames fused with the current one "
             "(conf/play.yaml `fusion_window`), so N + 1 frames in all; windows 2–6 here mean N = 2..6."), "",
             "Regenerate (tables, plot; the verdict section is kept):", "", "```", command, "```", "",
             (f"Machine: {cpu}, 2 cores, torch 1 thread, `nice -n 10`. "
             f"Run {time.strftime('%Y-%m-%d')}."), "", ("![flicker, fg PSNR, lag and dream flicker against the window]"
             "(fusion.png)"), ""]
    for res in results:
        lines += [f"## {res['name']}", "",
                  (f"`{res['checkpoint']}`: {res['episodes']} held-out episodes × {res['frames']} predicted frames "
                  f"(seeds {SEED}..{SEED + res['episodes'] - 1}), {res['steps']} LCM steps; closed-loop dreams "
                  f"{res['episodes']} × {res['dream_frames']} frames; {res['seconds']:.0f} s."), "",
                  *table(res), "", *[f"* {b}" for b in best(res)], ""]
    path.write_text("\n".join(lines))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", default=["checkpoints/bouncer", "checkpoints/boxing"])
    ap.add_argument("--episodes", type=int, default=6, help="held-out episodes per game")
    ap.add_argument("--frames", type=int, default=400, help="frames per episode")
    ap.add_argument("--steps", type=int, default=4, help="LCM steps (conf/play.yaml's default)")
    ap.add_argument("--dream-frames", type=int, default=200, help="closed-loop dream length per episode")
    ap.add_argument("--out", default=str(REPO / "docs"), help="folder for fusion.md and fusion.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = [study(Path(c), args.episodes, args.frames, args.steps, args.dream_frames) for c in args.checkpoints]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "nice -n 10 python tools/fusion_study.py " + " ".join(sys.argv[1:])
    write_doc(results, out / "fusion.md", command.strip())
    plot(results, out / "fusion.png")
    print(f"wrote {out / 'fusion.md'}, {out / 'fusion.png'}")


if __name__ == "__main__":
    main()
