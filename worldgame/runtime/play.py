"""`worldgame play`: the game window, with the world model (default), the real game, or both."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from worldgame.errors import WorldgameError
from worldgame.games import make_game
from worldgame.runtime.controls import ScriptItem
from worldgame.runtime.engines import Engine, RealEngine, configure_threads
from worldgame.runtime.hud import HUD_LINES
from worldgame.runtime.loop import FrameInfo, LoopSummary, PlayLoop
from worldgame.runtime.session import SessionRecorder, checkpoint_id
from worldgame.runtime.views import View
from worldgame.runtime.window import Window, require_display

ENGINES = ("model", "real", "side_by_side")
FUSION_MODES = ("off", "latent", "pixel")  # fusion.FusionMode's values (not imported: it loads torch)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Entry point of ``worldgame play`` (hydra config: conf/play.yaml)."""
    summary = play(cfg)
    line = f"played {summary.frames} frames at {summary.fps:.1f} FPS, p95 latency {summary.latency_ms['p95']:.1f} ms"
    if summary.sessions:
        line += "; sessions: " + ", ".join(summary.sessions)
    print(line)
    return {"frames": summary.frames, "fps": summary.fps, "sessions": summary.sessions}


def play(
    cfg: DictConfig,
    script: Iterable[ScriptItem] | None = None,
    on_frame: Callable[[FrameInfo], None] | None = None,
) -> LoopSummary:
    """Open the window and run the loop; ``script``/``on_frame`` drive it headless (tests)."""
    check_settings(cfg)
    require_display()
    seed = int(cfg.seed) if cfg.seed is not None else random.randrange(1 << 24)
    engine, metadata = make_engine(cfg, seed)
    metadata["scripted"] = script is not None
    window = Window(engine.frame_size, int(cfg.scale), hud_lines=HUD_LINES, title=f"worldgame — {metadata['game']} ({engine.kind})")
    try:
        loop = PlayLoop(
            engine,
            window,
            fps=float(cfg.fps),
            seed=seed,
            view=View.WORLD_MODEL if cfg.engine == "side_by_side" else cfg.view,
            recorder=SessionRecorder(cfg.sessions, metadata),
            record=bool(cfg.record),
            script=script,
            max_frames=int(cfg.frames),
            on_frame=on_frame,
        )
        return loop.run()
    finally:
        window.close()


def check_settings(cfg: DictConfig) -> None:
    """One clear line for a bad value, before anything is loaded."""
    if cfg.engine not in ENGINES:
        raise WorldgameError(f"engine={cfg.engine!r}: choose one of {', '.join(ENGINES)}")
    if int(cfg.steps) not in (1, 2, 4, 8):
        raise WorldgameError(f"steps={cfg.steps}: choose 1, 2, 4 or 8")
    if str(cfg.fusion).lower() not in FUSION_MODES:
        raise WorldgameError(f"fusion={cfg.fusion!r}: choose one of {', '.join(FUSION_MODES)}")
    if str(cfg.view).lower() not in [v.value for v in View]:
        raise WorldgameError(f"view={cfg.view!r}: choose one of {', '.join(v.value for v in View)}")
    if int(cfg.fusion_window) < 0 or float(cfg.fusion_base) <= 0:
        raise WorldgameError("fusion_window must be >= 0 and fusion_base > 0")
    if float(cfg.fps) < 0 or int(cfg.scale) < 1 or int(cfg.frames) < 0:
        raise WorldgameError("fps must be >= 0, scale >= 1 and frames >= 0")


def game_of(cfg: DictConfig) -> Any:
    """The game to run: the one a given checkpoint was trained on, unless ``game=`` was chosen on
    the command line (then the two must agree, which ``load_model`` checks)."""
    if cfg.get("checkpoint") and cfg.get("engine", "model") != "real" and not _game_chosen():
        from worldgame.models.checkpoint_checks import read_metadata
        from worldgame.models.world_model import METADATA

        meta_file = Path(cfg.checkpoint) / METADATA
        if meta_file.is_file():  # a missing one is reported by load_model with the full story
            return make_game(read_metadata(meta_file)["game_config"])
    return make_game(cfg.game)


def _game_chosen() -> bool:
    """Did the command line choose the game (``game=…`` or ``game.<setting>=…``)?"""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = HydraConfig.get().overrides.task
    except ValueError:  # called as a library, not through the CLI: cfg.game is the caller's choice
        return True
    return any(o.lstrip("+~").split("=")[0].split(".")[0] == "game" for o in task)


def make_engine(cfg: DictConfig, seed: int) -> tuple[Engine, dict[str, Any]]:
    """The engine ``cfg`` asks for, and the session metadata that describes it."""
    game = game_of(cfg)
    metadata: dict[str, Any] = {
        "game": game.name,
        "game_config": OmegaConf.to_container(cfg.game, resolve=True),
        "frame_size": game.frame_size,
        "action_names": list(game.action_names),
        "policy": "human" if cfg.engine == "real" else "model",
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if cfg.engine == "real":
        return RealEngine(game), metadata
    import torch

    from worldgame.runtime.model_engine import ModelEngine

    model = load_model(cfg.checkpoint, game.name, game.frame_size, cfg.device, cfg.half)
    configure_threads(int(cfg.threads), model.device)
    engine = ModelEngine(
        model,
        steps=int(cfg.steps),
        fusion=cfg.fusion,
        fusion_window=int(cfg.fusion_window),
        fusion_base=float(cfg.fusion_base),
        seed=seed,
        optimize=bool(cfg.optimize),
    )
    metadata.update(
        game_config=model.metadata["game_config"],
        checkpoint=str(Path(model.path).resolve()),
        checkpoint_id=checkpoint_id(model.path),
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        optimized=engine.optimized,
        threads=torch.get_num_threads(),
        fusion_window=int(cfg.fusion_window),
        fusion_base=float(cfg.fusion_base),
        context_length=model.context_length,
    )
    return engine, metadata


def load_model(checkpoint: str | None, game: str, frame_size: int, device: str, half: bool | None) -> Any:
    """Load ``checkpoint`` (None = the game's shipped one) and check it was trained on ``game``."""
    from worldgame.models.world_model import WorldModel, default_checkpoint

    path = Path(checkpoint) if checkpoint else default_checkpoint(game)
    if not checkpoint and not path.is_dir():
        raise WorldgameError(
            f"no checkpoint shipped for {game} (looked in {path}); pass checkpoint=DIR "
            "(make one with `worldgame train`), or play the real game with engine=real"
        )
    model = WorldModel.from_pretrained(path, device=device, half=half)
    model.check_game(game, frame_size)
    return model
