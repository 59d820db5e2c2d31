"""Does overlapping work help the play loop on this machine? (issue 4: measure, keep what helps)

Compares frames per second of the play path's core (denoise → decode → present into an off-screen
window) run three ways:

* sequential, 1 torch thread (what play and bench do on a CPU);
* sequential, 2 torch threads;
* overlapped: a worker thread decodes frame t while the main thread denoises t + 1 (1 + 1 threads),
  which adds a frame of latency.

    python tools/bench_overlap.py CHECKPOINT [--steps 4] [--frames 200]

Prints one line per variant, then one JSON line. Measured on the 2-core target while the training
run held a core (the only state available then): sequential 1 thread 41.4 FPS, 2 threads 0.4 FPS
(OpenMP threads stall when a core is taken), overlapped 40.0 FPS (4 steps, shipped-size model) —
so play runs sequentially on one thread. Re-run on an idle machine before changing that.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame
import torch

from worldgame.models import WorldModel
from worldgame.models.sampler import Sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()

    model = WorldModel.from_pretrained(args.checkpoint, device="cpu")
    sampler = Sampler(model)
    sampler.trace(1)
    k, c, s = model.context_length, model.denoiser.config.latent_channels, model.denoiser.config.latent_size
    context = torch.randn(1, k, c, s, s)
    actions = torch.zeros(1, k, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    pygame.display.init()
    screen = pygame.display.set_mode((512, 512))
    small, big = pygame.Surface((64, 64)), pygame.Surface((512, 512))

    def present(frame) -> None:
        pygame.surfarray.blit_array(small, frame.swapaxes(0, 1))
        pygame.transform.scale(small, (512, 512), big)
        screen.blit(big, (0, 0))
        pygame.display.flip()

    def sequential(threads: int) -> float:
        torch.set_num_threads(threads)
        for _ in range(5):
            present(sampler.decode(sampler.step(context, actions, args.steps, gen))[0].numpy())
        t0 = time.perf_counter()
        for _ in range(args.frames):
            present(sampler.decode(sampler.step(context, actions, args.steps, gen))[0].numpy())
        return args.frames / (time.perf_counter() - t0)

    def overlapped() -> float:
        torch.set_num_threads(1)
        jobs: queue.Queue = queue.Queue()
        done: queue.Queue = queue.Queue()

        def worker() -> None:
            torch.set_num_threads(1)  # the thread count is per thread under OpenMP
            while (z := jobs.get()) is not None:
                done.put(model.decode(z)[0].numpy())

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        z = sampler.step(context, actions, args.steps, gen)
        t0 = time.perf_counter()
        for _ in range(args.frames):
            jobs.put(z)
            z = sampler.step(context, actions, args.steps, gen)
            present(done.get())
        fps = args.frames / (time.perf_counter() - t0)
        jobs.put(None)
        thread.join()
        return fps

    results = {"steps": args.steps, "sequential_1_thread": sequential(1), "overlapped_1_plus_1": overlapped()}
    results["sequential_2_threads"] = sequential(2)
    for name, fps in results.items():
        if name != "steps":
            print(f"{name}: {fps:.1f} FPS")
    print(json.dumps({k: round(v, 2) for k, v in results.items()}))


if __name__ == "__main__":
    main()
