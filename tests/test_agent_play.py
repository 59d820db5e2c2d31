"""The agent at the controls (``play``/``serve``/``bench agent=true``, the G key) and the held GAME
OVER screen: real pygame off-screen, the tiny checkpoint with a rigged agent (and event head), the
CLI as a user runs it, and the page's socket through a real aiohttp client on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worldgame.data.episode import EVENT_RESET, EVENT_STEP, read_episode
from worldgame.engine.hud import hud_lines
from worldgame.engine.session import regenerate
from worldgame.games.bouncer import ACTIONS
from worldgame.models.agent import Agent
from worldgame.models.events import REWARD_SIGNS, EventHead
from worldgame.models.world_model import WorldModel

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

AGENT_MOVE = ACTIONS.index("LEFT")  # what the rigged agent always plays
KEYS_MOVE = ACTIONS.index("RIGHT")  # what the scripted player holds


def _rig(checkpoint: Path, folder: Path, agent: bool = True, ending: bool = False) -> Path:
    """A copy of ``checkpoint`` with an agent that always plays LEFT and/or an event head that ends
    every game at once."""
    shutil.copytree(checkpoint, folder)
    model = WorldModel.from_pretrained(folder, device="cpu")
    cfg = model.denoiser.config
    if agent:
        model.agent = Agent(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(ACTIONS),
                            frames_seen=2, width=4, hidden=16)
        with torch.no_grad():  # zero weights, one large bias: LEFT whatever it sees (e^-50 for the others)
            model.agent.policy.bias.copy_(torch.tensor([50.0 if i == AGENT_MOVE else 0.0 for i in range(len(ACTIONS))]))
    if ending:
        head = EventHead(latent_channels=cfg.latent_channels, latent_size=cfg.latent_size, num_actions=len(ACTIONS), width=4)
        with torch.no_grad():
            head.head[-1].weight.zero_()
            head.head[-1].bias.copy_(torch.tensor([10.0 if s == 0 else 0.0 for s in REWARD_SIGNS] + [10.0]))
        model.events = head
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def agent_checkpoint(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    return _rig(tiny_checkpoint, tmp_path_factory.mktemp("agent") / "ck")


@pytest.fixture(scope="module")
def ending_checkpoint(tiny_checkpoint: Path, tmp_path_factory) -> Path:
    """An agent, and an event head that calls every frame the end of the game."""
    return _rig(tiny_checkpoint, tmp_path_factory.mktemp("ending") / "ck", agent=True, ending=True)


@pytest.fixture(scope="module")
def cli(agent_checkpoint: Path, ending_checkpoint: Path, tiny_checkpoint: Path, tmp_path_factory, run_cli_batch) -> dict:
    """The module's command lines, as a user runs them, in one driver process (torch loads once);
    each test reads its own: {name: CompletedProcess} and the sessions folders."""
    work = tmp_path_factory.mktemp("agent_cli")
    runs = {
        "dream": ["play", f"checkpoint={agent_checkpoint}", "agent=true", "frames=8", "fps=0", "record=true",
                  f"sessions={work / 'dream'}", "steps=1", "backend=torch", "seed=5"],
        "no_agent": ["play", f"checkpoint={tiny_checkpoint}", "agent=true", "frames=2", "fps=0", "backend=torch"],
        "attract": ["play", f"checkpoint={ending_checkpoint}", "agent=true", "frames=14", "fps=0", "game_over_s=0.1",
                    "record=true", f"sessions={work / 'attract'}", "steps=1", "backend=torch", "seed=9"],
        "bench": ["bench", f"checkpoint={agent_checkpoint}", "agent=true", "steps=[1]", "frames=6", "warmup=2",
                  "backend=torch"],
        "real": ["play", "engine=real", f"checkpoint={agent_checkpoint}", "agent=true", "frames=6", "fps=0", "record=true",
                 f"sessions={work / 'real'}", "device=cpu"],
        "real_none": ["play", "engine=real", f"checkpoint={work / 'none'}", "agent=true", "frames=1", "fps=0"],
    }
    return {**dict(zip(runs, run_cli_batch(*runs.values()))), "work": work}


def _loop(checkpoint: Path, script, **kwargs):
    """A real PlayLoop in an off-screen window on ``checkpoint`` (the caller runs it)."""
    from worldgame.engine.model_engine import ModelEngine
    from worldgame.frontend.loop import PlayLoop
    from worldgame.frontend.window import Window

    engine = ModelEngine(WorldModel.from_pretrained(checkpoint, device="cpu"), steps=1, backend="torch", optimize=False)
    window = Window(engine.frame_size, 2, hud_lines=5)
    return PlayLoop(engine, window, fps=0, seed=0, script=script, **kwargs), window


def _hud(loop) -> list[str]:
    return hud_lines(loop.stats, loop.core.hud_state(time.perf_counter(), 0.0))[0]


def test_the_agent_plays_the_dream_and_its_moves_are_the_session_s(cli: dict) -> None:
    """play agent=true: every stepped row holds the agent's move (not the keys', none held), the agent
    has a stage of its own, and regenerate reproduces the session bit for bit without any agent."""
    r = cli["dream"]
    assert r.returncode == 0, r.stderr
    path = next((cli["work"] / "dream").glob("*.wgep"))
    session = read_episode(path)
    steps = session.timings_ms["event"] == EVENT_STEP
    assert steps.sum() >= 7 and (session.actions[steps] == AGENT_MOVE).all()
    assert np.isfinite(session.timings_ms["agent"][steps]).all()  # its forward, timed per frame
    result = regenerate(path, device="cpu")
    assert result["identical"] and result["events_identical"], result


def test_g_hands_the_controls_over_and_back_and_the_hud_says_who_plays(agent_checkpoint: Path) -> None:
    from worldgame.frontend.controls import tap

    script = [{"right"}] * 3 + [tap("g")] + [{"right"}] * 2 + [tap("g")] + [{"right"}]
    seen: list[tuple[int, str]] = []
    loop, window = _loop(agent_checkpoint, script, on_frame=lambda info: seen.append((info.action, _hud(loop)[3])))
    try:
        loop.run()
    finally:
        window.close()
    actions = [a for a, _ in seen]
    assert actions == [KEYS_MOVE] * 3 + [AGENT_MOVE] * 3 + [KEYS_MOVE] * 2
    assert all(line.startswith("player you") for _, line in seen[:3] + seen[6:])
    assert all(line.startswith("player agent") for _, line in seen[3:6])


def test_no_agent_is_one_line_for_agent_true_and_a_notice_for_g(tiny_checkpoint: Path, cli: dict) -> None:
    from worldgame.frontend.controls import tap

    r = cli["no_agent"]
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tiny_checkpoint) in lines[0] and "worldgame train stage=agent" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    loop, window = _loop(tiny_checkpoint, [{"right"}, tap("g"), {"right"}])
    seen: list[int] = []
    loop.on_frame = lambda info: seen.append(info.action)
    try:
        loop.run()
    finally:
        window.close()
    assert seen == [KEYS_MOVE] * 3 and loop.core.player is None  # the keys still play
    assert "has no agent/" in loop.core.notice and "worldgame train stage=agent" in loop.core.notice
    assert "player" not in _hud(loop)[3]


def test_game_over_holds_the_last_frame_then_a_new_game_starts(ending_checkpoint: Path) -> None:
    """A game over shows GAME OVER and the final score over the held frame for game_over_ticks
    ticks (nothing stepped), then a reset; a game key ends the hold at once."""
    from worldgame.frontend.controls import tap

    states: list[tuple[int, bool, list[str] | None]] = []
    presses = {9: tap("left")}  # during the second game over's hold

    def script():
        for i in range(14):
            states.append((loop.core.frames, loop.core.game_over_shown, loop.core.game_over_lines()))
            yield presses.get(i, [])

    events: list[int] = []
    loop, window = _loop(ending_checkpoint, script(), game_over_ticks=4, on_frame=lambda info: events.append(info.event))
    try:
        loop.run()
    finally:
        window.close()
    frames = [f for f, _, _ in states]
    shown = [s for _, s, _ in states]
    # tick 1 steps into a game over; ticks 2-5 hold it (frames stays 1); tick 6 resets; tick 7 ends again;
    # the key at tick 10 cuts the second hold short: tick 10 itself resets
    assert frames[1:8] == [1, 1, 1, 1, 1, 2, 3] and shown[1:7] == [True] * 5 + [False]
    assert frames[8:12] == [3, 3, 4, 5] and shown[8:12] == [True, True, False, True]
    assert events[:5] == [EVENT_STEP, EVENT_RESET, EVENT_STEP, EVENT_RESET, EVENT_STEP]
    lines = states[2][2]
    assert lines is not None and lines[0] == "GAME OVER" and lines[1] == "score 0  lives 0"


def test_the_game_over_screen_is_drawn_over_the_held_frame(ending_checkpoint: Path) -> None:
    """The window shows the box (the frame's pixels change under it) and the HUD says GAME OVER."""
    snaps: list[tuple[np.ndarray, list[str]]] = []

    def script():
        for _ in range(3):
            yield []
            snaps.append((window.snapshot(), _hud(loop)))

    loop, window = _loop(ending_checkpoint, script(), game_over_ticks=10)
    try:
        loop.run()
    finally:
        window.close()
    (plain, _), (held, hud) = snaps[0], snaps[1]  # the frame that ended the game, then a tick into the hold
    assert "GAME OVER" in hud[3]
    w, h = window.panel_size()
    middle = (slice(h // 3, 2 * h // 3), slice(w // 4, 3 * w // 4))
    assert (held[middle] != plain[middle]).any()  # the box over the middle of the same frame
    assert (held[:4, :w] == plain[:4, :w]).all()  # the frame itself stays


def test_attract_mode_game_over_starts_a_new_game_by_itself_and_regenerates(cli: dict) -> None:
    """The agent plays, every frame ends the game: the hold passes, new games start on their own, the
    agent's moves are recorded, and regenerate brings frames and events back bit for bit."""
    r = cli["attract"]
    assert r.returncode == 0, r.stderr
    path = next((cli["work"] / "attract").glob("*.wgep"))
    session = read_episode(path)
    events = session.timings_ms["event"]
    assert (events == EVENT_RESET).sum() >= 2 and session.dones[events == EVENT_STEP].all()
    assert (session.actions[events == EVENT_STEP] == AGENT_MOVE).all()
    result = regenerate(path, device="cpu")
    assert result["identical"] and result["events_identical"], result


def test_bench_measures_play_with_the_agent_acting(cli: dict) -> None:
    r = cli["bench"]
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])["results"][0]
    assert result["stages_ms"]["agent"] > 0


def test_the_page_shows_who_plays_its_button_hands_over_and_game_over_is_sent(ending_checkpoint: Path,
                                                                               tmp_path: Path) -> None:
    from aiohttp import WSMsgType
    from aiohttp.test_utils import TestClient, TestServer

    from worldgame.commands.serve import SERVER, make_app
    from worldgame.settings import load

    cfg = load("serve", [f"checkpoint={ending_checkpoint}", "backend=torch", "seed=0", "fps=60", "agent=true",
                         "game_over_s=10", f"sessions={tmp_path / 'sessions'}"])

    async def stats_until(ws, ok, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
            if msg.type == WSMsgType.TEXT and (m := json.loads(msg.data))["type"] == "stats" and ok(m):
                return m

    async def main() -> None:
        client = TestClient(TestServer(make_app(cfg), host="127.0.0.1"))
        await client.start_server()
        try:
            ws = await client.ws_connect("/ws")
            hello = json.loads((await ws.receive(timeout=30)).data)
            assert {"value": "agent", "label": "agent / you at the controls", "keys": ["g"]} in hello["commands"]
            over = await stats_until(ws, lambda m: m["game_over"])  # the first frame ends the game; 10 s held
            assert over["player"] == "agent" and over["game_over"][0] == "GAME OVER"
            assert over["game_over"][1] == "score 0  lives 0"
            await ws.send_str(json.dumps({"type": "command", "value": "agent"}))
            mine = await stats_until(ws, lambda m: m["player"] == "you")
            assert "you play" in mine["notice"] and mine["game_over"]  # still held: nothing but a key or time ends it
            core = next(iter(client.server.app[SERVER].connections)).core
            resets = core.driver.resets
            await ws.send_str(json.dumps({"type": "keys", "held": ["left"]}))  # a key ends the hold: a new game
            deadline = time.monotonic() + 5
            while core.driver.resets == resets and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert core.driver.resets == resets + 1
            await ws.close()
        finally:
            await client.close()

    asyncio.run(main())


def test_the_agent_plays_the_real_game_through_its_autoencoder(cli: dict) -> None:
    r = cli["real"]
    assert r.returncode == 0, r.stderr
    session = read_episode(next((cli["work"] / "real").glob("*.wgep")))
    steps = session.timings_ms["event"] == EVENT_STEP
    assert steps.sum() == 6 and (session.actions[steps] == AGENT_MOVE).all()
    r = cli["real_none"]
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no such folder" in r.stderr, r.stderr


def test_heads_run_on_onnx_with_the_modules_decisions(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """With backend=onnx the dream's event head and agent run on ONNX Runtime (their batch-1 fast
    path) and decide as the torch modules do on random latent rings; backend=torch keeps the modules."""
    from worldgame.engine.model_engine import ModelEngine
    from worldgame.models.backends import _HeadRunner
    from worldgame.models.heads import Heads

    folder = _rig(tiny_checkpoint, tmp_path / "ck")
    model = WorldModel.from_pretrained(folder, device="cpu")
    torch.manual_seed(0)
    model.events = EventHead(latent_channels=model.denoiser.config.latent_channels,
                             latent_size=model.denoiser.config.latent_size, num_actions=len(ACTIONS), width=4)
    model.agent = Agent(latent_channels=model.denoiser.config.latent_channels, latent_size=model.denoiser.config.latent_size,
                        num_actions=len(ACTIONS), frames_seen=2, width=4, hidden=16)
    torch.nn.init.normal_(model.agent.policy.weight)  # a policy that depends on what it sees
    fast = ModelEngine(model, backend="onnx").dream.heads
    assert isinstance(fast.events_forward, _HeadRunner) and isinstance(fast.policy, _HeadRunner)
    assert not isinstance(ModelEngine(model, backend="torch").dream.heads.policy, _HeadRunner)
    slow = Heads(model)
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        ring, action = torch.randn(1, k, c, s, s, generator=g), torch.randint(0, len(ACTIONS), (1,), generator=g)
        with torch.inference_mode():
            ref_logits, ref_end = model.events(ring, action)
            got_logits, got_end = fast.events_forward(ring, action)
            assert torch.allclose(got_logits, ref_logits, atol=1e-4) and torch.allclose(got_end, ref_end, atol=1e-4)
            assert torch.allclose(fast.policy(ring), model.agent(ring)[0], atol=1e-4)
        assert [bool((a == b).all()) for a, b in zip(fast.events(ring, action), slow.events(ring, action))] == [True, True]
        assert int(fast.act(ring, None, greedy=True)) == int(slow.act(ring, None, greedy=True))
