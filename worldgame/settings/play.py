"""The model and speed settings play, bench and serve share (Runtime, Window, GameOver), and the three
commands' settings built from them."""

from dataclasses import dataclass, field
from typing import Any

from worldgame.schema import setting
from worldgame.settings.fields import (
    SEED_MAX,
    TEACHER_STEPS_MAX,
    Backend,
    Engine,
    Precision,
    Sampler,
    Spacing,
    _checkpoint,
    _device,
    _host,
    _path,
)
from worldgame.vocabulary import PHI, STEP_COUNTS, Interpolation, View  # the shared words
from worldgame.vocabulary import FusionMode as Fusion  # the fusion modes (the loop's F key cycles them)


@dataclass
class Runtime:
    checkpoint: str | None = setting(None, check=_checkpoint)  # checkpoint folder; null = the one shipped for the game (checkpoints/<game>)
    steps: int | None = setting(None, choices=list(STEP_COUNTS))  # sampling steps per frame: 1, 2, 4 or 8 (keys 1/2/4/8); null = the checkpoint's play default (worldgame.json "play" steps; 4 if none)
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
