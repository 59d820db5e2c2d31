"""Can a chance prior foresee a game's events? Train only the event group's prior on a run's latents.

    python tools/prior_probe.py RUN [--data data/bouncer] [--net local|flat] [--minutes 14] [--noise 0.0]
                                    [--rare 0.25] [--every 500]

RUN is a teacher run folder holding ``latents.pt`` (the teacher stage writes it). The prior (one
group of 8 values: the event group, models/chance.py) learns from batches a quarter of which lie
around events, as the teacher stage's ``prior_drawn_odds`` does, with ``--noise`` the context noise
(play gives the prior a clean context). Every ``--every`` steps it prints, on the held-out event
frames, the probability it gives the true event (by value: 1 a point, 2 a point lost, ...), and on
uniformly drawn held-out windows its cross-entropy and how much it puts on an event where there is
none. One thread; docs/fidelity.md has the figures for Bouncer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from worldgame.models.chance import ChanceCode
from worldgame.train.data import load_frame_data
from worldgame.train.latents import LatentBatches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--data", default="data/bouncer")
    p.add_argument("--net", default="local", choices=["local", "flat"])
    p.add_argument("--minutes", type=float, default=14.0)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--rare", type=float, default=0.25)
    p.add_argument("--every", type=int, default=500)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    k, cpu = 4, torch.device("cpu")
    train, val = load_frame_data(a.data, k, 0.05)
    latents = torch.load(a.run / "latents.pt", weights_only=True)
    batches = LatentBatches(train, latents["train"].float(), k, a.noise, cpu, True, a.rare, 2)
    held = LatentBatches(val, latents["val"].float(), k, 0.0, cpu, True)
    actions = int(max(train.actions.max(), val.actions.max())) + 1
    prior = ChanceCode(actions, k, latents["val"].shape[1], latents["val"].shape[-1], 1, 8, event_group=True, prior_net=a.net)
    opt = torch.optim.AdamW([q for n, q in prior.named_parameters() if not n.startswith("posterior")], 1e-3)
    gen = torch.Generator().manual_seed(0)
    events = held.at(val.rare_ends(0), None)
    keep = events["events"] != 0
    events = {key: v[keep] for key, v in events.items() if torch.is_tensor(v) and len(v) == len(keep)}
    uniform = held.at(val.ends[torch.randperm(len(val.ends), generator=gen)[:3000]], None)

    @torch.no_grad()
    def report(step: int, seconds: float) -> None:
        prior.eval()
        true = prior.prior(events["context"], events["actions"])[:, 0].softmax(-1).gather(1, events["events"][:, None])[:, 0]
        by_value = {v: f"{true[events['events'] == v].mean():.2f} of {int((events['events'] == v).sum())}"
                    for v in events["events"].unique().tolist()}
        logits = prior.prior(uniform["context"], uniform["actions"])[:, 0]
        none = uniform["events"] == 0
        said = 1 - logits.softmax(-1)[:, 0]
        print(f"step {step} ({seconds:.0f} s): event frames p(true event) {true.mean():.3f} by value {by_value} | "
              f"uniform windows CE {F.cross_entropy(logits, uniform['events']):.4f}, p(event) where none "
              f"{said[none].mean():.4f}", flush=True)
        prior.train()

    t0, step = time.time(), 0
    while time.time() - t0 < a.minutes * 60:
        b = batches.sample(256, gen)  # its context noised by --noise (0: clean, as play gives it)
        loss = F.cross_entropy(prior.prior(b["context"], b["actions"])[:, 0], b["events"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % a.every == 0:
            report(step, time.time() - t0)
    report(step, time.time() - t0)


if __name__ == "__main__":
    main()
