"""Training data: every episode's frames and actions in memory, and the windows a sample can use."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldgame.data.episode import EVENT_RESET, list_episodes, read_episode, read_metadata
from worldgame.errors import WorldgameError, shorten
from worldgame.eval.metrics import dilate


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
    events: torch.Tensor | None = None  # (N,) bool: the game's events (a reward, an end, an object appeared) at frame i
    rewards: torch.Tensor | None = None  # (N,) float32: the reward of the transition into frame i
    dones: torch.Tensor | None = None  # (N,) bool: frame i is the last of a game (the game ended there)
    # (N,) bool: the transition into frame i put an object on the field by the game's chance, with no reward
    # (Bouncer's coin); None where an episode does not record it (collected before it was)
    appeared: torch.Tensor | None = None

    def rare_ends(self, radius: int) -> torch.Tensor:
        """The ends t with an event within ``radius`` frames of the target t (before or after): the windows
        around shots, hits, coins and respawns -- what the game draws at random and a model sees rarely."""
        if self.events is None or radius < 0:
            return self.ends[:0]
        return self.ends[dilate(self.events, radius)[self.ends]]

    def __len__(self) -> int:
        return len(self.ends)


def load_frame_data(data: str | Path | Sequence[str | Path], context_length: int,
                    val_fraction: float) -> tuple[FrameData, FrameData]:
    """Read every episode under ``data`` -- a folder, or a list of folders (e.g. collected
    episodes plus recorded play: ``data=[data/boxing,sessions]``).

    From each folder the last ``val_fraction`` of its files are held out (at least one file in
    all, unless there is only one). Sessions of the world model (``engine: model``) are dreams, not the game: they are
    skipped with a warning, and a folder of nothing else is refused.
    """
    folders = [data] if isinstance(data, (str, Path)) else list(data)
    if not folders:
        raise WorldgameError("data=[]: name at least one folder of episodes (made by `worldgame collect`)")
    train_files: list[Path] = []
    val_files: list[Path] = []
    for folder in folders:
        files, dreams = _ground_truth(folder)
        if dreams:
            warnings.warn(f"{folder}: skipped {dreams} session(s) of the world model: a dream is not ground truth "
                          "(record the real game with `worldgame play engine=real record=true`)", stacklevel=2)
        n_val = round(len(files) * val_fraction) if len(files) > 1 else 0
        train_files += files[: len(files) - n_val]
        val_files += files[len(files) - n_val:]
    if not val_files and len(train_files) > 1:
        val_files.append(train_files.pop())
    train = _load(train_files, context_length)
    # a single episode validates on itself (a smoke run); otherwise on files it never trains on
    return train, _load(val_files, context_length, train.metadata) if val_files else train


def _ground_truth(folder: str | Path) -> tuple[list[Path], int]:
    """The episode files of ``folder`` that recorded the real game, and how many were dreams."""
    files, dreams = [], 0
    for f in list_episodes(folder):
        if read_metadata(f).get("engine", "real") == "real":
            files.append(f)
        else:
            dreams += 1
    if not files:
        raise WorldgameError(f"{folder}: holds only sessions of the world model, which are dreams, not the game; "
                             "train on episodes from `worldgame collect` or `worldgame play engine=real record=true`")
    return files, dreams


# what must agree between all episodes trained on together
_SAME = ("game", "frame_size", "action_names", "game_config")


def _load(files: list[Path], k: int, meta: dict | None = None) -> FrameData:
    frames, actions, rewards, dones, ends, offset, first = [], [], [], [], [], 0, files[0]
    appeared: list[np.ndarray] | None = []
    for f in tqdm(files, desc="read episodes", unit="file", leave=False, disable=None):
        ep = read_episode(f)
        if meta is None:
            meta = ep.metadata
        else:
            for key in _SAME:
                if key in meta and ep.metadata.get(key) != meta.get(key):
                    raise WorldgameError(f"{f}: its {key} ({shorten(ep.metadata.get(key), 60)}) differs from {first}'s "
                                         f"({shorten(meta.get(key), 60)}); train on one game with one set of settings")
        # a window may not cross a game reset: frame i+1 after dones[i] starts a new game, and in
        # a recorded session so does every row whose event is a reset (the R key or game over)
        resets = set((np.flatnonzero(ep.dones[:-1]) + 1).tolist())
        events = ep.timings_ms.get("event")
        if events is not None:
            resets |= set(np.flatnonzero(events == EVENT_RESET).tolist()) - {0}
        starts = np.array([0, *sorted(resets)], dtype=np.int64)
        stops = np.array([*sorted(resets), len(ep)], dtype=np.int64)
        for a, b in zip(starts, stops):
            if b - a > k:
                ends.append(np.arange(offset + a + k, offset + b))
        frames.append(ep.frames)
        actions.append(ep.actions)
        rewards.append(ep.rewards)
        dones.append(ep.dones)
        column = ep.timings_ms.get("appeared")
        appeared = None if appeared is None or column is None else [*appeared, np.nan_to_num(column) > 0]
        offset += len(ep)
    if not ends:
        raise WorldgameError(f"{first.parent}: episodes are shorter than the context length {k} + 1")
    return FrameData(
        frames=torch.from_numpy(np.concatenate(frames)),
        actions=torch.from_numpy(np.concatenate(actions)).long(),
        ends=torch.from_numpy(np.concatenate(ends)).long(),
        metadata=meta or {},
        events=torch.from_numpy((np.concatenate(rewards) != 0) | np.concatenate(dones)
                                | (np.concatenate(appeared) if appeared else False)),
        rewards=torch.from_numpy(np.concatenate(rewards)),
        dones=torch.from_numpy(np.concatenate(dones)),
        appeared=torch.from_numpy(np.concatenate(appeared)) if appeared else None,
    )


def windows(ends: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors (B, K) of the context frames and (B, K) of their actions for targets ``ends``."""
    offsets = torch.arange(-k, 0)
    return ends[:, None] + offsets, ends[:, None] + offsets + 1


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float() / 127.5 - 1
