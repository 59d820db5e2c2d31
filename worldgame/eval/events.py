"""The dream's game events against the real game's (a checkpoint with an event head, models/events.py).

Held-out games are played to their end (all lives lost) with the game's own settings -- not the
infinite-lives practice game the picture metrics use, whose HUD never loses a life.

* **teacher-forced**: the head on the real latents of each transition: precision, recall and F1 of
  a point (+), a point lost or a life lost (-) and the game's end (an end predicted within
  ``END_TOLERANCE`` frames of the real one counts as found).
* **in dreams**: each game dreamed from its first K frames on its own actions, the head on the
  dream's own latents as play runs it: points and minus events per 1,000 frames, dream vs real,
  and the frame at which the dream first ends the game vs the real end.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from worldgame.data.policies import make_policy
from worldgame.eval.metrics import dilate, f1_scores
from worldgame.games import make_game
from worldgame.games.bouncer import EVENT_KINDS
from worldgame.models.chance import events_of
from worldgame.models.rollout import Rollout
from worldgame.models.sampler import Sampler

END_TOLERANCE = 2  # frames: an end predicted this close to the real one is found


def held_out_games(game_config: dict, seed: int, games: int, max_frames: int, scripted: bool) -> list[dict]:
    """``games`` games at unseen seeds, each until it ends or ``max_frames``: frames, actions, rewards,
    dones, and ``kinds`` (kind -> a flag per frame) where the game names its events (info["events"])."""
    out = []
    for i in range(games):
        game = make_game(game_config)
        policy = make_policy("scripted" if scripted else "random", game, 0.8, seed + i)
        frames, actions, rewards, dones, named = [game.reset(seed + i)], [0], [0.0], [False], [()]
        while len(frames) < max_frames and not dones[-1]:
            a = policy()
            frame, reward, done, info = game.step(a)
            frames.append(frame)
            actions.append(a)
            rewards.append(reward)
            dones.append(done)
            named.append(info.get("events"))
        g = {"frames": np.stack(frames), "actions": np.asarray(actions), "rewards": np.asarray(rewards),
             "dones": np.asarray(dones)}
        if len(named) > 1 and named[1] is not None:  # the game names its events (gym games do not)
            g["kinds"] = {kind: np.array([kind in n for n in named]) for kind in EVENT_KINDS}
        out.append(g)
    return out


def _kinds(signs: torch.Tensor, ends: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> dict:
    real = torch.sign(rewards)
    found = {"plus": f1_scores(signs == 1, real == 1), "minus": f1_scores(signs == -1, real == -1)}
    # the end: each real end found if any predicted end lies within END_TOLERANCE frames, and each
    # predicted end right if a real one does
    near_real = dilate(dones, END_TOLERANCE)
    near_pred = dilate(ends, END_TOLERANCE)
    tp_real, tp_pred = int((dones & near_pred).sum()), int((ends & near_real).sum())
    n_real, n_pred = int(dones.sum()), int(ends.sum())
    precision = tp_pred / n_pred if n_pred else float("nan")
    recall = tp_real / n_real if n_real else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if n_pred and n_real and precision + recall else (
        0.0 if n_pred or n_real else float("nan"))
    found["end"] = {"precision": precision, "recall": recall, "f1": f1, "events": n_real}
    return {k: {m: _json(v) for m, v in d.items()} for k, d in found.items()}


def _json(value: float) -> float | None:
    """A figure for the JSON line: rounded, and None where it is undefined (NaN is not JSON)."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 3)
    return value


@torch.no_grad()
def teacher_forced(model, games: list[dict]) -> dict:
    """The head on each real transition of each game (frames K.. of it)."""
    k, head = model.context_length, model.events
    signs, ends, rewards, dones, kinds = [], [], [], [], []
    for g in games:
        z = torch.cat([model.encode(g["frames"][i : i + 256]) for i in range(0, len(g["frames"]), 256)])
        t = torch.arange(k, len(z))
        window = z[t[:, None] + torch.arange(-head.frames_seen + 1, 1)]
        sign, end = head.predict(window, torch.as_tensor(g["actions"][k:], device=z.device))
        signs.append(sign.cpu())
        ends.append(end.cpu())
        rewards.append(torch.as_tensor(g["rewards"][k:]))
        dones.append(torch.as_tensor(g["dones"][k:]))
        if "kinds" in g:
            kinds.append({kind: torch.as_tensor(flags[k:]) for kind, flags in g["kinds"].items()})
    signs = torch.cat(signs)
    out = _kinds(signs, torch.cat(ends), torch.cat(rewards), torch.cat(dones))
    if kinds and len(kinds) == len(games):
        out["kinds"] = by_kind(signs, {kind: torch.cat([g[kind] for g in kinds]) for kind in kinds[0]})
    return out


