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
MIN_BLOB_PX = 2  # a blob smaller than this is decoder noise, not an object (count_blobs)
SMALL_OBJECT_PX = 16  # a blob of at most this many pixels is a small object (a ball, a bolt): the first a model loses
EIGHT = np.ones((3, 3), bool)  # 8-connected: a diagonal ball of 2 pixels is one blob


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


def count_blobs(mask: np.ndarray, min_pixels: int = MIN_BLOB_PX) -> int:
    """Connected (8-neighbour) components of a 2-D bool mask with at least ``min_pixels`` pixels."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_pixels).sum())


def blobs_per_frame(frames: np.ndarray, background: torch.Tensor, threshold: float = FG_THRESHOLD) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> foreground blobs in each frame (T,)."""
    unit = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    masks = foreground_mask(unit, background, threshold).numpy()
    return np.array([count_blobs(m) for m in masks])


def _small_blobs(mask: np.ndarray, max_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D bool mask's blob labels, each label's size, and the labels of its small blobs
    (``MIN_BLOB_PX`` .. ``max_pixels`` pixels, 8-connected)."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = np.flatnonzero((sizes >= MIN_BLOB_PX) & (sizes <= max_pixels))
    return labels, sizes, small[small > 0]


def small_object_recall(pred: torch.Tensor, target: torch.Tensor, background: torch.Tensor,
                        max_pixels: int = SMALL_OBJECT_PX, threshold: float = FG_THRESHOLD) -> dict:
    """Of the target's small objects (foreground blobs of ``MIN_BLOB_PX``..``max_pixels`` pixels),
    the share ``pred`` shows where they are: at least half of the blob's pixels are foreground in the
    prediction too. Per object, not per pixel: a 3-pixel ball weighs as much as a 16-pixel one, and
    the big sprites that dominate ``fg_recall`` do not count. ``recall`` is None without any.

    Images (B, 3, H, W) in [0, 1]; background (3, H, W) or (B, 3, H, W)."""
    true_fg = foreground_mask(target, background, threshold).cpu().numpy()
    pred_fg = foreground_mask(pred, background, threshold).cpu().numpy()
    found = total = 0
    for truth, made in zip(true_fg, pred_fg, strict=True):
        labels, sizes, small = _small_blobs(truth, max_pixels)
        if len(small):
            covered = np.bincount(labels.ravel(), weights=made.ravel(), minlength=len(sizes))
            found += int((2 * covered[small] >= sizes[small]).sum())
            total += len(small)
    return {"recall": round(found / total, 4) if total else None, "objects": total}


def shows_small_object(frames: np.ndarray, background: torch.Tensor, max_pixels: int = SMALL_OBJECT_PX,
                       threshold: float = FG_THRESHOLD) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> (T,) bool: the frame shows at least one small object."""
    unit = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    masks = foreground_mask(unit, background, threshold).numpy()
    return np.array([len(_small_blobs(m, max_pixels)[2]) > 0 for m in masks], bool)


def small_objects_in_dreams(dreams: np.ndarray, real: np.ndarray, background: torch.Tensor,
                            max_pixels: int = SMALL_OBJECT_PX) -> dict:
    """Dreams (D, T, H, W, 3) against the real game (T, H, W, 3) on the same actions, frame by frame:
    ``shown_frac``, of the frames where the real game shows a small object, the share where the dream
    shows one too (anywhere: a dream's ball may have bounced elsewhere, but it must exist);
    ``invented_frac``, of all frames, the share where the dream shows one and the real game none."""
    truth = shows_small_object(real, background, max_pixels)
    made = np.stack([shows_small_object(d, background, max_pixels) for d in dreams])
    both = made & truth[None]
    return {"frames": int(made.size), "real_frac": round(float(truth.mean()), 4),
            "dream_frac": round(float(made.mean()), 4),
            "shown_frac": round(float(both.sum() / (truth.sum() * len(dreams))), 4) if truth.any() else None,
            "invented_frac": round(float((made & ~truth[None]).mean()), 4)}


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
