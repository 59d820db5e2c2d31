"""Every command's settings, typed once: one dataclass per command, registered in hydra's ConfigStore
as the base of ``conf/<command>.yaml`` (which adds only defaults-list choices and comments).

Each field's default is the one default of that setting, and its comment is its documentation
(``worldgame <command> --cfg job`` prints them all). hydra enforces the types; ``validate()`` is the
one post-pass for ranges, choices and relations between settings, and returns the typed object
each command's ``run()`` receives. Every problem is one line naming the setting, the value and what
is allowed (schema.SettingError). The game's settings are the game registry's (games/registry.py):
a mapping here, checked there.
"""

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import II, DictConfig, ListConfig, OmegaConf

from worldgame.errors import WorldgameError
from worldgame.games.registry import resolve as resolve_game
from worldgame.schema import SettingError, check, setting, show
from worldgame.vocabulary import PHI, STEP_COUNTS, Interpolation, View  # the shared words
from worldgame.vocabulary import FusionMode as Fusion  # the fusion modes (the loop's F key cycles them)

SEED_MAX = 2**32 - 1
TEACHER_STEPS_MAX = 1000  # sampler=teacher: DDIM steps of the undistilled reference


def check_steps(name: str, steps: Any, sampler: str | None) -> None:
    """The play samplers run 1, 2, 4 or 8 steps; the teacher's DDIM any count up to TEACHER_STEPS_MAX."""
    values = [int(s) for s in (steps if isinstance(steps, (list, tuple, ListConfig)) else [steps])]
    if sampler == "teacher":
        if not values or any(not 1 <= v <= TEACHER_STEPS_MAX for v in values):
            raise SettingError(name, steps, f"with sampler=teacher each must be 1..{TEACHER_STEPS_MAX} (e.g. 50)")
    elif not values or any(v not in STEP_COUNTS for v in values):
        raise SettingError(name, steps, "each must be 1, 2, 4 or 8 (play sampler steps; sampler=teacher runs any count)")


