"""The markdown report written beside eval.json."""

from __future__ import annotations

from pathlib import Path


def write_report(result: dict, health: dict, path: Path) -> None:
    tf = result["teacher_forced"]
    ro = result["rollout"]
    rows = "\n".join(f"| {name} | {tf['psnr'][name]:.2f} | {tf['ssim'][name]:.4f} |" for name in tf["psnr"])
    horizons = "\n".join(f"| {h} | {v:.2f} |" for h, v in ro["psnr_by_horizon"].items())
    path.write_text(
        f"# Evaluation of {result['checkpoint']}\n\n"
        f"Autoencoder reconstruction PSNR: **{result['vae_psnr']:.2f} dB**\n\n"
        "## Teacher-forced next frame (real context)\n\n| sampler (steps) | PSNR dB | SSIM |\n|---|---|---|\n"
        f"{rows}\n\n"
        f"## Closed loop ({ro['frames']} frames at {ro['steps']} steps, real actions)\n\n"
        f"* player position error: **{ro['player_err_px']} px** mean; player lost in {100 * ro['player_lost_frac']:.1f}% of frames\n"
        f"* until the real game's first orb hit (frame {ro['first_hit_frame']}): {ro['player_err_px_until_first_hit']} px mean\n"
        f"* last frames: background {100 * health['background']:.0f}% of pixels, orbs {100 * health['orbs']:.2f}%, "
        f"player visible in {100 * health['player']:.0f}% — {'no collapse' if health['ok'] else 'COLLAPSED'}\n\n"
        f"| horizon (frames) | PSNR dB |\n|---|---|\n{horizons}\n\n"
        "![real (top) vs generated (bottom) at horizons 1, 10, 100, 300, 1000](strip.png)\n"
    )
