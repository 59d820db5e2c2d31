"""Write an episode or session to a video file, headless (no window, no display needed).

Frames are upscaled by an integer factor with nearest-neighbour sampling, so pixels stay sharp;
a game whose own frames are not square (metadata ``native_size``) is shown at its aspect ratio
(``views.display_size``), still nearest-neighbour.
``.mp4`` is H.264 (libx264, yuv420p) through imageio-ffmpeg; ``.gif`` goes through Pillow with one
shared frame delay (GIF stores delays in hundredths of a second, so e.g. 30 fps plays at ~33 fps).
The video is written to a temporary file beside the target, fsynced and renamed when complete
(fileio.atomic_path), so an interrupted export or a full disk never leaves a truncated file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from worldgame.data.episode import Episode
from worldgame.engine.views import display_size
from worldgame.errors import WorldgameError
from worldgame.fileio import atomic_path

SUFFIXES = (".mp4", ".gif")
# frames per second an export may have: a GIF delay of 0 (above 100 fps) plays at a viewer's whim,
# ~10 fps; below 0.01 fps (100 s a frame) FFmpeg's time base fails and nobody watches
FPS_RANGE = {".mp4": (0.01, 1000.0), ".gif": (0.01, 100.0)}


def check_export_path(path: str | Path, source: str | Path | None = None) -> Path:
    """Refuse any suffix but .mp4 / .gif, a folder, the ``source`` being exported itself (however
    it is reached: the same file by device and inode, so a symlink or hard link too) and an
    existing target that is read-only or not a regular file, each with one line; return the Path.
    The video replaces the target by rename (fileio.atomic_path), which the target's own
    permissions do not stop: they are checked here."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise WorldgameError(f"export={path}: unsupported video type {path.suffix or '(none)'!r}; use a .mp4 or .gif name")
    if path.is_dir():
        raise WorldgameError(f"export={path} is a folder; name a .mp4 or .gif file")
    try:
        target = os.stat(path)
    except OSError:
        return path  # nothing there (yet): written new
    if source is not None and _same_file(target, source):
        raise WorldgameError(f"export={path} is the file being exported ({source}); name another video file")
    if not stat.S_ISREG(target.st_mode):
        raise WorldgameError(f"export={path} exists and is not a regular file; name another video file")
    if not os.access(path, os.W_OK) or not target.st_mode & 0o222:  # root may write anything: the mode says read-only
        raise WorldgameError(f"export={path} exists and is read-only; remove it or name another video file")
    return path


def _same_file(target: os.stat_result, source: str | Path) -> bool:
    try:
        st = os.stat(source)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino)


