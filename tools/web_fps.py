"""Frames per second of an exported page (`worldgame export-web`) in headless Chromium, beside
`worldgame bench` on the same checkpoint in the same run (docs/export-web.md "Measured").

    python tools/web_fps.py CHECKPOINT [STEPS ...] [KEY=VALUE ...]   # e.g. checkpoints/bouncer 1 2 4 weights=fp32

KEY=VALUE arguments are passed to `worldgame export-web` (e.g. weights=fp32).

Exports CHECKPOINT into a temporary folder, serves it from a local static server, opens it unpaced
(`?fps=0&steps=N`) for 8 s per step count after 3 s of warm-up and reads the page's own FPS counter
and denoise time; then runs `worldgame bench backend=onnx threads=1` on the same step counts. One JSON
line per step count. Needs chromium, chromedriver and selenium (the browser tests' own).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


@contextlib.contextmanager
def _served(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _browser_fps(url: str, steps: int) -> dict:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"{url}?fps=0&steps={steps}&seed=1")
        time.sleep(3)
        first = driver.execute_script("return [window.worldgame.frames, performance.now()]")
        time.sleep(8)
        last = driver.execute_script("return [window.worldgame.frames, performance.now(), window.worldgame.stages.denoise,"
                                     " window.worldgame.error, window.worldgame.sampler]")
    finally:
        driver.quit()
    if last[3]:
        raise SystemExit(f"web_fps: the page failed: {last[3]}")
    fps = (last[0] - first[0]) * 1000 / (last[1] - first[1])
    return {"browser_fps": round(fps, 1), "browser_denoise_ms": round(last[2], 1), "sampler": last[4]}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python tools/web_fps.py CHECKPOINT [STEPS ...]", file=sys.stderr)
        return 2
    checkpoint, overrides = argv[0], [a for a in argv[1:] if "=" in a]
    steps = [int(s) for s in argv[1:] if "=" not in s] or [1, 2, 4]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run([sys.executable, "-m", "worldgame.cli", "export-web", f"checkpoint={checkpoint}", f"out={site}", *overrides],
                       check=True, stdout=subprocess.DEVNULL)
        with _served(site) as url:
            browser = {n: _browser_fps(url, n) for n in steps}
    bench = subprocess.run([sys.executable, "-m", "worldgame.cli", "bench", f"checkpoint={checkpoint}", "backend=onnx",
                            f"steps=[{','.join(map(str, steps))}]", "frames=300", "warmup=30", "threads=1"],
                           check=True, capture_output=True, text=True)
    results = {r["steps"]: r for r in json.loads(bench.stdout.strip().splitlines()[-1])["results"]}
    for n in steps:
        print(json.dumps({"steps": n, **browser[n], "bench_fps": results[n].get("fps"), "export": overrides}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