def _device(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", value)
    return None if ok else "choose auto, cpu, mps, cuda or cuda:N"


def _host(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9.:\-]{1,253}", value)
    return None if ok else "a host name or IP address (127.0.0.1 = this machine only, 0.0.0.0 = every interface)"


PATH_MAX, NAME_MAX = 4095, 255  # bytes of a whole path and of one of its names (Linux; macOS is 1023/255)


def _path(value: Any) -> str | None:
    """A path the OS can take at all: checked here so a long name is one line, not an OSError deep in a run."""
    if value is None:
        return None
    raw = str(value).encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        return "a path cannot hold a NUL character"
    if len(raw) > PATH_MAX:
        return f"a path of at most {PATH_MAX} bytes"
    if any(len(name) > NAME_MAX for name in raw.split(b"/")):
        return f"each folder or file name in the path must be at most {NAME_MAX} bytes"
    return None


SHIPPED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def _checkpoint(value: Any) -> str | None:
    """A checkpoint folder that exists (said at once, before torch loads, with the likeliest folder
    meant); null is the shipped one."""
    bad = _path(value)
    if bad is not None or value is None or Path(str(value)).is_dir():
        return bad
    return f"no such folder{did_you_mean(Path(str(value)))}"


def did_you_mean(path: Path) -> str:
    """``; did you mean X?`` among the folders beside ``path`` and the shipped checkpoints, by name
    (or the shipped ones listed); at most 256 entries of each folder are looked at."""
    import difflib
    import itertools

    shipped = Path(os.path.relpath(SHIPPED_CHECKPOINTS)) if SHIPPED_CHECKPOINTS.is_relative_to(Path.cwd()) else SHIPPED_CHECKPOINTS
    candidates: dict[str, Path] = {}
    for folder, shown in ((SHIPPED_CHECKPOINTS, shipped), (path.parent, path.parent)):
        try:
            entries = list(itertools.islice(os.scandir(folder), 256)) if folder.is_dir() else []
        except OSError:
            entries = []
        candidates |= {e.name: shown / e.name for e in entries if e.is_dir(follow_symlinks=False)}
    near = difflib.get_close_matches(path.name, list(candidates), n=1, cutoff=0.75)
    if near:
        return f"; did you mean {candidates[near[0]]}?"
    try:
        games = sorted(e.name for e in os.scandir(SHIPPED_CHECKPOINTS) if e.is_dir())[:6]
    except OSError:
        games = []
    return f"; the shipped ones are {', '.join(str(shipped / g) for g in games)}" if games else ""


# --- one enum per concept (StrEnum: a member equals its name as text, and prints as it) --------------
class Engine(enum.StrEnum):
    model = "model"  # the world model dreams the game
    real = "real"  # the game itself
    side_by_side = "side_by_side"  # both, fed the same keys (World Model view)


class Backend(enum.StrEnum):
    auto = "auto"  # onnx on CPU when onnxruntime works, else torch
    torch = "torch"
    onnx = "onnx"  # ONNX Runtime, CPU; export cached in ~/.cache/worldgame/onnx


class Precision(enum.StrEnum):
    fp32 = "fp32"
    int8 = "int8"  # ONNX Runtime static quantization, calibrated on a short dream of the game (models/backends/)


class Policy(enum.StrEnum):
    scripted = "scripted"  # the built-in game only
    random = "random"  # sticky random actions
    tracker = "tracker"  # ALE Pong: moves the paddle to the ball it sees, with random bursts and misses


class Sampler(enum.StrEnum):  # models/schedulers.SAMPLERS says what each is
    lcm = "lcm"
    ddim = "ddim"
    dpmsolver = "dpmsolver"
    teacher = "teacher"


class Spacing(enum.StrEnum):  # diffusers' timestep_spacing (ddim, dpmsolver, teacher)
    leading = "leading"
    trailing = "trailing"
    linspace = "linspace"


class DenoiserVariant(enum.StrEnum):  # models/denoisers.py builds each
    concat = "concat"  # one UNet over the context latents and the noisy target concatenated (shipped)
    feature_cache = "feature_cache"  # a context encoder run once per frame + a light per-step UNet (denoiser_cached.py)


class Prediction(enum.StrEnum):
    sample = "sample"
    v_prediction = "v_prediction"
    epsilon = "epsilon"


# --- the model and speed settings play, bench and serve share ----------------------------------------
@dataclass
class Runtime:
    checkpoint: str | None = setting(None, check=_checkpoint)  # checkpoint folder; null = the one shipped for the game (checkpoints/<game>)
    steps: int = setting(4, choices=list(STEP_COUNTS))  # sampling steps per frame: 1, 2, 4 or 8 (keys 1/2/4/8)
    sampler: Sampler | None = None  # null = the checkpoint's play default (worldgame.json "play"; lcm if none) | lcm | ddim | dpmsolver (docs/fidelity.md)
    spacing: Spacing | None = None  # ddim / dpmsolver timestep spacing: leading | trailing | linspace (null = the sampler's default)
    fusion: Fusion = Fusion.off  # phi-decay display fusion: off | latent | pixel (key F); off keeps moving objects crisp
    fusion_window: int = setting(4, ge=0, le=64)  # N: past frames fused with the current one
    fusion_base: float = setting(PHI, gt=0.0, le=1000.0)  # decay base; weight of the frame i back is base^-i, normalised
    view: View = View.stream  # stream | lcm_steps | temporal | world_model (key M / Tab)
    device: str = setting("auto", check=_device)  # auto (cuda when present) | cpu | mps | cuda | cuda:1 ...
    half: bool | None = None  # half precision; null = on CUDA only
    optimize: bool = True  # prepare the fast path (trace the denoiser; backend=torch)
    threads: int = setting(0, ge=0, le=1024)  # torch CPU threads; 0 = auto (1 on CPU: faster than 2 on a 2-core machine, and robust to load)
    backend: Backend = Backend.auto  # auto (onnx on CPU when onnxruntime works, else torch) | torch | onnx
    precision: Precision | None = None  # ONNX Runtime: fp32 | int8 (null = the measured default, docs/results.md "Precision"); int8 needs backend=onnx or auto
    chance_temperature: float = setting(1.0, ge=0.0, le=10.0)  # chance code (where the checkpoint has one): 1 = drawn at the prior's odds, 0 = the most likely code
    agent: bool = False  # the checkpoint's agent plays from the start (attract mode; key G hands the controls over at any time)
    game: dict[str, Any] = field(default_factory=dict)  # the game: the defaults list's `game:` choice (conf/game/*.yaml); a checkpoint names its own


@dataclass
class Window:
    scale: int = setting(8, ge=1, le=32)  # window zoom per frame (nearest); multi-panel views shrink to fit 1600 px
    display_hz: float = setting(0.0, ge=0.0, le=1000.0)  # temporal super-resolution: 0 = off; 60, 90, 120 ... (a whole multiple of the tick rate) shows in-between frames in the Stream view
    display_interp: Interpolation = Interpolation.warp  # in-between frames: warp (motion-compensated, sharp) | blend (50/50 mix, ghosts)


@dataclass
class GameOver:
    game_over_s: float = setting(2.0, ge=0.0, le=60.0)  # seconds the GAME OVER screen holds the last frame and final score (any game key skips it); 0 = a new game at once


@dataclass
class PlaySettings(GameOver, Window, Runtime):
    engine: Engine = Engine.model  # model | real | side_by_side
    record: bool = False  # record from the first frame (R toggles recording at any time)
    sessions: str = setting("sessions", check=_path)  # folder recorded sessions go to
    seed: int | None = setting(None, ge=0, le=SEED_MAX)  # game / sampler seed (null = random); reset n uses seed + n
    fps: float | None = setting(None, ge=0.0, le=1000.0)  # tick rate in Hz; null = the game's own (the checkpoint records it: Bouncer 30, Atari 15); 0 = as fast as possible
    frames: int = setting(0, ge=0)  # stop after this many frames (0 = until the window closes; for headless runs)


@dataclass
class BenchSettings(Window, Runtime):
    steps: list[int] = setting(list(STEP_COUNTS[:3]), ge=1, le=TEACHER_STEPS_MAX, nonempty=True)  # step counts measured, one result each (1/2/4/8; sampler=teacher: any, e.g. [50])
    frames: int = setting(300, ge=2, le=10_000_000)  # measured frames per step count
    warmup: int = setting(30, ge=0, le=1_000_000)  # frames run first and not measured
    soak_frames: int = setting(10000, ge=1)  # frames >= this: soak mode (RSS at start and end, non-finite count)
    seed: int = setting(0, ge=0, le=SEED_MAX)
    display: bool = False  # true: measure in a real window on DISPLAY (e.g. Xvfb), present included; false: off-screen
    fps: float = setting(30.0, gt=0.0, le=1000.0)  # the play tick rate display_hz divides, and the rate of the paced TSR latency runs (the FPS measurement itself is unpaced)


@dataclass
class ServeSettings(GameOver, Runtime):
    host: str = setting("127.0.0.1", check=_host)  # 127.0.0.1 = this machine only; 0.0.0.0 serves every interface (anyone who reaches the port can play)
    port: int = setting(8765, ge=0, le=65535)  # TCP port (0 = any free one)
    max_clients: int = setting(4, ge=1, le=64)  # concurrent dreams; more clients get "busy" and are closed
    idle_timeout: float = setting(300.0, ge=0.0, le=86400.0)  # seconds without a message from a client before its dream ends (0 = never)
    seed: int | None = setting(None, ge=0, le=SEED_MAX)  # seeds the per-connection seeds (null = random)
    fps: float | None = setting(None, gt=0.0, le=240.0)  # tick rate per dream in Hz; null = the game's own (the checkpoint records it)
    sessions: str = setting("sessions", check=_path)  # folder the page's Record button writes sessions to
    max_connections: int = setting(32, ge=1, le=1024)  # open TCP connections at once (pages, game sockets, unfinished requests); more are closed at once
    header_timeout: float = setting(10.0, gt=0.0, le=300.0)  # seconds a connection may take to send a request's headers (or stay idle between requests)
    max_messages: float = setting(30.0, gt=0.0, le=1000.0)  # messages per second a client may send (twice that in a burst); more close it (1008)
    max_work: int = setting(16, ge=1, le=64)  # most sampling steps x panels a client may ask of one frame (8 steps in Stream: 8; 4 in LCM Steps: 16); heavier requests are refused
    record_seconds: float = setting(600.0, gt=0.0, le=86400.0)  # longest recording; it is saved when reached
    record_per_client: int = setting(20, ge=0, le=100_000)  # recordings one connection may make (0: recording off)
    record_client_mb: float = setting(256.0, gt=0.0, le=1e6)  # MB (raw frames) one connection's recordings may take in all
    record_files: int = setting(500, ge=0, le=1_000_000)  # recordings this server run may make, all clients together
    record_mb: float = setting(2048.0, gt=0.0, le=1e7)  # MB (raw frames) this server run's recordings may take in all


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
    steps: int = setting(4, choices=list(STEP_COUNTS))  # the page's sampling steps when it opens (keys 1/2/4/8 change them)
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
    rollout_steps: int = setting(4, ge=1, le=TEACHER_STEPS_MAX)  # sampler steps in the dreams (1/2/4/8; sampler=teacher: any, e.g. 50)
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


# --- train: the run, the model's shape (conf/model) and each stage's recipe (conf/train) -------------
# The defaults are the shipped shape (conf/model/small.yaml) and recipe (conf/train/shipped.yaml,
# whose comments tell how it was measured); conf/model/tiny.yaml and conf/train/tiny.yaml change some.
@dataclass
class VaeShape:
    latent_channels: int = setting(4, ge=1, le=64)
    # null: the data's frame_size / denoiser.latent_size (64 -> 4, 96 -> 6, 128 -> 8), so a larger frame keeps
    # the denoiser's 16x16 latent and its cost; only the autoencoder's stem and decoder output grow
    downscale: int | None = setting(None, ge=1, le=32)
    width: int = setting(48, ge=1, le=1024)
    encoder_blocks: int = setting(2, ge=0, le=32)
    decoder_blocks: int = setting(3, ge=0, le=32)


@dataclass
class DenoiserShape:
    context_length: int = setting(4, ge=1, le=64)  # past frames the denoiser sees
    latent_channels: int = setting(II("model.vae.latent_channels"), ge=1, le=64)
    latent_size: int = setting(16, ge=1, le=256)  # side of the latent grid the denoiser works on, whatever the frame size
    block_out_channels: list[int] = setting([32, 64, 96], ge=1, le=4096, nonempty=True)
    layers_per_block: int = setting(1, ge=1, le=16)
    action_dim: int = setting(32, ge=1, le=4096)
    norm_num_groups: int = setting(8, ge=1, le=1024)
    noise_per_frame: bool = True  # one context-noise level per context frame (DIAMOND CS:GO), embedded for each
    variant: DenoiserVariant = DenoiserVariant.concat  # concat | feature_cache: context features once per frame, reused by every step
    step_block_out_channels: list[int] = setting([16, 32, 48], ge=1, le=4096, nonempty=True)  # feature_cache only: the per-step UNet's widths, one per level
    chance_groups: int = setting(0, ge=0, le=16)  # G: groups of the per-frame chance code the denoiser is conditioned on (models/chance.py); 0 = none
    chance_values: int = setting(16, ge=2, le=256)  # V: values of each group (G x log2 V bits a frame)
    chance_dim: int = setting(16, ge=1, le=4096)  # size of one group's embedding beside the actions'
    chance_map: int = setting(0, ge=0, le=64)  # channels of the map each code value draws over the latent grid, read beside the input latents (says *where*); 0 = the code as a vector only


@dataclass
class EventsShape:
    frames_seen: int = setting(2, ge=1, le=64)  # latents the event head sees: the last frames_seen-1 of the context and the next one
    width: int = setting(32, ge=1, le=1024)  # channels of its first convolution (doubled twice)
    action_dim: int = setting(16, ge=1, le=4096)


@dataclass
class AgentShape:
    frames_seen: int = setting(2, ge=1, le=64)  # latents the agent sees, the newest last (two show the objects' motion)
    width: int = setting(32, ge=1, le=1024)  # channels of its first convolution (doubled twice)
    hidden: int = setting(256, ge=1, le=65536)  # the layer its policy and value share


@dataclass
class ChanceShape:  # the chance code's posterior and prior nets (their G x V are model.denoiser.chance_*)
    width: int = setting(32, ge=1, le=1024)  # channels of each net's first convolution (doubled once)
    action_dim: int = setting(16, ge=1, le=4096)
    hidden: int = setting(256, ge=1, le=65536)  # the layer before the code's logits
    event_group: bool = False  # chance group 0 is the transition's event named by the data (nothing / point / lost, game over), drawn first at play so the picture and the HUD agree; needs chance_values >= 6


@dataclass
class ModelShape:
    vae: VaeShape = field(default_factory=VaeShape)
    denoiser: DenoiserShape = field(default_factory=DenoiserShape)
    events: EventsShape = field(default_factory=EventsShape)
    agent: AgentShape = field(default_factory=AgentShape)
    chance: ChanceShape = field(default_factory=ChanceShape)
    prediction_type: Prediction = Prediction.sample  # sample | v_prediction | epsilon
    play_context_noise: float = setting(0.05, ge=0.0, le=10.0)  # fixed context-noise level at play time (training draws U(0, teacher.max_context_noise))


@dataclass
class Stage:
    steps: int = setting(100000, ge=1)  # a stage stops at `steps` or `max_minutes`, whichever comes first
    max_minutes: float = setting(10.0, gt=0.0)
    batch_size: int = setting(32, ge=1, le=65536)
    lr: float = setting(1e-3, gt=0.0, le=10.0)
    weight_decay: float = setting(0.0, ge=0.0)
    warmup_steps: int = setting(0, ge=0)
    val_every: int = setting(500, ge=1)


@dataclass
class VaeStage(Stage):
    max_minutes: float = setting(18.0, gt=0.0)  # the minute budget stops it (11,891 steps in 18 min here)
    lr: float = setting(2e-3, gt=0.0, le=10.0)
    warmup_steps: int = setting(100, ge=0)
    latent_noise: float = setting(0.05, ge=0.0)
    latent_l2: float = setting(1e-4, ge=0.0)
    foreground_weight: float = setting(21.0, ge=0.0)  # loss weight of pixels away from the median background (sprites) vs the rest


@dataclass
class TeacherStage(Stage):
    max_minutes: float = setting(40.0, gt=0.0)
    lr: float = setting(5e-4, gt=0.0, le=10.0)
    warmup_steps: int = setting(200, ge=0)
    val_every: int = setting(1000, ge=1)
    ema_decay: float = setting(0.999, ge=0.0, le=1.0)
    max_context_noise: float = setting(0.3, ge=0.0, le=10.0)
    init: str | None = setting(None, check=_path)  # a checkpoint folder whose teacher/ this stage continues (a longer teacher; same model shape)
    rare_share: float = setting(0.0, ge=0.0, le=1.0)  # share of each batch from windows around the game's events (rewards, ends)
    rare_radius: int = setting(2, ge=0, le=64)  # an event within this many frames of the target makes a window rare
    rare_unbiased: bool = False  # with rare_share: weight the denoiser's loss by each window's sampling odds, so it learns the game's own odds of events (the chance code still sees many)
    prior_weight: float = setting(1.0, ge=0.0, le=100.0)  # chance code: weight of the prior's cross-entropy on the posterior's code
    usage_weight: float = setting(0.0, ge=0.0, le=100.0)  # chance code: weight of the posterior's diversity loss (wav2vec 2.0's; pushes every value into use)
    rate_weight: float = setting(0.0, ge=0.0, le=100.0)  # chance code: weight of KL(posterior || prior), nats a frame: each frame pays for what its code says that the prior could not foresee, so the code carries the game's chance, not detail
    posterior_noise: bool = False  # chance code: draw the posterior's code by Gumbel-max (true) or take its most likely value (false, Stochastic MuZero's chance encoder)
    prior_drawn_odds: bool = False  # chance code: the prior learns from the windows as drawn (rare_share oversamples events: far more to learn from; its odds of them a little high) instead of weighted to the game's own odds
    prior_batch: int = setting(0, ge=0, le=65536)  # chance code: more windows each step that train only the prior (its targets: the posterior's code, the data's event), drawn as the batch is; the prior is small and events rare, so it learns from many more windows than the denoiser can afford


@dataclass
class DistillStage(Stage):
    steps: int = setting(0, ge=0)  # 0 (shipped): the stage only copies the teacher into denoiser/; 20000 with max_minutes 8 was measured
    max_minutes: float = setting(8.0, gt=0.0)
    lr: float = setting(5e-5, gt=0.0, le=10.0)
    warmup_steps: int = setting(50, ge=0)
    huber_c: float = setting(0.001, gt=0.0)
    target_ema: float = setting(0.95, ge=0.0, le=1.0)
    own_rollout_frac: float = setting(0.5, ge=0.0, le=1.0)  # share of batches whose context is the student's own rollout (1..unroll frames)
    unroll: int = setting(4, ge=0, le=1024)
    val_horizon: int = setting(200, ge=1)  # validated on dreams of this length: objects must survive, not only PSNR
    val_dreams: int = setting(16, ge=1, le=4096)


@dataclass
class RolloutStage(Stage):
    steps: int = setting(0, ge=0)  # 0 (shipped): the stage keeps the denoiser as it is; 100000 with max_minutes 12 was measured
    max_minutes: float = setting(12.0, gt=0.0)
    batch_size: int = setting(16, ge=1, le=65536)
    lr: float = setting(5e-5, gt=0.0, le=10.0)
    warmup_steps: int = setting(20, ge=0)
    val_every: int = setting(250, ge=1)
    unroll: int = setting(4, ge=1, le=1024)  # longest own-rollout context, frames
    unroll_every: int = setting(150, ge=1)  # curriculum: the longest unroll grows by one frame every this many steps
    sampler_steps: int = setting(2, choices=list(STEP_COUNTS))  # LCM steps of the no-grad rollout
    train_steps: list[int] = setting([1, 2, 4], choices=list(STEP_COUNTS), nonempty=True)  # sampler step counts whose exit step is trained (drawn per batch)
    val_horizon: int = setting(200, ge=1)  # frames of the validation dreams (objects must survive their second half)
    val_dreams: int = setting(16, ge=1, le=4096)


@dataclass
class EventsStage(Stage):
    steps: int = setting(4000, ge=0)
    max_minutes: float = setting(8.0, gt=0.0)
    batch_size: int = setting(64, ge=1, le=65536)
    val_every: int = setting(500, ge=1)
    rare_share: float = setting(0.5, ge=0.0, le=1.0)  # share of each batch from windows whose target holds a reward or an end
    latent_noise: float = setting(0.2, ge=0.0, le=10.0)  # noise on the latents it sees, ~U(0, this): a dream's latents are not the real ones


@dataclass
class AgentStage(Stage):
    steps: int = setting(100000, ge=0)  # the minute budget stops it
    max_minutes: float = setting(25.0, gt=0.0)
    batch_size: int = setting(32, ge=1, le=65536)  # dreams per step, each from a real context of the data
    lr: float = setting(1e-3, gt=0.0, le=10.0)
    warmup_steps: int = setting(20, ge=0)
    val_every: int = setting(100, ge=1)
    horizon: int = setting(15, ge=1, le=10000)  # frames each dream runs; the value bootstraps past them
    sampler_steps: int = setting(2, choices=list(STEP_COUNTS))  # steps of the play sampler in the dreams (1-2 keep Bouncer's objects this far)
    gamma: float = setting(0.985, ge=0.0, le=1.0)  # discount per frame (~70 frames ahead)
    lam: float = setting(0.95, ge=0.0, le=1.0)  # λ of the λ-returns
    reward: str = setting("sign", choices=["sign", "expected"])  # the dream's reward: the event head's sign (-1/0/+1), or P(+) - P(-) (graded: for a head that is unsure of dreamed frames, Boxing's)
    epochs: int = setting(4, ge=1, le=1000)  # optimizer steps on each batch of dreams (the dreams cost, the updates hardly)
    clip: float = setting(0.2, gt=0.0, le=10.0)  # PPO's clip of the policy ratio: how far those steps may move it from the policy that dreamed
    entropy: float = setting(0.01, ge=0.0, le=10.0)  # weight of the policy's entropy bonus against standardised advantages (keeps it exploring)
    val_dreams: int = setting(64, ge=1, le=4096)  # held-out dreams per validation (fixed contexts and seeds)
    val_horizon: int = setting(60, ge=1, le=100000)  # their length, frames


@dataclass
class Recipe:
    vae: VaeStage = field(default_factory=VaeStage)
    teacher: TeacherStage = field(default_factory=TeacherStage)
    distill: DistillStage = field(default_factory=DistillStage)
    rollout: RolloutStage = field(default_factory=RolloutStage)
    events: EventsStage = field(default_factory=EventsStage)
    agent: AgentStage = field(default_factory=AgentStage)


TRAIN_STAGES = ("vae", "teacher", "distill", "rollout", "events", "agent")


def _data_folders(value: Any) -> str | None:
    ok = isinstance(value, str) or (isinstance(value, (list, ListConfig)) and 0 < len(value) <= 64
                                     and all(isinstance(v, str) for v in value))
    if not ok:
        return "must be a folder, or a list of folders like [data/bouncer,sessions]"
    return next(filter(None, map(_path, [value] if isinstance(value, str) else value)), None)


def _stage(value: Any) -> str | None:
    return None if value in (*TRAIN_STAGES, "all") else f"choose one of {', '.join(TRAIN_STAGES)} or all"


@dataclass
class TrainSettings:
    stage: str = setting("all", check=_stage)  # vae | teacher | distill | rollout | events | agent | all (in that order)
    data: Any = setting("data/bouncer", check=_data_folders)  # a folder of episodes, or a list like [data/boxing,sessions]
    out: str = setting("runs/bouncer", check=_path)  # the checkpoint folder written (loadable after every stage)
    device: str = setting("auto", check=_device)
    threads: int = setting(0, ge=0, le=1024)  # torch CPU threads (0 = 1 on CPU: robust when another process takes a core)
    seed: int = setting(0, ge=0, le=SEED_MAX)
    resume: bool = True  # continue from out/state_<stage>.pt when present
    overwrite: bool = False  # replace stages out= already holds (trained by another run, or with no state to resume) instead of refusing
    val_fraction: float = setting(0.05, gt=0.0, lt=1.0)  # the last 5% of episode files are held out
    save_every: int = setting(500, ge=1)  # steps between resumable state saves
    progress: bool = True
    model: ModelShape = field(default_factory=ModelShape)
    train: Recipe = field(default_factory=Recipe)


SCHEMAS = {
    "serve": ServeSettings,
    "play": PlaySettings,
    "bench": BenchSettings,
    "collect": CollectSettings,
    "replay": ReplaySettings,
    "eval": EvalSettings,
    "train": TrainSettings,
    "export-web": ExportWebSettings,
}


def register() -> None:
    """Each schema as ``<command>_schema`` in hydra's ConfigStore: the base conf/<command>.yaml names."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for command, schema in SCHEMAS.items():
        store.store(name=f"{command}_schema", node=schema)


register()


def validate(command: str, cfg: DictConfig) -> Any:
    """The typed settings of ``cfg`` (a dataclass instance of SCHEMAS[command]), or SettingError for
    the first setting its schema does not allow."""
    resolved = _resolved(cfg)  # interpolations first: the checks below judge the values they give
    plain = OmegaConf.masked_copy(resolved, [k for k in resolved if k != "game"])
    merged = check(SCHEMAS[command], plain)
    if "game" in resolved:
        resolve_game(OmegaConf.to_container(resolved.game))
    relations = {"train": _train_relations, "eval": _eval_relations, "play": _display_relations, "bench": _display_relations,
                 "serve": _serve_relations}.get(command)
    if relations:
        relations(merged)
    if "game" in resolved:
        merged.game = OmegaConf.to_container(resolved.game)
    return OmegaConf.to_object(merged)


def _raw(cfg: DictConfig, dotted: str) -> Any:
    """The unresolved value at ``dotted`` (e.g. ``${oc.env:X}``), or the key itself when it is not there."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node._get_node(part) if isinstance(node, DictConfig) else None
        if node is None:
            return dotted
    return node._value()


def _resolved(cfg: DictConfig) -> DictConfig:
    """``cfg`` without hydra's node, every interpolation (``${oc.env:X}``, ``${oc.decode:...}``, a
    reference to another setting) replaced by its value; one line naming the setting that cannot be."""
    from omegaconf.errors import OmegaConfBaseException

    out: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            continue
        try:
            node = cfg[key]
            out[key] = (OmegaConf.to_container(node, resolve=True, enum_to_str=True)
                        if isinstance(node, (DictConfig, ListConfig)) else node)
        except OmegaConfBaseException as e:
            where = str(getattr(e, "full_key", "") or key)
            shown = _raw(cfg, where)  # the text the user typed
            reason = " ".join(str(e).split("\n")[0].split())[:160]
            raise SettingError(where, shown, f"cannot be resolved ({reason})") from None
    return OmegaConf.create(out)


def check_overrides(command: str, overrides: list[str]) -> None:
    """Our one-line message for the first command-line value of ``overrides`` that does not fit its
    type (hydra refuses it too, but its message does not name the setting); nothing if all fit.
    Each value of a ``-m`` sweep is checked on its own; config-group choices are hydra's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = {"game", "model", "train", "hydra", "hydra/launcher"}
    values: dict[str, list[Any]] = {}
    for o in OverridesParser.create().parse_overrides([x for x in overrides if not x.startswith("-")]):
        key = o.key_or_group
        if key in groups or key.split(".")[0] in ("game", "hydra") or o.is_delete():
            continue
        values[key] = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
    for key, options in values.items():
        for value in options:
            data = OmegaConf.create()
            OmegaConf.update(data, key, value, force_add=True)
            check(SCHEMAS[command], data)


def _train_relations(cfg: Any) -> None:
    den = cfg.model.denoiser
    groups = den.norm_num_groups
    if not OmegaConf.is_interpolation(den, "block_out_channels") and any(c % groups for c in den.block_out_channels):
        raise SettingError(
            "model.denoiser.norm_num_groups", groups, f"must divide every block_out_channels ({show(den.block_out_channels)})"
        )
    if den.variant == DenoiserVariant.feature_cache and not OmegaConf.is_interpolation(den, "step_block_out_channels"):
        steps = den.step_block_out_channels
        if len(steps) != len(den.block_out_channels) or any(c % groups for c in steps):
            raise SettingError("model.denoiser.step_block_out_channels", steps,
                               f"needs one width per level of block_out_channels ({show(den.block_out_channels)}), "
                               f"each a multiple of norm_num_groups ({groups})")
    if cfg.model.chance.event_group and (den.chance_groups < 1 or den.chance_values < 6):
        raise SettingError("model.chance.event_group", True, "needs model.denoiser.chance_groups >= 1 and "
                           f"chance_values >= 6 (its six events), not {den.chance_groups} x {den.chance_values}")


def _eval_relations(cfg: Any) -> None:
    check_steps("rollout_steps", cfg.rollout_steps, cfg.sampler)
    _spacing_relation(cfg)
    if any(h >= cfg.episode_frames for h in cfg.horizons):
        raise SettingError("horizons", cfg.horizons, f"each must be < episode_frames ({cfg.episode_frames}): the context comes first")
    if not any(h <= cfg.rollout_frames for h in cfg.object_horizons):  # longer ones are skipped
        raise SettingError("object_horizons", cfg.object_horizons, f"at least one must be <= rollout_frames ({cfg.rollout_frames})")


def frames_per_tick(fps: float, display_hz: float) -> int:
    """Frames the window shows per model frame: 1 when ``display_hz`` is 0 (off), else
    ``display_hz / fps``, which must be a whole number of at least 2."""
    given, fps, display_hz = display_hz, float(fps), float(display_hz)
    if display_hz == 0:
        return 1
    if display_hz < 0:
        raise SettingError("display_hz", given, "must be 0 (off) or a whole multiple (2x or more) of fps")
    if fps <= 0:
        raise SettingError("display_hz", given, "needs a paced model tick: set fps > 0 (or display_hz=0)")
    n = round(display_hz / fps)
    if n < 2 or abs(n * fps - display_hz) > 1e-6 * display_hz:
        choices = ", ".join(f"{k * fps:g}" for k in (2, 3, 4))
        raise SettingError("display_hz", given, f"must be 0 (off) or a whole multiple of fps={fps:g} ({choices}, ...)")
    return n


def _display_relations(cfg: Any) -> None:
    check_steps("steps", cfg.steps, cfg.sampler)
    _spacing_relation(cfg)
    if cfg.fps is not None:  # play's null: the game's own rate, checked again once known (commands/play.py)
        frames_per_tick(cfg.fps, cfg.display_hz)  # raises SettingError: 0, or a whole multiple (2x or more) of fps


def _spacing_relation(cfg: Any) -> None:
    if cfg.spacing is not None and cfg.sampler == Sampler.lcm:
        raise SettingError("spacing", cfg.spacing, "LCM has its own timesteps; leave spacing unset with sampler=lcm")


def _serve_relations(cfg: Any) -> None:
    if cfg.sampler == Sampler.teacher:
        raise SettingError("sampler", "teacher", "serve runs the play samplers: lcm, ddim or dpmsolver")
    _spacing_relation(cfg)


def plain(settings: Any) -> dict[str, Any]:
    """Typed settings (or a DictConfig) as plain data, enums as their text: for a session's metadata."""
    import dataclasses
    import json

    if dataclasses.is_dataclass(settings):
        return json.loads(json.dumps(dataclasses.asdict(settings)))  # a StrEnum dumps as its text
    return OmegaConf.to_container(settings, resolve=True, enum_to_str=True)


def load(command: str, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The typed settings ``worldgame <command> *overrides`` runs with (for callers of ``run()``
    outside the CLI, e.g. tests): composed by hydra from conf/, then validated."""
    from hydra import compose, initialize_config_dir

    check_overrides(command, list(overrides))  # our line for a value of the wrong type, as the CLI gives
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
        return validate(command, compose(config_name=command, overrides=list(overrides)))


def config_dir() -> Path:
    """conf/ beside the package in a source checkout, or the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "_conf"):
        if candidate.is_dir():
            return candidate
    raise WorldgameError("the conf/ folder is missing; reinstall worldgame")
