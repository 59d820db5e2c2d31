"""`worldgame export-web`: the static folder, its refusals, the JS plans against the Python plans, the JS
sampler's latents against Python's on the same start, actions and noise, and the page in a real browser.

The browser tests run headless Chromium through selenium (as tests/test_serve.py does) and skip where
it is missing; everything that needs ONNX Runtime Web skips where its files cannot be had (no npm and
nothing in the cache or $WORLDGAME_ORT_WEB)."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from worldgame.commands.export_web import MANIFEST, PAGE_FILES, export_web
from worldgame.commands.ort_web import ORT_WEB_FILES
from worldgame.commands.web_plans import spacings, web_plans
from worldgame.errors import WorldgameError

ROOT = Path(__file__).resolve().parent.parent
# max |JS - Python| of a latent over 16 closed-loop frames (tiny checkpoint, every sampler at 4 steps):
# measured 1e-5 or below (ONNX Runtime Web's WASM kernels are not bit-identical to torch's); the bound
# leaves room for other CPUs and builds. docs/export-web.md has the figures.
LATENT_TOLERANCE = 1e-3
FRAMES = 16


@pytest.fixture(scope="module")
def ort_dir():
    from worldgame.commands.ort_web import ort_web_files

    try:
        return ort_web_files()
    except WorldgameError as e:
        pytest.skip(f"ONNX Runtime Web is not available here: {e}")


@pytest.fixture(scope="module")
def tiny_export(tiny_checkpoint, ort_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "site"
    summary = export_web(tiny_checkpoint, out, seeds=3, ort_web=str(ort_dir))
    return out, summary


# --- (a) the folder and its refusals -----------------------------------------------------------------

def test_exported_folder_files_and_sizes(tiny_export, tiny_checkpoint):
    out, summary = tiny_export
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    parts = {"denoiser.onnx", "decoder.onnx"}  # the tiny checkpoint has no event head and no agent
    assert set(files) == {*PAGE_FILES, *ORT_WEB_FILES, *parts, "plans.json", "meta.json", "starts.bin", MANIFEST}
    manifest = json.loads((out / MANIFEST).read_text())
    assert {n: f["bytes"] for n, f in manifest["files"].items()} == {n: s for n, s in files.items() if n != MANIFEST}
    meta = json.loads((out / "meta.json").read_text())
    k, (c, h, w) = meta["context_length"], meta["latent"]
    assert files["starts.bin"] == 3 * k * c * h * w * 4 and meta["starts"]["count"] == 3
    assert meta["parts"] == sorted(parts) and meta["events"] is None and meta["agent"] is False
    assert meta["weights"] == "fp16"  # the default: half the bytes (test_fp16_weights_...)
    assert meta["action_names"][0] == "NOOP" and meta["key_bindings"]["LEFT"] and meta["tick_hz"] > 0
    assert files["ort-wasm-simd-threaded.wasm"] > 1_000_000 and all(files[p] > 1000 for p in parts)
    for name in PAGE_FILES:  # copied as they are in the package
        assert (out / name).read_bytes() == (ROOT / "worldgame" / "web_export" / name).read_bytes()
    csp = (out / "index.html").read_text()
    assert "Content-Security-Policy" in csp and "default-src 'self'" in csp and "'wasm-unsafe-eval'" in csp
    assert summary["files"] == len(files) and summary["mb"] == pytest.approx(sum(files.values()) / 1e6, abs=0.02)
    # the start contexts are the game's real first K frames encoded, as play starts a dream
    from worldgame.engine.lockstep import LockstepGame
    from worldgame.games import make_game
    from worldgame.models import WorldModel

    model = WorldModel.from_pretrained(tiny_checkpoint, device="cpu")
    starts = np.fromfile(out / "starts.bin", "<f4").reshape(3, k, c, h, w)
    real = LockstepGame(make_game(model.metadata["game_config"]), k)
    np.testing.assert_array_equal(starts[2], model.encode(real.reset(2)).numpy())


def test_refuses_to_overwrite_what_is_not_an_export(tiny_export, tiny_checkpoint, ort_dir, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for out in (busy, tiny_checkpoint, tiny_checkpoint / "site", tiny_checkpoint.parent):
        with pytest.raises(WorldgameError) as e:
            export_web(tiny_checkpoint, out, seeds=1, ort_web=str(ort_dir))
        assert len(str(e.value).splitlines()) == 1
    assert (busy / "notes.txt").read_text() == "mine" and not (tiny_checkpoint / "site").exists()
    # a previous export is replaced; an empty folder is fine
    again = tmp_path / "again"
    export_web(tiny_checkpoint, again, seeds=1, ort_web=str(ort_dir))
    export_web(tiny_checkpoint, again, seeds=2, ort_web=str(ort_dir))
    assert json.loads((again / "meta.json").read_text())["starts"]["count"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    export_web(tiny_checkpoint, empty, seeds=1, ort_web=str(ort_dir))
    assert (empty / MANIFEST).is_file()


def test_missing_runtime_is_one_line(tiny_checkpoint, tmp_path, monkeypatch):
    from worldgame.commands import ort_web

    monkeypatch.setattr(ort_web, "cache_folder", lambda version=ort_web.ORT_WEB_VERSION: tmp_path / "nothing")
    monkeypatch.delenv(ort_web.ORT_WEB_ENV, raising=False)
    with pytest.raises(WorldgameError) as e:
        ort_web.ort_web_files(fetch=False)
    assert len(str(e.value).splitlines()) == 1 and "npm pack onnxruntime-web@" in str(e.value) and ort_web.ORT_WEB_ENV in str(e.value)
    with pytest.raises(WorldgameError) as e:
        export_web(tiny_checkpoint, tmp_path / "out", ort_web=str(tmp_path))  # a folder without the files
    assert "lacks ONNX Runtime Web" in str(e.value) and not (tmp_path / "out").exists()


def test_shipped_bouncer_export_size(ort_dir, tmp_path):
    out = tmp_path / "site"
    summary = export_web(ROOT / "checkpoints" / "bouncer", out, ort_web=str(ort_dir))
    names = {p.name for p in out.iterdir()}
    assert {"denoiser.onnx", "decoder.onnx", "events.onnx", "agent.onnx"} <= names
    meta = json.loads((out / "meta.json").read_text())
    assert meta["play"]["sampler"] == "dpmsolver" and meta["events"]["start_lives"] == 5 and meta["agent"] is True
    assert summary["mb"] <= 30, summary
    assert summary["seconds"] <= 60, summary  # 7-10 s measured on the (loaded) 2-core machine; the target is 20 s


# --- (b) the JS plans are the Python plans -------------------------------------------------------------

def test_js_plans_equal_python_plans(tiny_export):
    out, _ = tiny_export
    meta = json.loads((out / "meta.json").read_text())
    python = web_plans(meta["prediction_type"])
    assert json.loads((out / "plans.json").read_text()) == python  # the file the page reads
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JS side of the plans is read in the browser test only")
    module, plans_file = (out / "sampler.js").as_uri(), out / "plans.json"
    spacing_lists = json.dumps({s: list(spacings(s)) for s in python["plans"]})
    script = (f"import('{module}').then(async (m) => {{ const fs = await import('fs');"
              f" const plans = JSON.parse(fs.readFileSync('{plans_file}', 'utf8')); const got = {{}};"
              f" for (const [name, sps] of Object.entries({spacing_lists})) for (const sp of sps) for (const n of [1, 2, 4, 8])"
              "   got[`${name}/${sp}/${n}`] = m.planFor(plans, name, sp === '-' ? null : sp, n);"
              " got.defaults = Object.fromEntries(['lcm', 'ddim', 'dpmsolver'].map((s) => [s, m.planFor(plans, s, null, 4)]));"
              " console.log(JSON.stringify(got)); })")
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(done.stdout)
    checked = 0
    for name, by_spacing in python["plans"].items():
        for sp, by_steps in by_spacing.items():
            for n, plan in by_steps.items():
                assert got[f"{name}/{sp}/{n}"] == plan, (name, sp, n)
                checked += 1
    assert checked == 4 * (1 + 3 + 3)  # every sampler x spacing x step count
    for name, plan in got["defaults"].items():  # null spacing: the sampler's default, as Python's
        assert plan == python["plans"][name][python["default_spacing"][name]]["4"]


# --- the browser ---------------------------------------------------------------------------------------

def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


needs_chromium = pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver not installed (.ci/run installs them)")


@contextlib.contextmanager
def static_server(folder: Path):
    """`python -m http.server -d folder`, in a thread, on a free port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium():
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, chromedriver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait_ready(driver, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script("return window.worldgame ? [window.worldgame.ready, window.worldgame.error] : [false, null]")
        assert state[1] is None, state[1]
        if state[0]:
            return
        time.sleep(0.1)
    raise AssertionError("the page did not load")


def severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()


DREAM_JS = """
const [start, actions, noise, name, steps, done] = arguments;
const dec = (b) => { const s = atob(b), u = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
                     return new Float32Array(u.buffer); };
window.worldgame.api.dream(dec(start), actions, noise.map(dec), name, null, steps).then((zs) => {
  const all = new Uint8Array(zs.length * zs[0].length * 4);
  zs.forEach((z, i) => all.set(new Uint8Array(z.buffer, z.byteOffset, z.byteLength), i * z.byteLength));
  let s = ""; for (let i = 0; i < all.length; i += 8192) s += String.fromCharCode(...all.subarray(i, i + 8192));
  done(btoa(s));
}).catch((e) => done("ERROR " + e));
"""


def python_dream(checkpoint: Path, start: np.ndarray, actions: list[int], sampler: str, steps: int, seed: int):
    """Python's latents (the prepared sampler on the torch modules, as play without a fast path) and the
    noise it drew, replayed from the same generator in the same order and shapes."""
    import torch

    from worldgame.models import WorldModel
    from worldgame.models.rollout import Rollout
    from worldgame.models.sampler import Sampler

    model = WorldModel.from_pretrained(checkpoint, device="cpu")
    prepared = Sampler(model, sampler)
    k = model.context_length
    rollout = Rollout.of(torch.from_numpy(start)[None], torch.zeros(1, k, dtype=torch.long))
    g = torch.Generator().manual_seed(seed)
    latents = []
    for a in actions:
        z = rollout.advance(lambda c, acts, out: prepared.step(c, acts, steps=steps, generator=g, out=out), a)
        latents.append(z[0].numpy().copy())
    replay, noise = torch.Generator().manual_seed(seed), []
    latent_shape = (1, *start.shape[1:])
    for _ in actions:
        if model.chance is not None:  # the code's Gumbel noise first, as Sampler.conditions draws it
            from worldgame.models.chance import gumbel_like

            shape = (1, model.chance.config.groups, model.chance.config.values)
            noise.append(gumbel_like(torch.zeros(shape), replay).numpy())
        if model.context_noise > 0:
            noise.append(torch.randn((1, *start.shape), generator=replay).numpy())
        noise.append(torch.randn(latent_shape, generator=replay).numpy())
        if sampler == "lcm":
            noise += [torch.randn(latent_shape, generator=replay).numpy() for _ in range(steps - 1)]
    return np.stack(latents), noise


# --- (c) the same dream as Python's -----------------------------------------------------------------------

@needs_chromium
def test_js_latents_match_python(tiny_export, tiny_checkpoint):
    out, _ = tiny_export
    meta = json.loads((out / "meta.json").read_text())
    k, (c, h, w) = meta["context_length"], meta["latent"]
    starts = np.fromfile(out / "starts.bin", "<f4").reshape(-1, k, c, h, w)
    rng = np.random.default_rng(0)
    actions = [int(a) for a in rng.integers(0, len(meta["action_names"]), FRAMES)]
    errors = {}
    with static_server(out) as url, chromium() as driver:
        driver.get(url + "?play=0")
        wait_ready(driver)
        for sampler in ("lcm", "ddim", "dpmsolver"):
            want, noise = python_dream(tiny_checkpoint, starts[1], actions, sampler, 4, seed=7)
            got = driver.execute_async_script(DREAM_JS, _b64(starts[1]), actions, [_b64(n) for n in noise], sampler, 4)
            assert not got.startswith("ERROR"), got
            got = np.frombuffer(base64.b64decode(got), "<f4").reshape(want.shape)
            errors[sampler] = float(np.abs(got - want).max())
        assert not severe(driver)
    print("max |JS - Python| over 16 frames:", errors)
    assert all(e <= LATENT_TOLERANCE for e in errors.values()), errors


@needs_chromium
def test_a_chance_code_is_drawn_in_the_page_as_in_python(tiny_chance_checkpoint, ort_dir, tmp_path):
    """A checkpoint with a chance code exports its prior (chance.onnx); the page draws each frame's
    code from it with the frame's first noise, as Python's Sampler does, so the 16 frames' latents
    agree within the stated tolerance (a different code would move them by far more), and the page
    plays it with the drawn code in its HUD."""
    out = tmp_path / "site"
    export_web(tiny_chance_checkpoint, out, seeds=2, ort_web=str(ort_dir))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["chance"] == {"groups": 2, "values": 4, "event_group": False} and "chance.onnx" in meta["parts"]
    k, (c, h, w) = meta["context_length"], meta["latent"]
    start = np.fromfile(out / "starts.bin", "<f4").reshape(-1, k, c, h, w)[1]
    actions = [int(a) for a in np.random.default_rng(0).integers(0, len(meta["action_names"]), FRAMES)]
    want, noise = python_dream(tiny_chance_checkpoint, start, actions, "dpmsolver", 4, seed=7)
    with static_server(out) as url, chromium() as driver:
        driver.get(url + "?play=0")
        wait_ready(driver)
        got = driver.execute_async_script(DREAM_JS, _b64(start), actions, [_b64(n) for n in noise], "dpmsolver", 4)
        assert not got.startswith("ERROR"), got
        got = np.frombuffer(base64.b64decode(got), "<f4").reshape(want.shape)
        assert float(np.abs(got - want).max()) <= LATENT_TOLERANCE
        driver.get(url)  # and it plays, the code drawn by the page itself
        wait_ready(driver)
        deadline = time.monotonic() + 20
        while driver.execute_script("return window.worldgame.frames") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        code = driver.execute_script("return window.worldgame.code")
        assert len(code) == 2 and all(0 <= v < 4 for v in code)
        assert not severe(driver), severe(driver)


@needs_chromium
def test_the_page_counts_the_events_its_code_draws(tiny_events_checkpoint, ort_dir, tmp_path):
    """A checkpoint whose chance code draws the transition's event (and has no event head): the page
    keeps the dream's score and lives from the drawn group 0, as play does (untrained, its prior
    draws points and hits often, so lives fall within a few frames)."""
    out = tmp_path / "site"
    export_web(tiny_events_checkpoint, out, seeds=2, ort_web=str(ort_dir))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["chance"]["event_group"] is True and meta["events"]["drawn"] is True
    assert "events.onnx" not in meta["parts"] and meta["events"]["start_lives"] == 5
    with static_server(out) as url, chromium() as driver:
        driver.get(url + "?fps=0")
        wait_ready(driver)
        deadline = time.monotonic() + 30
        seen = set()
        while time.monotonic() < deadline and not ({"point", "hit"} <= seen):
            score, lives = driver.execute_script("return [window.worldgame.score, window.worldgame.lives]")
            seen |= {"point"} if score > 0 else set()
            seen |= {"hit"} if lives is not None and lives < 5 else set()
            time.sleep(0.05)
        assert {"point", "hit"} <= seen, seen
        assert not severe(driver), severe(driver)


def test_fp16_weights_halve_the_graphs_and_keep_what_they_compute(tiny_checkpoint):
    """Checkpoints are saved in fp16, so storing the page's weights in fp16 loses nothing: the
    graphs compute the same outputs from half the bytes."""
    import onnxruntime as ort

    from worldgame.commands.export_web import export_parts, half_weights
    from worldgame.models import WorldModel

    parts = export_parts(WorldModel.from_pretrained(tiny_checkpoint, device="cpu", half=False))
    rng = np.random.default_rng(0)
    for name, blob in parts.items():
        half = half_weights(blob)
        assert len(half) < 0.65 * len(blob), name  # shipped Bouncer: 0.51 (tiny graphs have more overhead)
        full, small = ort.InferenceSession(blob), ort.InferenceSession(half)
        feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
                 if "float" in i.type else np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.int64)
                 for i in full.get_inputs()}
        for a, b in zip(full.run(None, feeds), small.run(None, feeds)):
            assert np.array_equal(a, b), name


