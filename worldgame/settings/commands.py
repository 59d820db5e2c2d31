"""The settings of the other commands: collect, replay, export-web and eval."""

from dataclasses import dataclass, field
from typing import Any

from worldgame.schema import setting
from worldgame.settings.fields import (
    SEED_MAX,
    TEACHER_STEPS_MAX,
    Backend,
    Policy,
    Precision,
    Sampler,
    Spacing,
    _checkpoint,
    _device,
    _path,
)
from worldgame.vocabulary import PHI, STEP_COUNTS
from worldgame.vocabulary import FusionMode as Fusion  # the fusion modes (the loop's F key cycles them)


@dataclass
class CollectSettings:
    policy: Policy = Policy.scripted  # scripted (built-in game only) | random (sticky random actions) | tracker (ALE Pong: returns the ball)
    sticky: float = setting(0.8, ge=0.0, lt=1.0)  # probability that the random policy repeats its last action
    episodes: int = setting(10, ge=1, le=1_000_000)  # episodes to write
    steps: int = setting(1000, ge=1, le=10_000_000)  # most steps per episode (an episode also ends when the game says done)
    seed: int = setting(0, ge=0, le=SEED_MAX)  # episode e uses seed + (episodes already in out) + e
    out: str | None = setting(None, check=_path)  # default data/<game>: data/bouncer, or data/breakout for game.id=ALE/Breakout-v5
    progress: bool = True
    game: dict[str, Any] = field(default_factory=dict)  # the game: conf/game/*.yaml


@dataclass
class ReplaySettings:
    path: str | None = setting(None, check=_path)  # a .wgep episode or session, or a folder of them (searched recursively)
    episode: int = 0  # which episode of a folder to open first (negative counts from the end)
    fps: float | None = setting(None, gt=0.0, le=1000.0)  # playback speed in the window and the frame rate of an export; null = the game's own (as recorded: Atari 15, Bouncer 30)
    scale: int = setting(8, ge=1, le=32)  # integer zoom (nearest) of each frame, in the window and in an export
    export: str | None = setting(None, check=_path)  # out.mp4 or out.gif: write the episode as a video, headless, instead of a window
    hud: bool = False  # export only: burn a text strip (frame, action, return) under the frames
    progress: bool = True  # export and regenerate: show a progress bar
    regenerate: bool = False  # model sessions: re-run the model on the recorded actions and compare frames
    device: str = setting("auto", check=_device)  # regenerate only: auto | cpu | cuda | mps
    # regenerate only: the most network steps (frames x sampling steps) a session may ask for; a
    # session is a file from anywhere, and 2M steps is about two hours of one CPU core
    max_steps: int = setting(2_000_000, ge=1, le=10**10)


@dataclass
class ExportWebSettings:
    checkpoint: str | None = setting(None, check=_checkpoint)  # checkpoint folder; null = the one shipped for the built-in game (checkpoints/bouncer)
    out: str = setting("site", check=_path)  # the folder written: new, empty, or a previous export (never the checkpoint); serve it with `python -m http.server -d site`
    seeds: int = setting(8, ge=1, le=256)  # real start contexts written: the game reset at seeds 0..N-1, its first K frames encoded (Backspace cycles them)
    steps: int | None = setting(None, choices=list(STEP_COUNTS))  # the page's sampling steps when it opens (keys 1/2/4/8 change them); null = the checkpoint's play default
    ort_web: str | None = setting(None, check=_path)  # a folder holding ONNX Runtime Web's files; null = $WORLDGAME_ORT_WEB, else the cache, fetched with `npm pack` when missing
    weights: str = setting("fp16", choices=["fp16", "fp32"])  # fp16: the graphs' weights stored in half precision (about half their bytes), widened to fp32 once as the page loads them (WASM computes in fp32)


@dataclass
class EvalSettings:
    checkpoint: str | None = setting(None, check=_checkpoint)  # null = the shipped checkpoint of the built-in game
    device: str = setting("auto", check=_device)
    threads: int = setting(0, ge=0, le=1024)  # torch CPU threads (0 = 1)
    backend: Backend = Backend.torch  # the sampler's network and decoder: torch (batched) | onnx | auto (batch-1 ONNX Runtime sessions, one sample at a time: what play computes)
    precision: Precision | None = None  # with backend=onnx/auto: fp32 | int8 (null = play's default)
    seed: int = setting(10000, ge=0, le=SEED_MAX)  # held-out game seeds start here (collect uses 0.. by default)
    episodes: int = setting(4, ge=1, le=10_000)  # held-out episodes for teacher-forced samples and short rollouts
    episode_frames: int = setting(400, ge=16, le=1_000_000)
    samples: int = setting(256, ge=1, le=1_000_000)  # teacher-forced (context, next frame) pairs
    steps: list[int] = setting(list(STEP_COUNTS[:3]), choices=list(STEP_COUNTS), nonempty=True)  # step counts of the sampler measured teacher-forced
    teacher_steps: int = setting(50, ge=1, le=1000)  # the undistilled teacher's DDIM steps
    rollout_frames: int = setting(2000, ge=1, le=1_000_000)  # length of the closed-loop dreams (objects alive up to this horizon)
    rollout_steps: int | None = setting(None, ge=1, le=TEACHER_STEPS_MAX)  # sampler steps in the dreams (1/2/4/8; sampler=teacher: any, e.g. 50); null = the checkpoint's play default
    sampler: Sampler | None = None  # the sampler measured (teacher-forced steps and dreams): null = the checkpoint's play default
    spacing: Spacing | None = None  # ddim / dpmsolver / teacher timestep spacing (null = the sampler's default)
    long_rollouts: int = setting(8, ge=1, le=1024)  # dreams of the long rollout (same actions, other sampling noise), averaged (with 4 a per-horizon figure moves +-0.5)
    horizons: list[int] = setting([1, 10, 100], ge=1, nonempty=True)
    horizon_rollouts: int = setting(16, ge=1, le=4096)  # parallel short rollouts averaged per horizon
    context_noise: float | None = setting(None, ge=0.0, le=10.0)  # play-time context noise (null = the checkpoint's); sweep it with -m
    chance_temperature: float = setting(1.0, ge=0.0, le=10.0)  # chance code (where the checkpoint has one): 1 = the prior's odds, 0 = the most likely code
    out: str | None = setting(None, check=_path)  # report folder (null = runs/eval/<checkpoint folder name>)
    object_horizons: list[int] = setting([10, 100, 300, 1000, 2000], ge=1, nonempty=True)  # frames at which objects alive (dream vs real) are reported
    fusion: Fusion = Fusion.off  # measure the frames as shown with this display fusion: off | latent | pixel
    fusion_window: int = setting(4, ge=0, le=64)
    fusion_base: float = setting(PHI, gt=0.0, le=1000.0)
    control_contexts: int = setting(8, ge=0, le=1024)  # real contexts from which each movement key (RIGHT/LEFT, DOWN/UP) is held, dream vs game
    control_frames: int = setting(12, ge=1, le=1000)  # frames each key is held; the sprite's shift is measured on the last one
    event_games: int = setting(8, ge=0, le=1024)  # whole held-out games (to the last life) for the event head's figures; 0 = skip
    event_frames: int = setting(2000, ge=16, le=100000)  # a game longer than this is cut here (the dreams run as long as the longest)
    agent_games: int = setting(8, ge=0, le=1024)  # real held-out games the checkpoint's agent (and random, scripted) plays; 0 = skip
    agent_frames: int = setting(2000, ge=1, le=100000)  # a game is cut after this many frames played
