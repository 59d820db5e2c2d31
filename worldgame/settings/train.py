"""train: the run, the model's shape (conf/model) and each stage's recipe (conf/train)."""

from dataclasses import dataclass, field
from typing import Any

from omegaconf import II, ListConfig

from worldgame.schema import setting
from worldgame.settings.fields import (
    SEED_MAX,
    DenoiserVariant,
    PosteriorNet,
    Prediction,
    PriorNet,
    Sampler,
    _device,
    _path,
)
from worldgame.vocabulary import STEP_COUNTS


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
    prior_net: PriorNet = PriorNet.local  # the prior's net: local (full resolution, max-pooled) | flat (what checkpoints without the key hold)
    prior_chain: bool = True  # the prior draws the groups one after another, each given those before (the event first), so a drawn hit and the drawn respawn agree; needs prior_net=local (false: independent groups, what checkpoints without the key hold)
    posterior_net: PosteriorNet = PosteriorNet.flat  # the posterior: flat (a net that learns what its code says; what checkpoints without the key hold) | where (a rule: each pair of learnt groups names a latent cell where the real next frame departs most from what the denoiser expected knowing the event, block then cell; needs 2 or 4 groups besides the event group (one or two places) and chance_values = model.denoiser.latent_size, a square: 16 for the 16x16 grid)
    where_floor: float = setting(3.0, gt=0.0, le=1e6)  # posterior_net=where: the surprise (mean square over the latent's channels) a cell must pass to be named; below it the code names cell 0, the grid's corner (Bouncer's ordinary frames peak near 0.07, its events near 17)
    event_group: bool = False  # chance group 0 is the transition's event named by the data (nothing / point / lost, game over), drawn first at play so the picture and the HUD agree; needs chance_values >= 6
    event_width: int = setting(0, ge=0, le=1024)  # channels of the event group's own net (prior_net=local), which runs every frame at play; 0: width
    appeared: bool = False  # the event group also names an object the game put on the field by chance with no point (Bouncer's coin: the data's appeared column, written by `worldgame collect`), so a where code names its place too; needs event_group and chance_values >= 7


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
    prior_only: bool = False  # chance code: train only the prior, on the code of the teacher and posterior it continues (init=, frozen): the prior learns after the code is settled, at its own pace (its gradient is not clipped with the denoiser's)
    prior_batch: int = setting(0, ge=0, le=65536)  # chance code: more windows each step that train only the prior (its targets: the posterior's code, the data's event), drawn as the batch is; the prior is small and events rare, so it learns from many more windows than the denoiser can afford
    own_share: float = setting(0.0, ge=0.0, le=1.0)  # share of each batch whose context is the model's own dream of 1..unroll frames (with the recorded actions and, with a chance code, the real frames' codes, so it follows the recorded game), as play makes it: it learns to draw the real next frame from its own fading orbs
    unroll: int = setting(3, ge=1, le=64)  # own_share: the longest own dream, frames (drawn 1..unroll per batch)
    unroll_sampler: Sampler = Sampler.dpmsolver  # own_share: the sampler that dreams (leading spacing; the play default's), at unroll_steps
    unroll_steps: int = setting(4, choices=list(STEP_COUNTS))
    foreground_weight: float = setting(1.0, ge=1.0, le=1000.0)  # the denoiser's loss weight on latent cells where the next or the last frame departs from the game's background (objects) against the rest, normalised per frame: an orb is 2-4 of 256 cells (1: the plain mean)


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