# --- (d) the page plays in a real browser ------------------------------------------------------------------

@needs_chromium
def test_page_plays_in_a_real_browser(tiny_export):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out, _ = tiny_export
    meta = json.loads((out / "meta.json").read_text())
    sample = ("const c=document.getElementById('game');const d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;"
              "let s=0;for(let i=0;i<d.length;i+=7)s=(s*31+d[i])%1000000007;return [window.worldgame.frames,s,window.worldgame.action];")
    with static_server(out) as url, chromium() as driver:
        opened = time.monotonic()
        driver.get(url)
        wait_ready(driver)
        deadline = time.monotonic() + 20
        while driver.execute_script(sample)[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        interactive_s = time.monotonic() - opened
        frames0, sum0, _ = driver.execute_script(sample)
        assert frames0 >= 3, "no frames arrive"
        time.sleep(0.5)
        frames1, sum1, _ = driver.execute_script(sample)
        assert frames1 > frames0 and sum1 != sum0, "the canvas does not change"
        driver.find_element(By.ID, "game").click()
        left = meta["action_names"].index("LEFT")
        chain = ActionChains(driver).key_down(Keys.ARROW_LEFT)
        chain.perform()
        deadline = time.monotonic() + 5
        while driver.execute_script(sample)[2] != left and time.monotonic() < deadline:
            time.sleep(0.02)
        assert driver.execute_script(sample)[2] == left, "the arrow key does not choose LEFT"
        ActionChains(driver).key_up(Keys.ARROW_LEFT).perform()
        deadline = time.monotonic() + 5
        while driver.execute_script(sample)[2] != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert driver.execute_script(sample)[2] == 0
        ActionChains(driver).send_keys("2").perform()  # the step keys
        deadline = time.monotonic() + 5
        while "steps 2" not in driver.find_element(By.ID, "hud").text and time.monotonic() < deadline:
            time.sleep(0.05)
        hud = driver.find_element(By.ID, "hud").text
        assert "steps 2" in hud and "FPS" in hud
        fps = float(hud.split("FPS", 1)[1].split()[0])
        assert fps > 0
        assert not driver.find_elements(By.ID, "agent")  # no agent in this checkpoint: no agent control
        assert not severe(driver), severe(driver)
    print(f"page interactive after {interactive_s:.1f} s; its FPS counter read {fps}")
