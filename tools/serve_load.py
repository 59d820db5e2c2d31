"""Bounded load test of `worldgame serve`: N WebSocket clients for a fixed time against a server in
its own process; prints one JSON line: frames/s per client and p95 latency (key message sent ->
next frame received), per client and overall.

    python tools/serve_load.py [--clients 4] [--seconds 20] [--steps 1] [--checkpoint checkpoints/bouncer]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time

import numpy as np
from aiohttp import ClientSession, WSMsgType


async def client(url: str, seconds: float, steps: int, keys: list[str]) -> dict:
    """One player: presses/releases a key at random moments (~every 100 ms, independent of the frame
    phase), counts frames, and times each key message to the first frame received after it."""
    import random

    frames, latencies, pending = 0, [], [None]
    async with ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        hello = json.loads((await ws.receive(timeout=60)).data)
        assert hello["type"] == "hello", hello
        await ws.send_str(json.dumps({"type": "steps", "value": steps}))
        t0 = time.perf_counter()
        end = t0 + seconds

        async def press() -> None:
            i = 0
            await asyncio.sleep(0.5)
            while time.perf_counter() < end:
                i += 1
                pending[0] = time.perf_counter()
                await ws.send_str(json.dumps({"type": "keys", "held": [keys[i % len(keys)]] if i % 2 else []}))
                await asyncio.sleep(random.uniform(0.05, 0.15))

        presser = asyncio.create_task(press())
        while time.perf_counter() < end:
            msg = await ws.receive(timeout=5)
            if msg.type == WSMsgType.BINARY:
                frames += 1
                if pending[0] is not None:
                    latencies.append((time.perf_counter() - pending[0]) * 1000)
                    pending[0] = None
            elif msg.type != WSMsgType.TEXT:
                raise RuntimeError(f"connection ended: {msg}")
        elapsed = time.perf_counter() - t0
        await presser
    lat = np.array(latencies)
    return {"fps": round(frames / elapsed, 2), "frames": frames, "latency_ms": {
        "p50": round(float(np.percentile(lat, 50)), 2), "p95": round(float(np.percentile(lat, 95)), 2), "n": len(lat)}}


def main(args: argparse.Namespace) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "worldgame.cli", "serve", f"checkpoint={args.checkpoint}", "port=0",
                             f"steps={args.steps}", f"max_clients={args.clients}", f"fps={args.fps}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://([^/]+)/", line)
        if not match:
            raise RuntimeError(f"no address from the server: {line!r}")
        url = f"ws://{match.group(1)}/ws"
        keys = ["left", "right", "up", "down"]

        async def players() -> list[dict]:
            return await asyncio.gather(*(client(url, args.seconds, args.steps, keys) for _ in range(args.clients)))

        results = asyncio.run(players())
    finally:
        proc.terminate()
        proc.wait(10)
    return {"clients": args.clients, "seconds": args.seconds, "steps": args.steps, "tick_hz": args.fps,
            "checkpoint": args.checkpoint, "per_client": results,
            "min_fps": min(r["fps"] for r in results), "max_p95_ms": max(r["latency_ms"]["p95"] for r in results)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=1, choices=[1, 2, 4, 8])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--checkpoint", default="checkpoints/bouncer")
    print(json.dumps(main(parser.parse_args())))
