"""Training data: every episode's frames and actions in memory, and the windows a sample can use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldgame.data.episode import list_episodes, read_episode
from worldgame.errors import WorldgameError


@dataclass
class FrameData:
    """Frames (N, H, W, 3) uint8 and actions (N,) of many episodes laid end to end.

    ``ends`` holds every index t whose window t-K..t lies inside one game episode, so that
    ``frames[t-K:t]`` is a context, ``actions[t-K+1:t+1]`` its actions and ``frames[t]`` the target.
    """

    frames: torch.Tensor
    actions: torch.Tensor
    ends: torch.Tensor
    metadata: dict

    def __len__(self) -> int:
        return len(self.ends)


def load_frame_data(data_dir: str | Path, context_length: int, val_fraction: float) -> tuple[FrameData, FrameData]:
    """Read every episode under ``data_dir``; the last ``val_fraction`` of the files are held out."""
    files = list_episodes(data_dir)
    n_val = max(1, round(len(files) * val_fraction)) if len(files) > 1 else 0
    if len(files) - n_val < 1:
        raise WorldgameError(f"{data_dir}: need at least 2 episodes (one to train, one to validate)")
    parts = [_load(files[: len(files) - n_val], context_length)]
    parts.append(_load(files[len(files) - n_val :], context_length) if n_val else parts[0])
    return parts[0], parts[1]


def _load(files: list[Path], k: int) -> FrameData:
    frames, actions, ends, offset, meta = [], [], [], 0, None
    for f in tqdm(files, desc="read episodes", unit="file", leave=False, disable=None):
        ep = read_episode(f)
        if meta is None:
            meta = ep.metadata
        elif (ep.metadata.get("game"), ep.metadata.get("frame_size")) != (meta.get("game"), meta.get("frame_size")):
            raise WorldgameError(f"{f}: from {ep.metadata.get('game')} at {ep.metadata.get('frame_size')}px, "
                                 f"but {files[0]} is {meta.get('game')} at {meta.get('frame_size')}px; keep one game per data folder")
        # a window may not cross a game reset: frame i+1 after dones[i] starts a new game
        resets = np.flatnonzero(ep.dones[:-1]) + 1
        starts = np.concatenate([[0], resets])
        stops = np.concatenate([resets, [len(ep)]])
        for a, b in zip(starts, stops):
            if b - a > k:
                ends.append(np.arange(offset + a + k, offset + b))
        frames.append(ep.frames)
        actions.append(ep.actions)
        offset += len(ep)
    if not ends:
        raise WorldgameError(f"{files[0].parent}: episodes are shorter than the context length {k} + 1")
    return FrameData(
        frames=torch.from_numpy(np.concatenate(frames)),
        actions=torch.from_numpy(np.concatenate(actions)).long(),
        ends=torch.from_numpy(np.concatenate(ends)).long(),
        metadata=meta or {},
    )


def windows(ends: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors (B, K) of the context frames and (B, K) of their actions for targets ``ends``."""
    offsets = torch.arange(-k, 0)
    return ends[:, None] + offsets, ends[:, None] + offsets + 1


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float() / 127.5 - 1