def by_kind(signs: torch.Tensor, kinds: dict[str, torch.Tensor]) -> dict:
    """The head's figures for each kind of event (coin, shot, hit), though it predicts only a sign.

    recall: the share of that kind's steps on which the head said its sign (+ for coin and shot, -
    for hit). precision: the share of all the head's predictions of that sign that fall on a step
    with some event of that sign -- a point predicted on a shot is right though a coin was not
    there, so both plus kinds share it; counted against the named events rather than the reward's
    sign, a step with a coin and a hit (reward 0) still holds a plus and a minus. f1: of the two.
    """
    out = {}
    for sign in (1, -1):
        names = [kind for kind in kinds if EVENT_KINDS[kind] == sign]
        if not names:
            continue
        said = signs == sign
        any_of_sign = torch.stack([kinds[kind] for kind in names]).any(0)
        n_said = int(said.sum())
        precision = int((said & any_of_sign).sum()) / n_said if n_said else float("nan")
        for kind in names:
            n = int(kinds[kind].sum())
            recall = int((said & kinds[kind]).sum()) / n if n else float("nan")
            if not n:  # none of this kind happened: nothing to find (the other kind's figures hold the precision)
                f1 = float("nan")
            else:
                f1 = 2 * precision * recall / (precision + recall) if n_said and precision + recall else 0.0
            out[kind] = {m: _json(v) for m, v in
                         {"precision": precision, "recall": recall, "f1": f1, "events": n}.items()}
    return {kind: out[kind] for kind in kinds}


@torch.no_grad()
def in_dreams(sampler: Sampler, games: list[dict], steps: int, seed: int, pips=None) -> dict:
    """Every game dreamed at once from its first K frames on its own actions (shorter games padded
    with action 0 and counted only up to their own end).

    ``pips(frames) -> (score, lives)`` (the built-in game's HUD pips, eval/bouncer_checks.py): also
    ``hud_agree``, the share of dream frames whose drawn pips say what the HUD says -- the score
    and lives the event head's signs (or the drawn events) add up to from the first frame's pips
    (what play shows)."""
    model = sampler.model
    k, head, dev = model.context_length, model.events, model.device
    lengths = [len(g["frames"]) - k for g in games]
    horizon = max(lengths)
    actions = torch.zeros(len(games), horizon, dtype=torch.long, device=dev)
    for i, g in enumerate(games):
        actions[i, : lengths[i]] = torch.as_tensor(g["actions"][k:], device=dev)
    context = torch.stack([model.encode(g["frames"][:k]) for g in games])
    before = torch.stack([torch.as_tensor(g["actions"][:k], device=dev) for g in games])
    rollout = Rollout.of(context, before)
    gen = torch.Generator(device=dev).manual_seed(seed)
    signs = torch.zeros(len(games), horizon, dtype=torch.long)
    ends = torch.zeros(len(games), horizon, dtype=torch.bool)
    agree = np.zeros((len(games), horizon), bool)
    if pips is not None:
        hud_score, hud_lives = (np.array(v) for v in pips(np.stack([g["frames"][k - 1] for g in games])))
    for h in range(horizon):
        rollout.advance(lambda c, a, o: sampler.step(c, a, steps=steps, generator=gen, out=o), actions[:, h])
        if model.draws_events:  # the event drawn with the frame (the chance code's event group)
            sign, end = events_of(sampler.last_code[:, 0])
        else:
            sign, end = head.predict(rollout.context, rollout.actions[:, -1])
        signs[:, h], ends[:, h] = sign.cpu(), end.cpu()
        if pips is not None:
            hud_score += signs[:, h].numpy() == 1
            hud_lives -= signs[:, h].numpy() == -1
            score, lives = pips(sampler.decode(rollout.context[:, -1]).cpu().numpy())
            agree[:, h] = (score == np.clip(hud_score, 0, 12)) & (lives == np.clip(hud_lives, 0, 12))
    frames = sum(lengths)
    real_plus = sum(int((g["rewards"][k:] > 0).sum()) for g in games)
    real_minus = sum(int((g["rewards"][k:] < 0).sum()) for g in games)
    dream_plus = sum(int((signs[i, :n] == 1).sum()) for i, n in enumerate(lengths))
    dream_minus = sum(int((signs[i, :n] == -1).sum()) for i, n in enumerate(lengths))
    first_end = [int(ends[i, :n].nonzero()[0]) + k if ends[i, :n].any() else None for i, n in enumerate(lengths)]
    real_end = [int(np.flatnonzero(g["dones"])[0]) if g["dones"].any() else None for g in games]
    per_k = 1000 / max(frames, 1)
    return {
        "frames": frames, "steps": steps,
        "points_per_1k": round(dream_plus * per_k, 2), "points_per_1k_real": round(real_plus * per_k, 2),
        "minus_per_1k": round(dream_minus * per_k, 2), "minus_per_1k_real": round(real_minus * per_k, 2),
        "first_end": first_end, "real_end": real_end,
        **({"hud_agree": round(sum(int(agree[i, :n].sum()) for i, n in enumerate(lengths)) / max(frames, 1), 4)}
           if pips is not None else {}),
    }
