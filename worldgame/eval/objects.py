"""Object-aware measures: what a player sees, which a static background cannot fake.

A game frame is mostly static background; whole-frame PSNR rewards a model that draws the
background and drops every sprite. These measures look only at the *foreground*: the pixels that
differ from the episode's per-pixel median background.

Images are float tensors in [0, 1] shaped (B, 3, H, W); backgrounds (3, H, W) or (B, 3, H, W).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

FG_THRESHOLD = 0.1  # a pixel is foreground when a channel differs from the background by > 10 %


def foreground_mask(images: torch.Tensor, background: torch.Tensor, threshold: float = FG_THRESHOLD) -> torch.Tensor:
    """(B, H, W) bool: pixels away from the background."""
    return (images - background).abs().amax(dim=-3) > threshold


def foreground_scores(pred: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                      threshold: float = FG_THRESHOLD) -> dict[str, float]:
    """Foreground PSNR, recall and precision of ``pred`` against ``target`` (pooled over the batch).

    * ``fg_psnr``: PSNR over the pixels that are foreground in the target *or* the prediction, so
      a missing object and an invented one both cost.
    * ``fg_recall``: of the target's foreground pixels, the share where the prediction also put
      something away from the background (objects removed -> 0).
    * ``fg_precision``: of the prediction's foreground pixels, the share that are foreground in the
      target too (objects invented -> low). 1.0 when both are empty.
    """
    true_fg = foreground_mask(target, background, threshold)
    pred_fg = foreground_mask(pred, background, threshold)
    union = (true_fg | pred_fg)[:, None].expand_as(target)
    if union.any():
        mse = (pred.float() - target.float())[union].square().mean().clamp_min(1e-10)
        fg_psnr = float(10 * torch.log10(1 / mse))
    else:
        fg_psnr = 100.0  # nothing to get wrong
    hit = (true_fg & pred_fg).sum().item()
    n_true, n_pred = true_fg.sum().item(), pred_fg.sum().item()
    return {"fg_psnr": fg_psnr, "fg_recall": hit / n_true if n_true else 1.0,
            "fg_precision": hit / n_pred if n_pred else (1.0 if not n_true else 0.0)}


def median_background(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) of one episode -> its per-pixel median background (3, H, W) in [0, 1]."""
    f = torch.as_tensor(np.asarray(frames))
    return f.median(dim=0).values.permute(2, 0, 1).float() / 255


def count_blobs(mask: np.ndarray, min_pixels: int = 2) -> int:
    """Connected (8-neighbour) components of a 2-D bool mask with at least ``min_pixels`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_pixels).sum())


def blobs_per_frame(frames: np.ndarray, background: torch.Tensor, threshold: float = FG_THRESHOLD) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> foreground blobs in each frame (T,)."""
    unit = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    masks = foreground_mask(unit, background, threshold).numpy()
    return np.array([count_blobs(m) for m in masks])


def colour_mask(frames: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> np.ndarray:
    """(..., H, W) bool: pixels within ``tolerance`` (every channel) of ``colour``."""
    return np.abs(frames.astype(np.int16) - np.array(colour, np.int16)).max(axis=-1) <= tolerance


def curve_at(values: np.ndarray, horizons: list[int], window: int = 10) -> dict[str, float]:
    """Mean of (dreams, T) ``values`` over the ``window`` frames ending at each horizon (1-based)."""
    out = {}
    for h in horizons:
        if h <= values.shape[-1]:
            out[str(h)] = round(float(values[..., max(0, h - window) : h].mean()), 3)
    return out
