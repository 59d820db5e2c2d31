"""Every command's settings, typed: one schema per ``conf/<command>.yaml``, checked before any work.

``validate(command, cfg)`` runs from cli.py on the composed config (and again inside each hydra
job, so ``-m`` sweeps are covered) and raises SettingError, one line naming the setting, the
value and what is allowed. Types, choices and ranges live here and nowhere else; the game's
settings are the game registry's (games/registry.py). Keys a yaml has that a schema does not list
pass unchecked, so a config can grow before its schema does.
"""

import enum
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from worldgame.games.registry import resolve as resolve_game
from worldgame.schema import SettingError, check, setting, show

SEED_MAX = 2**32 - 1
STEP_COUNTS = [1, 2, 4, 8]  # LCM steps the sampler supports (keys 1/2/4/8)
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
    import re

    ok = isinstance(value, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", value)
    return None if ok else "choose auto, cpu, mps, cuda or cuda:N"


def _host(value: Any) -> str | None:
    import re

    ok = isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9.:\-]{1,253}", value)
    return None if ok else "a host name or IP address (127.0.0.1 = this machine only, 0.0.0.0 = every interface)"


class Engine(enum.Enum):
    model = "model"
    real = "real"
    side_by_side = "side_by_side"


class Fusion(enum.Enum):
    off = "off"
    latent = "latent"
    pixel = "pixel"


class View(enum.Enum):
    stream = "stream"
    lcm_steps = "lcm_steps"
    temporal = "temporal"
    world_model = "world_model"


class Interpolation(enum.Enum):
    warp = "warp"
    blend = "blend"


class Policy(enum.Enum):
    scripted = "scripted"
    random = "random"


class Sampler(enum.Enum):  # models/schedulers.SAMPLERS says what each is
    lcm = "lcm"
    ddim = "ddim"
    dpmsolver = "dpmsolver"
    teacher = "teacher"


class Spacing(enum.Enum):  # diffusers' timestep_spacing (ddim, dpmsolver, teacher)
    leading = "leading"
    trailing = "trailing"
    linspace = "linspace"


class Prediction(enum.Enum):
    sample = "sample"
    v_prediction = "v_prediction"
    epsilon = "epsilon"


# --- the window and speed settings play and bench share -------------------------------------------
@dataclass
class Display:
    fusion: Fusion = Fusion.latent
    fusion_window: int = setting(4, ge=0, le=64)
    fusion_base: float = setting(1.618, gt=0.0, le=1000.0)
    view: View = View.stream
    scale: int = setting(8, ge=1, le=32)
    device: str = setting("auto", check=_device)
    half: bool | None = None
    optimize: bool = True
    threads: int = setting(0, ge=0, le=1024)
    backend: str = setting("auto", choices=["auto", "torch", "onnx"])
    display_hz: float = setting(0.0, ge=0.0, le=1000.0)  # 0 = off; else a whole multiple of fps (runtime/tsr.py)
    display_interp: Interpolation = Interpolation.warp


@dataclass
class PlaySettings(Display):
    engine: Engine = Engine.model
    checkpoint: str | None = None
    record: bool = False
    sessions: str = "sessions"
    seed: int | None = setting(None, ge=0, le=SEED_MAX)
    steps: int = setting(4, choices=STEP_COUNTS)
    sampler: Sampler | None = None  # None: the checkpoint's play default (worldgame.json "play"; LCM without one)
    spacing: Spacing | None = None  # None: the sampler's default
    fps: float = setting(30.0, ge=0.0, le=1000.0)
    frames: int = setting(0, ge=0)


@dataclass
class BenchSettings(Display):
    checkpoint: str | None = None
    steps: list[int] = setting(STEP_COUNTS[:3], ge=1, le=TEACHER_STEPS_MAX, nonempty=True)  # check_steps: 1/2/4/8 for lcm
    sampler: Sampler | None = None
    spacing: Spacing | None = None
    frames: int = setting(300, ge=2, le=10_000_000)
    warmup: int = setting(30, ge=0, le=1_000_000)
    soak_frames: int = setting(10000, ge=1)
    seed: int = setting(0, ge=0, le=SEED_MAX)
    display: bool = False
    fps: float = setting(30.0, gt=0.0, le=1000.0)  # the play tick rate display_hz divides (bench itself runs unpaced)


@dataclass
class CollectSettings:
    policy: Policy = Policy.scripted
    sticky: float = setting(0.8, ge=0.0, lt=1.0)
    episodes: int = setting(10, ge=1, le=1_000_000)
    steps: int = setting(1000, ge=1, le=10_000_000)
    seed: int = setting(0, ge=0, le=SEED_MAX)
    out: str | None = None
    progress: bool = True


@dataclass
class ReplaySettings:
    path: str | None = None
    episode: int = 0
    fps: float = setting(30.0, gt=0.0, le=1000.0)
    scale: int = setting(8, ge=1, le=32)
    export: str | None = None
    hud: bool = False
    progress: bool = True
    regenerate: bool = False
    device: str = setting("auto", check=_device)


