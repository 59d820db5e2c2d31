"""Which denoiser class a setting or a checkpoint part stands for: ``model.denoiser.variant`` builds
one for training, and a saved part's ``config.json`` (diffusers' ``_class_name``) loads its own
class, so a checkpoint needs no setting to play. Parts saved before the variants existed name
ActionDenoiser, the concat variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worldgame.errors import WorldgameError
from worldgame.fileio import read_json_object
from worldgame.models.checkpoint_checks import MAX_CONFIG_BYTES
from worldgame.models.denoiser import ActionDenoiser
from worldgame.models.denoiser_cached import FeatureCacheDenoiser

DENOISERS = {"concat": ActionDenoiser, "feature_cache": FeatureCacheDenoiser}
BY_CLASS_NAME = {cls.__name__: cls for cls in DENOISERS.values()}
FEATURE_CACHE_ONLY = ("step_block_out_channels",)  # settings the concat denoiser has no use for


def build_denoiser(num_actions: int, shape: dict[str, Any]) -> ActionDenoiser | FeatureCacheDenoiser:
    """A fresh denoiser of ``shape`` (``plain(cfg.model.denoiser)``), its class chosen by ``variant``."""
    shape = dict(shape)
    variant = str(shape.pop("variant", "concat"))
    if variant not in DENOISERS:
        raise WorldgameError(f"model.denoiser.variant={variant}: choose {', '.join(DENOISERS)}")
    if variant == "concat":
        for key in FEATURE_CACHE_ONLY:
            shape.pop(key, None)
    return DENOISERS[variant](num_actions=num_actions, **shape)


def denoiser_class(folder: Path) -> type:
    """The class a saved denoiser part was made with (its config.json's ``_class_name``)."""
    if not (folder / "config.json").is_file():  # the loader says the part is missing, in its own words
        return ActionDenoiser
    config = read_json_object(folder / "config.json", MAX_CONFIG_BYTES, f"checkpoint part {folder}: config.json",
                              f"restore it (e.g. `git checkout {folder}`) or retrain it")
    name = config.get("_class_name", ActionDenoiser.__name__)
    if name not in BY_CLASS_NAME:
        raise WorldgameError(f"checkpoint part {folder}: config.json names the class {str(name)[:60]!r}, not one "
                             f"of {', '.join(BY_CLASS_NAME)}; restore or retrain it")
    return BY_CLASS_NAME[name]
