"""Every command's settings, typed once: one dataclass per command, registered in hydra's ConfigStore
as the base of ``conf/<command>.yaml`` (which adds only defaults-list choices and comments).

Each field's default is the one default of that setting, and its comment is its documentation
(``worldgame <command> --cfg job`` prints them all). hydra enforces the types; ``validate()`` is the
one post-pass for ranges, choices and relations between settings, and returns the typed object
each command's ``run()`` receives. Every problem is one line naming the setting, the value and what
is allowed (schema.SettingError). The game's settings are the game registry's (games/registry.py):
a mapping here, checked there.

One concern a file, each importing only the ones listed before it:

* fields.py: the checks a setting names (device, host, path, checkpoint folder, step counts) and
  one StrEnum per concept (Engine, Backend, Sampler, ...);
* play.py: the model and speed settings play, bench and serve share (Runtime, Window, GameOver),
  and PlaySettings, BenchSettings, ServeSettings;
* commands.py: CollectSettings, ReplaySettings, ExportWebSettings, EvalSettings;
* train.py: the model's shape, each stage's recipe and TrainSettings;
* this file: SCHEMAS and their registration, ``validate()`` with the relations between settings,
  ``load()``, ``plain()`` and ``config_dir()``. It re-exports the names the rest of the code imports
  from ``worldgame.settings``.
"""

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from worldgame.errors import WorldgameError
from worldgame.games.registry import resolve as resolve_game
from worldgame.schema import SettingError, check, show
from worldgame.settings.commands import CollectSettings, EvalSettings, ExportWebSettings, ReplaySettings
from worldgame.settings.fields import (
    NAME_MAX,
    PATH_MAX,
    SEED_MAX,
    SHIPPED_CHECKPOINTS,
    TEACHER_STEPS_MAX,
    Backend,
    DenoiserVariant,
    Engine,
    Policy,
    PosteriorNet,
    Precision,
    Prediction,
    PriorNet,
    Sampler,
    Spacing,
    check_steps,
    did_you_mean,
)
from worldgame.settings.play import BenchSettings, GameOver, PlaySettings, Runtime, ServeSettings, Window
from worldgame.settings.train import (
    TRAIN_STAGES,
    AgentShape,
    AgentStage,
    ChanceShape,
    DenoiserShape,
    DistillStage,
    EventsShape,
    EventsStage,
    ModelShape,
    Recipe,
    RolloutStage,
    Stage,
    TeacherStage,
    TrainSettings,
    VaeShape,
    VaeStage,
)
from worldgame.vocabulary import PHI, STEP_COUNTS, Interpolation, View  # the shared words
from worldgame.vocabulary import FusionMode as Fusion  # the fusion modes (the loop's F key cycles them)

# the public names, and the private one engine/session_checks.py calls
__all__ = [
    "NAME_MAX",
    "PATH_MAX",
    "PHI",
    "SCHEMAS",
    "SEED_MAX",
    "SHIPPED_CHECKPOINTS",
    "STEP_COUNTS",
    "TEACHER_STEPS_MAX",
    "TRAIN_STAGES",
    "AgentShape",
    "AgentStage",
    "Backend",
    "BenchSettings",
    "ChanceShape",
    "CollectSettings",
    "DenoiserShape",
    "DenoiserVariant",
    "DistillStage",
    "Engine",
    "EvalSettings",
    "EventsShape",
    "EventsStage",
    "ExportWebSettings",
    "Fusion",
    "GameOver",
    "Interpolation",
    "ModelShape",
    "PlaySettings",
    "Policy",
    "PosteriorNet",
    "Precision",
    "Prediction",
    "PriorNet",
    "Recipe",
    "ReplaySettings",
    "RolloutStage",
    "Runtime",
    "Sampler",
    "ServeSettings",
    "SettingError",
    "Spacing",
    "Stage",
    "TeacherStage",
    "TrainSettings",
    "VaeShape",
    "VaeStage",
    "View",
    "Window",
    "_spacing_relation",
    "check_overrides",
    "check_steps",
    "config_dir",
    "did_you_mean",
    "frames_per_tick",
    "load",
    "plain",
    "register",
    "validate",
]


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
    if cfg.train.teacher.prior_only and not (den.chance_groups and cfg.train.teacher.init):
        raise SettingError("train.teacher.prior_only", True, "trains only a chance code's prior: it needs "
                           "model.denoiser.chance_groups >= 1 and train.teacher.init= a checkpoint with that code")
    if cfg.model.chance.prior_chain and cfg.model.chance.prior_net != PriorNet.local:
        raise SettingError("model.chance.prior_chain", True, "draws each group given the groups before it, which only "
                           "the local prior can: set model.chance.prior_net=local, or prior_chain=false")
    learnt = den.chance_groups - bool(cfg.model.chance.event_group)
    if cfg.model.chance.posterior_net == PosteriorNet.where and den.chance_groups and \
            (learnt not in (2, 4) or math.isqrt(den.chance_values) ** 2 != den.chance_values or
             den.latent_size != math.isqrt(den.chance_values) ** 2):
        raise SettingError("model.chance.posterior_net", "where", "names each place by two learnt groups (block, then cell): "
                           f"it needs 2 or 4 groups besides the event group (one or two places; not {learnt}) and chance_values "
                           f"= model.denoiser.latent_size ({den.latent_size}) as a square grid of square blocks "
                           f"(16 for a 16x16 latent), not {den.chance_values}")
    kinds = 6 + bool(cfg.model.chance.appeared)
    if cfg.model.chance.event_group and (den.chance_groups < 1 or den.chance_values < kinds):
        raise SettingError("model.chance.event_group", True, "needs model.denoiser.chance_groups >= 1 and "
                           f"chance_values >= {kinds} (its {kinds} events), not {den.chance_groups} x {den.chance_values}")
    if cfg.model.chance.appeared and not cfg.model.chance.event_group:
        raise SettingError("model.chance.appeared", True, "names an object's appearance as one more event: "
                           "set model.chance.event_group=true too")


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
    here = Path(__file__).resolve().parents[1]  # worldgame/ (this file is worldgame/settings/__init__.py)
    for candidate in (here.parent / "conf", here / "_conf"):
        if candidate.is_dir():
            return candidate
    raise WorldgameError("the conf/ folder is missing; reinstall worldgame")
