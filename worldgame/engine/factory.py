"""The one place engines are made: play and bench from their config (:func:`make_engine`), session
regeneration from a session's metadata (:func:`model_engine` on the model it loads), and the one
thread policy they all run under (:func:`configure_threads`).

Only :func:`make_engine` for ``engine=real`` stays free of torch, so the real game starts in a second
(unless ``agent=true``: the agent plays it through the checkpoint's autoencoder).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worldgame.engine.engines import NO_AGENT, Engine, RealEngine
from worldgame.errors import WorldgameError
from worldgame.fileio import open_regular
from worldgame.games import game_metadata, make_game
from worldgame.settings import PHI, plain
from worldgame.threads import cap_threads


def exit_quickly() -> None:
    """Skip the interpreter's final garbage collections at exit: with torch, diffusers and ONNX
    Runtime loaded they walk millions of objects, 2-3 s on a 2-core machine (more under load)
    after play's window has closed, which made Esc feel slow. Everything that must be saved is
    saved before then; frozen objects are simply not collected. Call once per command run."""
    import atexit
    import gc

    atexit.register(gc.freeze)


def configure_threads(threads: int, device: Any) -> int:
    """THE thread policy: torch's CPU threads ``threads`` > 0 as given; 0 = auto, which is 1 when
    the model runs on the CPU (ONNX Runtime takes torch's count). Measured on the 2-core target:
    1 thread beats 2 for these small convolutions, and 2 OpenMP threads collapse (seconds per
    frame) as soon as another process wants a core. Returns the thread count now in use."""
    import torch

    threads = cap_threads(threads)  # never more than the machine's cores (one line when asked for more)
    if threads > 0:
        torch.set_num_threads(threads)
    elif torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    return torch.get_num_threads()


def make_engine(cfg: Any, seed: int, kind: str = "model", game: Any = None) -> tuple[Engine, dict[str, Any]]:
    """The ``kind`` of engine (settings.Engine) typed play, bench or serve settings ask for, and the
    session metadata that describes it (``tick_hz``: the game's own tick rate); ``game``: the one
    :func:`game_of` gave, when the caller already has it."""
    game = game if game is not None else game_of(cfg, kind)
    metadata: dict[str, Any] = {
        **game_metadata(game, cfg.game),
        "policy": "human" if kind == "real" else "model",
        "config": plain(cfg),
    }
    agent = bool(getattr(cfg, "agent", False))
    if kind == "real" and not agent:
        return RealEngine(game), metadata
    # importing torch and loading the model take seconds: say what is happening first
    print(f"loading {cfg.checkpoint or f'the shipped model for {game.name}'} ...", flush=True)
    say_if_compiling()
    import torch

    model = load_model(cfg.checkpoint, cfg.device, cfg.half, game, teacher=cfg.sampler == "teacher" and kind != "real")
    if agent and model.agent is None:
        raise WorldgameError(f"agent=true: {NO_AGENT.format(model.path)}")
    if kind == "real":  # the agent plays the real game through the checkpoint's autoencoder
        from worldgame.models.agent import AgentPlayer

        configure_threads(int(cfg.threads), model.device)
        return RealEngine(game, AgentPlayer(model, seed)), metadata
    from worldgame.models.world_model import play_steps

    # bench lists several: the first; null: the checkpoint's play default
    steps = play_steps(cfg.steps[0] if isinstance(cfg.steps, Sequence) else cfg.steps, model.metadata)
    engine = model_engine(model, seed, choose_sampler(model, cfg.sampler, cfg.spacing), steps=steps, fusion=cfg.fusion,
                          fusion_window=cfg.fusion_window, fusion_base=cfg.fusion_base, optimize=cfg.optimize,
                          backend=cfg.backend, threads=cfg.threads, precision=cfg.precision,  # "teacher": torch only
                          chance_temperature=cfg.chance_temperature)
    metadata.update(
        game_config=model.metadata["game_config"],
        native_size=model.metadata.get("native_size", metadata["native_size"]),
        tick_hz=model.metadata.get("tick_hz", metadata["tick_hz"]),
        checkpoint=str(Path(model.path).resolve()),
        checkpoint_id=checkpoint_id(model.path),
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        optimized=engine.optimized,
        backend=engine.backend,  # regenerate runs the same one: bit-identical only on the same backend
        precision=engine.dream.sampler.precision,  # and the same precision (fp32 / int8 on ONNX Runtime)
        threads=torch.get_num_threads(),
        fusion_window=int(cfg.fusion_window),
        fusion_base=float(cfg.fusion_base),
        context_length=model.context_length,
        sampler=engine.dream.sampler.name,  # regenerate runs the same sampler (sessions without it were LCM)
        spacing=engine.dream.sampler.spacing,
    )
    return engine, metadata


# the big imports whose first import after an install that skipped bytecode compiles ~6,000 files
HEAVY_PACKAGES = ("torch", "diffusers")


def say_if_compiling() -> None:
    """Say on stderr why this start is slow when Python must compile torch and diffusers first
    (an install without bytecode, as uv does by default): 44 s instead of 16 s of imports,
    measured on the 2-core target. Finding a module's spec imports nothing."""
    import importlib.util
    import os
    import sys

    missing = []
    for name in HEAVY_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.has_location or not str(spec.origin).endswith(".py"):
            continue
        if not os.path.exists(importlib.util.cache_from_source(spec.origin)):  # where this Python looks for it
            missing.append(name)
    if not missing:
        return
    if sys.dont_write_bytecode:  # nothing is kept: every start pays it
        print(f"note: {' and '.join(missing)} have no compiled bytecode and PYTHONDONTWRITEBYTECODE is set, so every "
              "start compiles them (~30 s); run `python -m compileall -q` on their site-packages once",
              file=sys.stderr, flush=True)
    else:
        print(f"first start after install: Python compiles {' and '.join(missing)} once (~30 s; later starts skip it) ...",
              file=sys.stderr, flush=True)


def choose_sampler(model: Any, sampler: str | None, spacing: str | None) -> tuple[str, str | None]:
    """The (sampler, spacing) to run, checked: None = the checkpoint's play default (a spacing alone
    changes the default sampler's); "teacher" needs the model loaded with its teacher/."""
    from worldgame.models.sampler import choose

    name, spacing = choose(model.metadata, sampler, spacing)
    if name == "teacher" and model.teacher is None:
        raise WorldgameError(f"sampler=teacher: checkpoint {getattr(model, 'path', '')} has no teacher/ folder "
                             "(or was loaded without it); use sampler=lcm")
    return name, spacing


def model_engine(model: Any, seed: int, sampler: tuple[str | None, str | None] = (None, None), *, steps: int = 4,
                 fusion: str = "off", fusion_window: int = 4, fusion_base: float = PHI, optimize: bool = True,
                 backend: str = "auto", threads: int = 0, precision: str | None = None,
                 chance_temperature: float = 1.0) -> Any:
    """A ModelEngine for ``model`` running ``sampler`` (name, spacing: :func:`choose_sampler`) under
    the thread policy (the settings as settings.Runtime has them)."""
    from worldgame.engine.model_engine import ModelEngine  # loads torch

    configure_threads(int(threads), model.device)
    return ModelEngine(
        model,
        steps=int(steps),
        fusion=str(fusion),
        fusion_window=int(fusion_window),
        fusion_base=float(fusion_base),
        seed=seed,
        optimize=bool(optimize),  # traces the network the sampler runs (the teacher too)
        backend=str(backend),  # the teacher: torch modules (backends.attach says so)
        precision=None if precision is None else str(precision),
        sampler=sampler[0],
        spacing=sampler[1],
        chance_temperature=float(chance_temperature),
    )


def checkpoint_id(path: str | Path) -> str:
    """A short id of a checkpoint's weights: sha256 over its vae and denoiser safetensors files."""
    h = hashlib.sha256()
    for part in ("vae", "denoiser"):
        for f in sorted((Path(path) / part).glob("*.safetensors")):
            # any name may be a FIFO or a device (a session names the folder): refused, never read forever
            with open_regular(f, f"checkpoint part {f}", "restore it or retrain the checkpoint") as fh:
                while block := fh.read(1 << 20):  # streamed: weights may be large
                    h.update(block)
    return h.hexdigest()[:16]


def game_of(cfg: Any, kind: str = "model") -> Any:
    """The game to run: the one a given checkpoint was trained on, unless ``game=`` was chosen on
    the command line (then the two must agree, which ``load_model`` checks)."""
    if cfg.checkpoint and kind != "real" and not _game_chosen():
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


def load_model(checkpoint: str | None, device: str, half: bool | None, game: Any = None, teacher: bool = False) -> Any:
    """Load ``checkpoint`` (None = ``game``'s shipped one); with ``game``, check it was trained on it;
    ``teacher``: its teacher/ network too (sampler=teacher)."""
    from worldgame.models.world_model import WorldModel, default_checkpoint

    path = Path(checkpoint) if checkpoint or game is None else default_checkpoint(game.name)
    if not checkpoint and game is not None and not path.is_dir():
        raise WorldgameError(
            f"no checkpoint shipped for {game.name} (looked in {path}); pass checkpoint=DIR "
            "(make one with `worldgame train`), or play the real game with engine=real"
        )
    model = WorldModel.from_pretrained(path, device=device, half=half, teacher=teacher)
    if game is not None:
        model.check_game(game.name, game.frame_size)
    return model
