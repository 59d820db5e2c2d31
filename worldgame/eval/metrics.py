"""Image metrics on tensors in [0, 1] shaped (B, 3, H, W), one value per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = (pred.float() - target.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity with a Gaussian window, averaged over channels and pixels."""
    c = pred.shape[1]
    ax = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = (g / g.sum()).to(pred.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)
    blur = lambda x: F.conv2d(x, kernel, padding=window // 2, groups=c)
    x, y = pred.float(), target.float()
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def frames_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return frames.permute(0, 3, 1, 2).float() / 255


def f1_scores(predicted: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 of boolean ``predicted`` against ``actual`` (NaN where undefined:
    no predictions for precision, no actual events for recall), and how many events there were."""
    tp = int((predicted & actual).sum())
    n_pred, n_true = int(predicted.sum()), int(actual.sum())
    precision = tp / n_pred if n_pred else float("nan")
    recall = tp / n_true if n_true else float("nan")
    if n_pred + n_true == 0:
        f1 = float("nan")
    else:
        f1 = 2 * tp / (n_pred + n_true)
    return {"precision": precision, "recall": recall, "f1": f1, "events": n_true}


def dilate(flags: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean ``flags`` (N,) widened by ``radius`` entries each way: what lies within ``radius`` of one."""
    out = flags.clone()
    for j in range(1, radius + 1):
        out[j:] |= flags[:-j]
        out[:-j] |= flags[j:]
    return out