def check_fps(fps: float, suffix: str) -> None:
    """Refuse a frame rate the video type cannot store, with one line (GIF delays are whole
    hundredths of a second, 1..65535; FFmpeg refuses a rate too small for its time base)."""
    low, high = FPS_RANGE[suffix.lower()]
    if not (isinstance(fps, (int, float)) and low <= fps <= high):
        raise WorldgameError(f"fps={fps}: a {suffix.lower()} export plays {low:g} to {high:g} frames per second; choose fps in that range")


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour zoom of an (H, W, 3) frame by an integer factor."""
    if scale == 1:
        return frame
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def nearest_index(out: int, src: int) -> np.ndarray:
    """For each of ``out`` pixels, the nearest of ``src`` source pixels (sampled at pixel centres)."""
    return (2 * np.arange(out) + 1) * src // (2 * out)


def resize_nearest(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, 3) frame to ``size`` = (width, height)."""
    w, h = size
    fh, fw = frame.shape[:2]
    if h % fh == 0 and h * fw == w * fh:  # a whole zoom: the same pixels, faster
        return upscale(frame, h // fh)
    return frame[nearest_index(h, fh)][:, nearest_index(w, fw)]


def hud_strip(width: int, text: str, height: int) -> np.ndarray:
    """A dark (height, width, 3) strip with ``text`` drawn in light grey (Pillow's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (width, height), (12, 12, 18))
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=max(8, height - 6))
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    ImageDraw.Draw(strip).text((4, 2), text, fill=(220, 220, 230), font=font)
    return np.asarray(strip)


def export_size(episode: Episode, scale: int) -> tuple[int, int]:
    """(width, height) of the episode's frames as exported (without the HUD strip)."""
    fh, fw = episode.frames.shape[1:3]
    native = episode.metadata.get("native_size")
    if fh != fw:  # not a square model frame: zoomed as it is
        return fw * scale, fh * scale
    return display_size(fh, native, scale)


def episode_frames(episode: Episode, scale: int, hud: bool = False) -> Iterator[np.ndarray]:
    """Yield the episode's frames upscaled, each with a HUD strip underneath when ``hud``."""
    names = list(episode.metadata.get("action_names") or [])
    returns = np.cumsum(episode.rewards, dtype=np.float64)
    last = len(episode) - 1
    size = export_size(episode, scale)
    for t, frame in enumerate(episode.frames):
        big = resize_nearest(frame, size)
        if hud:
            a = int(episode.actions[t])
            action = "reset" if t == 0 else (names[a] if 0 <= a < len(names) else str(a))
            text = f"frame {t}/{last}  {action}  return {returns[t]:g}" + ("  done" if episode.dones[t] else "")
            big = np.concatenate([big, hud_strip(big.shape[1], text, _hud_height(scale))])
        yield big


def export_episode(
    episode: Episode,
    out: str | Path,
    fps: float = 30,
    scale: int = 8,
    hud: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``episode`` to ``out`` (.mp4 or .gif) at ``fps``, zoomed by ``scale``; returns ``out``.

    The size is exactly (H·scale, W·scale) plus the HUD strip (for a game with a non-square
    ``native_size``, ``views.display_size``), except that an .mp4 gets one black row/column added
    where a side is odd (H.264 in yuv420p needs even sizes).
    """
    out = check_export_path(out, episode.path)
    check_fps(fps, out.suffix)
    if not (isinstance(scale, int) and scale >= 1):
        raise WorldgameError(f"scale={scale}: must be a whole number >= 1")
    frames = tqdm(
        episode_frames(episode, scale, hud),
        total=len(episode),
        unit="frame",
        desc=f"export {out.name}",
        disable=not progress,
    )
    try:
        with atomic_path(out, suffix=out.suffix) as tmp:  # temp file, fsync, rename: never half a video
            if out.suffix.lower() == ".mp4":
                _write_mp4(tmp, frames, fps)
            else:
                _write_gif(tmp, frames, fps, _palette_sample(episode, scale, hud))
    except (OSError, RuntimeError) as e:
        raise WorldgameError(f"export={out}: could not write the video ({e})") from e
    return out


def _even(n: int) -> int:
    return n + (n % 2)


def _hud_height(scale: int) -> int:
    return _even(max(14, 2 * scale + 6))


def _palette_sample(episode: Episode, scale: int, hud: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of an exported frame that hold every source pixel once (the first of each
    nearest-neighbour block), plus every ``scale``-th row of the HUD strip."""
    w, h = export_size(episode, scale)
    fh, fw = episode.frames.shape[1:3]
    rows = np.unique(nearest_index(h, fh), return_index=True)[1]
    cols = np.unique(nearest_index(w, fw), return_index=True)[1]
    if hud:
        rows = np.concatenate([rows, np.arange(h, h + _hud_height(scale), scale)])
    return rows, cols


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))


def _write_mp4(path: Path, frames: Iterator[np.ndarray], fps: float) -> None:
    """H.264 via imageio-ffmpeg. macro_block_size=1 keeps the exact size (no resampling, which
    would blur the sharp pixels); frames are padded to even sides instead, which yuv420p needs."""
    import imageio.v2 as imageio

    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        quality=8,  # imageio maps this to -crf 10: near-lossless for flat pixel art
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(_pad_even(frame))
    finally:
        writer.close()


def _write_gif(path: Path, frames: Iterator[np.ndarray], fps: float, sample: tuple[np.ndarray, np.ndarray]) -> None:
    """GIF via Pillow, one palette per frame (exact for frames of up to 256 colours).

    The palette is built from the ``sample`` rows and columns, which for a nearest upscale are the
    whole original frame, then the big frame is mapped onto it: ~5x faster than quantising the big
    frame. Frames are streamed into Pillow as palette images (1 byte per pixel). Pillow merges a
    frame identical to the one before it into that frame's delay, so such a GIF holds fewer
    frames (its play time is unchanged).
    """
    from PIL import Image

    rows, cols = sample

    def palettised() -> Iterator[Image.Image]:
        for frame in frames:
            small = np.ascontiguousarray(frame[rows][:, cols])
            palette = Image.fromarray(small).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            yield Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE)

    images = palettised()
    first = next(images)
    first.save(path, format="GIF", save_all=True, append_images=images, duration=1000 / fps, loop=0, optimize=False)