@dataclass
class EvalSettings:
    checkpoint: str | None = None
    device: str = setting("auto", check=_device)
    threads: int = setting(0, ge=0, le=1024)
    seed: int = setting(10000, ge=0, le=SEED_MAX)
    episodes: int = setting(4, ge=1, le=10_000)
    episode_frames: int = setting(400, ge=16, le=1_000_000)
    samples: int = setting(256, ge=1, le=1_000_000)
    steps: list[int] = setting(STEP_COUNTS[:3], choices=STEP_COUNTS, nonempty=True)
    teacher_steps: int = setting(50, ge=1, le=1000)
    rollout_frames: int = setting(1000, ge=1, le=1_000_000)
    rollout_steps: int = setting(4, ge=1, le=TEACHER_STEPS_MAX)  # check_steps: 1/2/4/8 for lcm
    sampler: Sampler | None = None
    spacing: Spacing | None = None
    long_rollouts: int = setting(8, ge=1, le=1024)
    horizons: list[int] = setting([1, 10, 100], ge=1, nonempty=True)
    horizon_rollouts: int = setting(16, ge=1, le=4096)
    context_noise: float | None = setting(None, ge=0.0, le=10.0)
    out: str | None = None
    object_horizons: list[int] = setting([10, 100], ge=1, nonempty=True)
    fusion: Fusion = Fusion.off
    fusion_window: int = setting(4, ge=0, le=64)
    fusion_base: float = setting(1.618, gt=0.0, le=1000.0)
    control_contexts: int = setting(8, ge=0, le=1024)
    control_frames: int = setting(12, ge=1, le=1000)


# --- train: the run, the model's shape (conf/model) and each stage's recipe (conf/train) ----------
@dataclass
class VaeShape:
    latent_channels: int = setting(4, ge=1, le=64)
    downscale: int = setting(4, choices=[1, 2, 4, 8, 16])
    width: int = setting(48, ge=1, le=1024)
    encoder_blocks: int = setting(2, ge=0, le=32)
    decoder_blocks: int = setting(3, ge=0, le=32)


@dataclass
class DenoiserShape:
    context_length: int = setting(4, ge=1, le=64)
    latent_channels: int = setting(4, ge=1, le=64)
    latent_size: int = setting(16, ge=1, le=256)
    block_out_channels: list[int] = setting([32, 64, 96], ge=1, le=4096, nonempty=True)
    layers_per_block: int = setting(1, ge=1, le=16)
    action_dim: int = setting(32, ge=1, le=4096)
    norm_num_groups: int = setting(8, ge=1, le=1024)


@dataclass
class ModelShape:
    vae: VaeShape = field(default_factory=VaeShape)
    denoiser: DenoiserShape = field(default_factory=DenoiserShape)
    prediction_type: Prediction = Prediction.sample
    play_context_noise: float = setting(0.05, ge=0.0, le=10.0)


@dataclass
class Stage:
    steps: int = setting(1000, ge=1)
    max_minutes: float = setting(10.0, gt=0.0)
    batch_size: int = setting(32, ge=1, le=65536)
    lr: float = setting(1e-3, gt=0.0, le=10.0)
    weight_decay: float = setting(0.0, ge=0.0)
    warmup_steps: int = setting(0, ge=0)
    val_every: int = setting(100, ge=1)


@dataclass
class VaeStage(Stage):
    latent_noise: float = setting(0.05, ge=0.0)
    latent_l2: float = setting(1e-4, ge=0.0)
    foreground_weight: float = setting(1.0, ge=0.0)


@dataclass
class TeacherStage(Stage):
    ema_decay: float = setting(0.999, ge=0.0, le=1.0)
    max_context_noise: float = setting(0.3, ge=0.0, le=10.0)
    init: str | None = None  # a checkpoint folder whose teacher/ the stage starts from (a longer teacher)
    rare_share: float = setting(0.0, ge=0.0, le=1.0)  # share of each batch from windows around the game's events
    rare_radius: int = setting(2, ge=0, le=64)  # an event within this many frames of the target makes a window rare


@dataclass
class DistillStage(Stage):
    steps: int = setting(1000, ge=0)  # 0: the stage only copies the teacher into denoiser/
    huber_c: float = setting(0.001, gt=0.0)
    target_ema: float = setting(0.95, ge=0.0, le=1.0)
    own_rollout_frac: float = setting(0.0, ge=0.0, le=1.0)
    unroll: int = setting(0, ge=0, le=1024)
    val_horizon: int = setting(60, ge=1)
    val_dreams: int = setting(8, ge=1, le=4096)


@dataclass
class RolloutStage(Stage):
    steps: int = setting(1000, ge=0)  # 0: the stage keeps the denoiser as it is
    unroll: int = setting(4, ge=1, le=1024)
    unroll_every: int = setting(150, ge=1)
    sampler_steps: int = setting(2, choices=STEP_COUNTS)
    train_steps: list[int] = setting([1, 2, 4], choices=STEP_COUNTS, nonempty=True)
    val_horizon: int = setting(60, ge=1)
    val_dreams: int = setting(8, ge=1, le=4096)


