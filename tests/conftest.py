"""Shared fixtures. Headless SDL is set here, before any test imports pygame."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
# the ONNX export cache (models/backends/) of tiny test checkpoints stays out of ~/.cache
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="worldgame-test-cache-")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def bouncer():
    """A built-in game, reset with seed 0."""
    from worldgame.games.bouncer import Bouncer

    game = Bouncer()
    game.reset(0)
    return game


@pytest.fixture
def run_cli():
    """Run ``python -m worldgame.cli <args>`` as a user would; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
        return subprocess.run(
            [sys.executable, "-m", "worldgame.cli", *args],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def run_cli_batch(tmp_path_factory):
    """Run several ``worldgame`` command lines, in order, through the real CLI (``worldgame.cli.main``)
    in ONE driver process (tests/hostile/driver.py), so torch and hydra import once instead of once
    per command; in the repository as ``run_cli``. Returns one CompletedProcess per command line
    (an exception escaping main counts as exit 1, its traceback in stderr, as in a process of its own).
    For command lines whose outcome a test reads afterwards; not for signals, nor anything a process
    of its own must show."""
    from hostile.batch import run_driver

    def run(*argvs: list[str] | tuple[str, ...], timeout: float = 600) -> list[subprocess.CompletedProcess[str]]:
        work = tmp_path_factory.mktemp("cli_batch")
        got = run_driver([(str(i), list(a)) for i, a in enumerate(argvs)], work, timeout=timeout, cap=None, cwd=REPO)
        done = []
        for i, argv in enumerate(argvs):
            res = got[str(i)]
            rc = 1 if res["rc"] is None else res["rc"]
            done.append(subprocess.CompletedProcess([sys.executable, "-m", "worldgame.cli", *argv], rc,
                                                    res["stdout"], res["stderr"]))
        return done

    return run


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """An untrained tiny world-model checkpoint for the built-in game (loads and runs in
    milliseconds; its frames are noise, so tests check plumbing, not quality)."""
    import torch

    from worldgame.games.bouncer import ACTIONS, KEY_BINDINGS
    from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel

    torch.manual_seed(0)
    model = WorldModel(
        TinyAutoencoder(width=16, encoder_blocks=1, decoder_blocks=1),
        ActionDenoiser(num_actions=len(ACTIONS), context_length=2, block_out_channels=(16, 16), norm_num_groups=8),
        metadata={
            "game": "bouncer",
            "game_config": {"_target_": "worldgame.games.bouncer.Bouncer", "frame_size": 64},
            "frame_size": 64,
            "action_names": list(ACTIONS),
            "key_bindings": KEY_BINDINGS,
            "context_noise": 0.05,
            "prediction_type": "sample",
            "context_length": 2,
        },
    )
    path = tmp_path_factory.mktemp("checkpoints") / "tiny"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_chance_checkpoint(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint with a chance code (models/chance.py): its denoiser conditioned on a 2 x 4
    code, a chance/ part beside it (untrained: plumbing, not quality)."""
    import torch

    from worldgame.models import ActionDenoiser, WorldModel
    from worldgame.models.chance import ChanceCode

    torch.manual_seed(1)
    base = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    n = len(base.action_names)
    denoiser = ActionDenoiser(num_actions=n, context_length=2, block_out_channels=(16, 16), norm_num_groups=8,
                              chance_groups=2, chance_values=4)
    chance = ChanceCode(n, context_length=2, groups=2, values=4, width=8, hidden=32)
    for p in chance.parameters():  # logits far from uniform, so that a draw and the argmax differ in tests
        p.data.mul_(4)
    model = WorldModel(base.vae, denoiser, dict(base.metadata), chance=chance)
    path = tmp_path_factory.mktemp("checkpoints") / "tiny_chance"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_events_checkpoint(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint with a 2 x 8 chance code whose group 0 is the transition's event (its
    event_group), drawn first by the local prior and the other group given it (prior_chain), and no event head: its dream's points and game overs are
    drawn (untrained)."""
    import torch

    from worldgame.models import ActionDenoiser, WorldModel
    from worldgame.models.chance import ChanceCode

    torch.manual_seed(1)
    base = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    n = len(base.action_names)
    denoiser = ActionDenoiser(num_actions=n, context_length=2, block_out_channels=(16, 16), norm_num_groups=8,
                              chance_groups=2, chance_values=8)
    chance = ChanceCode(n, context_length=2, groups=2, values=8, width=8, hidden=32, event_group=True, prior_net="local",
                        prior_chain=True)
    for name, p in chance.named_parameters():  # the chain's tables start at zero: loud, so the draw depends on the event
        if "given" in name:
            p.data.normal_(0.0, 4.0)
    model = WorldModel(base.vae, denoiser, dict(base.metadata), chance=chance)
    path = tmp_path_factory.mktemp("checkpoints") / "tiny_events"
    model.save_pretrained(path)
    return path


@pytest.fixture
def play_config():
    """The typed settings of ``conf/play.yaml`` with overrides, as ``worldgame play k=v ...`` has them."""
    from worldgame.settings import load

    def make(*overrides: str):
        return load("play", overrides)

    return make


@pytest.fixture
def torch_one_thread():
    """One torch thread, as play and bench use on a CPU (two OpenMP threads stall badly when
    anything else wants a core); the previous count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
