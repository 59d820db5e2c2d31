"""Frames per second of the shipped model's per-frame path (prepared sampler + decoder) on a GPU:
fp16, at 1/2/4/8 steps and batch 1/16, three ways:

* ``eager``: the torch modules as play runs them on CUDA;
* ``graph``: the denoiser and the decoder each captured once per batch size in a CUDA graph
  (static input buffers, one replay per call: no per-kernel launch cost);
* ``compile``: ``torch.compile(mode="reduce-overhead")`` (Inductor kernels inside CUDA graphs).

    python tools/gpu_bench.py [--checkpoint checkpoints/bouncer] [--frames 300] [--json out.json]

Prints a line per measurement and one JSON line last. Without CUDA it runs the eager path on the CPU
in fp32 for a few frames (a dry run: it checks the script, not a speed), and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from worldgame.models.sampler import Sampler
from worldgame.models.world_model import WorldModel


def graphed(fn, *example: torch.Tensor):
    """``fn`` captured in a CUDA graph on ``example``'s shapes: the returned callable copies its
    inputs into the captured buffers and replays. Its answer is a buffer the next call overwrites."""
    static = [x.clone() for x in example]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # warm up on a side stream (cuDNN picks its kernels) before the capture
            fn(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        out = fn(*static)

    def run(*xs: torch.Tensor) -> torch.Tensor:
        for s, x in zip(static, xs):
            s.copy_(x)
        graph.replay()
        return out
    return run


def bench(model: WorldModel, mode: str, steps_list: list[int], batch: int, frames: int) -> list[dict]:
    sampler = Sampler(model)
    k, cfg, dev = model.context_length, model.denoiser.config, model.device
    c, s = cfg.latent_channels, cfg.latent_size
    g = torch.Generator(device=dev).manual_seed(0)
    context = torch.randn(batch, k, c, s, s, device=dev, generator=g).to(model.dtype)
    actions = torch.zeros(batch, k, dtype=torch.long, device=dev)
    if mode == "graph":
        probe = (torch.zeros(batch, c, s, s, device=dev, dtype=model.dtype), torch.zeros(batch, dtype=torch.long, device=dev),
                 context, actions, torch.zeros(batch, device=dev, dtype=model.dtype))
        sampler.accelerate(batch, graphed(model.denoiser, *probe), graphed(model.vae.decode, probe[0]))
    elif mode == "compile":
        sampler.accelerate(batch, torch.compile(model.denoiser, mode="reduce-overhead"),
                           torch.compile(model.vae.decode, mode="reduce-overhead"))
    results = []
    for steps in steps_list:
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        started = time.perf_counter()
        for _ in range(max(3, frames // 10)):  # warm-up (compile: the graphs are made here)
            sampler.decode(sampler.step(context, actions, steps=steps, generator=g))
        sync()
        warm_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(frames):
            frame = sampler.decode(sampler.step(context, actions, steps=steps, generator=g))
        sync()
        seconds = time.perf_counter() - started
        assert frame.shape[0] == batch and frame.dtype == torch.uint8  # decoded frames, one a sample
        results.append({"mode": mode, "steps": steps, "batch": batch, "fps": round(frames / seconds, 1),
                        "frames_per_s": round(frames * batch / seconds, 1), "ms": round(seconds / frames * 1e3, 3),
                        "warmup_s": round(warm_s, 1)})
        print(f"{mode:8s} steps {steps} batch {batch:2d}: {results[-1]['fps']:8.1f} FPS "
              f"({results[-1]['frames_per_s']:.0f} frames/s, {results[-1]['ms']:.2f} ms a tick)", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="checkpoints/bouncer")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--steps", default="1,2,4,8")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--modes", default="eager,graph,compile")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    steps, batches, modes = ([int(x) for x in args.steps.split(",")], [int(x) for x in args.batches.split(",")],
                             args.modes.split(","))
    if not cuda:  # the dry run: the same code, eager fp32 on the CPU, a few frames
        print("gpu_bench: no CUDA device: dry run on the CPU (eager fp32, a few frames; not a GPU figure)", file=sys.stderr)
        modes, args.frames = ["eager"], min(args.frames, 5)
        torch.set_num_threads(1)
    model = WorldModel.from_pretrained(args.checkpoint, device="cuda" if cuda else "cpu", half=cuda)
    results, errors = [], {}
    for mode in modes:
        for batch in batches:
            try:
                results += bench(model, mode, steps, batch, args.frames)
            except Exception as e:  # noqa: BLE001 (one mode failing, e.g. no compiler toolchain, must not hide the others)
                errors[f"{mode}/b{batch}"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                print(f"{mode} batch {batch}: failed ({errors[f'{mode}/b{batch}']})", file=sys.stderr, flush=True)
    summary = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)", "dtype": str(model.dtype),
               "torch": torch.__version__, "results": results, "errors": errors}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