@dataclass
class Recipe:
    vae: VaeStage = field(default_factory=VaeStage)
    teacher: TeacherStage = field(default_factory=TeacherStage)
    distill: DistillStage = field(default_factory=DistillStage)
    rollout: RolloutStage = field(default_factory=RolloutStage)


def _data_folders(value: Any) -> str | None:
    ok = isinstance(value, str) or (isinstance(value, (list, ListConfig)) and 0 < len(value) <= 64
                                     and all(isinstance(v, str) for v in value))
    return None if ok else "must be a folder, or a list of folders like [data/bouncer,sessions]"


@dataclass
class TrainSettings:
    stage: str = "all"
    data: Any = setting("data", check=_data_folders)
    out: str = "runs"
    device: str = setting("auto", check=_device)
    threads: int = setting(0, ge=0, le=1024)
    seed: int = setting(0, ge=0, le=SEED_MAX)
    resume: bool = True
    val_fraction: float = setting(0.05, gt=0.0, lt=1.0)
    save_every: int = setting(500, ge=1)
    progress: bool = True
    model: ModelShape = field(default_factory=ModelShape)
    train: Recipe = field(default_factory=Recipe)


@dataclass
class ServeSettings:
    checkpoint: str | None = None
    host: str = setting("127.0.0.1", check=_host)
    port: int = setting(8765, ge=0, le=65535)
    max_clients: int = setting(4, ge=1, le=64)
    idle_timeout: float = setting(300.0, ge=0.0, le=86400.0)  # seconds without a client message; 0 = never
    seed: int | None = setting(None, ge=0, le=SEED_MAX)
    steps: int = setting(4, choices=STEP_COUNTS)
    sampler: Sampler | None = None
    spacing: Spacing | None = None
    fps: float = setting(30.0, gt=0.0, le=240.0)
    fusion: Fusion = Fusion.off
    fusion_window: int = setting(4, ge=0, le=64)
    fusion_base: float = setting(1.618, gt=0.0, le=1000.0)
    view: View = View.stream
    sessions: str = "sessions"
    device: str = setting("auto", check=_device)
    half: bool | None = None
    optimize: bool = True
    threads: int = setting(0, ge=0, le=1024)
    backend: str = setting("auto", choices=["auto", "torch", "onnx"])


SCHEMAS = {
    "serve": ServeSettings,
    "play": PlaySettings,
    "bench": BenchSettings,
    "collect": CollectSettings,
    "replay": ReplaySettings,
    "eval": EvalSettings,
    "train": TrainSettings,
}


def validate(command: str, cfg: DictConfig) -> None:
    """Raise SettingError for the first setting of ``cfg`` that its schema does not allow."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("hydra", "game")])
    merged = check(SCHEMAS[command], plain)
    if "game" in cfg:
        resolve_game(OmegaConf.to_container(cfg.game, resolve=False))
    relations = {"train": _train_relations, "eval": _eval_relations, "play": _display_relations, "bench": _display_relations,
                 "serve": _serve_relations}.get(command)
    if relations:
        relations(merged)


def _train_relations(cfg: Any) -> None:
    stages = [k for k, v in cfg.train.items() if isinstance(v, DictConfig) and "steps" in v]
    if cfg.stage != "all" and cfg.stage not in stages:
        raise SettingError("stage", cfg.stage, f"choose one of {', '.join(stages)} or all")
    den = cfg.model.denoiser
    groups = den.norm_num_groups
    if not OmegaConf.is_interpolation(den, "block_out_channels") and any(c % groups for c in den.block_out_channels):
        raise SettingError(
            "model.denoiser.norm_num_groups", groups, f"must divide every block_out_channels ({show(den.block_out_channels)})"
        )


def _eval_relations(cfg: Any) -> None:
    check_steps("rollout_steps", cfg.rollout_steps, cfg.sampler and cfg.sampler.value)
    _spacing_relation(cfg)
    if any(h >= cfg.episode_frames for h in cfg.horizons):
        raise SettingError("horizons", cfg.horizons, f"each must be < episode_frames ({cfg.episode_frames}): the context comes first")
    if not any(h <= cfg.rollout_frames for h in cfg.object_horizons):  # longer ones are skipped
        raise SettingError("object_horizons", cfg.object_horizons, f"at least one must be <= rollout_frames ({cfg.rollout_frames})")


def _display_relations(cfg: Any) -> None:
    from worldgame.runtime.tsr import frames_per_tick  # numpy only

    if "sampler" in cfg:
        check_steps("steps", cfg.steps, cfg.sampler and cfg.sampler.value)
        _spacing_relation(cfg)

    frames_per_tick(cfg.fps, cfg.display_hz)  # raises SettingError: 0, or a whole multiple (2x or more) of fps


def _spacing_relation(cfg: Any) -> None:
    if cfg.spacing is not None and cfg.sampler is Sampler.lcm:
        raise SettingError("spacing", cfg.spacing.value, "LCM has its own timesteps; leave spacing unset with sampler=lcm")


def _serve_relations(cfg: Any) -> None:
    if cfg.sampler is Sampler.teacher:
        raise SettingError("sampler", "teacher", "serve runs the play samplers: lcm, ddim or dpmsolver")
    _spacing_relation(cfg)
