"""The markdown report written beside eval.json: the same figures, for a person."""

from __future__ import annotations

from pathlib import Path

from worldgame.fileio import atomic_write


def write_report(result: dict, health: dict, path: Path, strip_at: list[int]) -> None:
    tf, ro, obj = result["teacher_forced"], result["rollout"], result.get("objects", {})
    fg = result.get("vae_foreground", {})
    rows = "\n".join(
        f"| {name} | {tf['psnr'][name]:.2f} | {tf['ssim'][name]:.4f} | {tf['fg_psnr'][name]:.2f} | "
        f"{tf['fg_recall'][name]:.3f} | {tf['fg_precision'][name]:.3f} |" for name in tf["psnr"])
    horizons = "\n".join(f"| {h} | {v:.2f} | {ro['fg_psnr_by_horizon'][h]:.2f} |" for h, v in ro["psnr_by_horizon"].items())
    lines = [
        f"# Evaluation of {result['checkpoint']}\n",
        (f"Autoencoder reconstruction: PSNR **{result['vae_psnr']:.2f} dB**; foreground PSNR {fg.get('fg_psnr', 0):.2f} dB, "
        f"recall {fg.get('fg_recall', 0):.3f}, precision {fg.get('fg_precision', 0):.3f}\n"),
        "## Teacher-forced next frame (real context)\n",
        ("Foreground: pixels away from the episode's median background (a background-only model scores recall 0). "
        "`copy_last` repeats the last context frame: a model that does not beat it predicts nothing.\n"),
        f"Numbered rows: {_sampler(tf)} at that many steps; `teacher`: the teacher/ network with many DDIM steps.\n",
        "| sampler (steps) | PSNR dB | SSIM | fg PSNR dB | fg recall | fg precision |\n|---|---|---|---|---|---|",
        rows + "\n",
        (f"## Closed loop ({ro.get('rollouts', 1)} dreams of {ro['frames']} frames, {_sampler(ro)} at {ro['steps']} steps, "
         f"real actions, fusion {ro.get('fusion', 'off')})\n"),
    ]
    if ro.get("player_lost_frac") is not None:
        lines += [
            f"* player position error: **{ro['player_err_px']} px** mean; player lost in {100 * ro['player_lost_frac']:.1f}% of frames",
            f"* until the real game's first orb hit (frame {ro['first_hit_frame']}): {ro['player_err_px_until_first_hit']} px mean",
            (f"* last frames: background {100 * health['background']:.0f}% of pixels, orbs {100 * health['orbs']:.2f}%, "
            f"player visible in {100 * health['player']:.0f}% — {'no collapse' if health['ok'] else 'COLLAPSED'}\n"),
        ]
    else:
        lines.append(f"* last frames: foreground {100 * health['foreground']:.2f}% of pixels (real game "
                     f"{100 * health['real_foreground']:.2f}%) — {'no collapse' if health['ok'] else 'COLLAPSED'}\n")
    lines += ["| horizon (frames) | PSNR dB | fg PSNR dB |\n|---|---|---|", horizons + "\n"]
    if obj:
        hs = [str(h) for h in obj["horizons"]]
        lines += ["## Objects alive (dream vs the real game on the same actions)\n",
                  "| | " + " | ".join(hs) + " |", "|---|" + "---|" * len(hs),
                  "| foreground blobs, dream | " + " | ".join(f"{obj['blobs']['dream'][h]:.2f}" for h in hs) + " |",
                  "| foreground blobs, real | " + " | ".join(f"{obj['blobs']['real'][h]:.2f}" for h in hs) + " |"]
        b = obj.get("bouncer")
        if b:
            lines += ["| orbs, dream | " + " | ".join(f"{b['orbs']['dream'][h]:.2f}" for h in hs) + " |",
                      "| orbs, real | " + " | ".join(f"{b['orbs']['real'][h]:.2f}" for h in hs) + " |\n",
                      (f"* all orbs visible in {100 * b['all_orbs_frac']['dream']:.1f}% of dream frames "
                      f"(real game {100 * b['all_orbs_frac']['real']:.1f}%)"),
                      (f"* orbs, mean over all dream frames: {b['orbs']['dream_mean']:.2f} (real {b['orbs']['real_mean']:.2f}); "
                      f"missing or invented per frame: {b['orbs'].get('count_error', float('nan')):.2f}; no orb in "
                      f"{100 * b.get('no_orbs_frac', {}).get('dream', 0):.1f}% of frames, more than the game has in "
                      f"{100 * b.get('invented_frac', {}).get('dream', 0):.1f}%; more than one coin in "
                      f"{100 * b.get('coins_extra_frac', {}).get('dream', 0):.1f}% (the game: never)"),
                      (f"* pip changes per 1,000 frames: {b['pip_changes_per_1000']['dream']:.1f}, of which without a cause "
                      f"{b['pip_changes_per_1000']['dream_uncaused']:.1f} (real game {b['pip_changes_per_1000']['real_uncaused']:.1f})"),
                      (f"* control: the player moved within 1 px of what the key says on "
                      f"{100 * (b['control']['within_1px_frac'] or 0):.1f}% of {b['control']['frames']} frames away from orbs "
                      f"(mean error {b['control']['err_px_mean']} px)")]
        lines.append("")
    small = result.get("small_objects")
    if small:
        lines += ["## Small objects (a ball, a bolt)\n",
                  (f"Foreground blobs of 2 to {small['max_px']} pixels at the model's frame size, each counted once "
                   "(shown when half its pixels are foreground in the prediction too): the big sprites that dominate "
                   "the pixel figures do not count.\n"),
                  f"* {small_objects_line(small)}",
                  "* teacher-forced recall by sampler: " + ", ".join(
                      f"{n} {'n/a' if v is None else v}" for n, v in small["teacher_forced"]["recall"].items()) + "\n"]
    control = obj.get("control")
    if control:
        lines += [f"## Control: holding a movement key for {control['frames']} frames (dream vs the real game)\n",
                  ("From the same real contexts the game is continued holding a key and holding its opposite; the shift "
                   "is where the foreground of the one lies relative to the other on the last frame (pixels drawn in only "
                   "one of them). A context agrees when the dream's shift along the real one is at least a third of it; "
                   "a key pair passes when 3/4 of the contexts where the real game moved agree. FIRE/NOOP: the area "
                   "(px) FIRE changes against NOOP at its largest (a punch, a bolt); it agrees at a third of the real "
                   "area, and passes at 7/8 of the contexts.\n")]
        if control.get("skipped"):
            lines.append(f"* skipped: {control['skipped']}\n")
        elif not control["pairs"]:
            lines.append("* the game has no RIGHT/LEFT or DOWN/UP actions\n")
        else:
            verdict = {True: "passed", False: "**FAILED**", None: "no verdict"}
            lines += ["| keys | dream shift px | real shift px | dream (x, y) | real (x, y) | contexts | agree | verdict |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {name} | {p['dream_px']} | {p['real_px']} | {p['dream_xy']} | {p['real_xy']} | "
                      f"{p['contexts'][0]} of {p['contexts'][1]} | {p['agree_frac']} | {verdict[p['passed']]} |"
                      for name, p in control["pairs"].items()]
            lines.append("")
    agent = result.get("agent")
    if agent:
        lines += [(f"## The agent in the real game ({agent['games']} held-out games from seed {agent['seed']}, "
                   f"up to {agent['max_frames']} frames each)\n"),
                  "| policy | frames | points / 1k | minus / 1k | net / 1k | net / 1k spread (std over games) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {p['frames']} | {p['points_per_1k']} | {p['minus_per_1k']} | {p['net_per_1k']} | "
                  f"{p['net_per_1k_std']} |" for name, p in agent["policies"].items()]
        lines.append("")
    at = ", ".join(str(h) for h in strip_at)
    lines.append(f"![real (top) vs generated (bottom) at frames {at}](strip.png)\n")
    atomic_write(path, "\n".join(lines))


def small_objects_line(small: dict) -> str:
    """One line on the smallest objects (the report's and the summary's)."""
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.0f}%"

    def rec(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    tf, dream = small["teacher_forced"], small["dream"]
    best = max((n for n in tf["recall"] if n != "copy_last" and tf["recall"][n] is not None),
               key=lambda n: tf["recall"][n], default=None)
    at = f"{rec(tf['recall'][best])} at {best}" if best else "n/a"
    return (f"small objects (<= {small['max_px']} px): autoencoder recall {rec(small['vae']['recall'])} of "
            f"{small['vae']['objects']}; teacher-forced recall {at} (copy-last {rec(tf['recall']['copy_last'])}); "
            f"dreams show one in {pct(dream['shown_frac'])} of the frames the real game does "
            f"(real: {pct(dream['real_frac'])} of frames), one the real game doesn't in {pct(dream['invented_frac'])}")


def _sampler(part: dict) -> str:
    """'ddim (leading)' from a JSON part's sampler and spacing (reports of older evals: LCM)."""
    name = part.get("sampler", "lcm")
    return f"{name} ({part['spacing']})" if part.get("spacing") else name
