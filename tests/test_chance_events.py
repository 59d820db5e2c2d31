"""The chance code's event group (issue 30, item 3): group 0 of the code is the transition's event as
the data names it (nothing / a point / a point lost, each with or without the game's end). Play
draws it first, the denoiser draws a frame that agrees with it, and the dream's score, lives and
game over count that same draw -- one choice behind the picture and the HUD."""

from __future__ import annotations

import pytest
import torch

from worldgame.engine.dream import Dream
from worldgame.engine.model_engine import ModelEngine
from worldgame.games.bouncer import Bouncer
from worldgame.models import WorldModel
from worldgame.models.chance import (
    EVENT_APPEARED,
    EVENT_KINDS,
    ChanceCode,
    code_noise,
    draw,
    event_of,
    event_values,
    events_of,
    pack,
)
from worldgame.settings import SettingError, load

GROUPS, VALUES = 2, 8  # as conftest's tiny_events_checkpoint


def test_each_event_has_one_value_and_back() -> None:
    rewards = torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0, -1.0])
    dones = torch.tensor([False, False, False, True, True, True])
    values = event_values(rewards, dones)
    assert values.tolist() == list(range(EVENT_KINDS))
    signs, ended = events_of(values)
    assert signs.tolist() == [0, 1, -1, 0, 1, -1] and ended.tolist() == dones.tolist()
    assert [event_of(v) for v in range(EVENT_KINDS)] == [(0.0, False), (1.0, False), (-1.0, False),
                                                          (0.0, True), (1.0, True), (-1.0, True)]
    # a value the data never names says nothing happened (the prior never draws one: below)
    assert event_of(EVENT_KINDS + 1) == (0.0, False)
    assert events_of(torch.tensor([EVENT_KINDS + 1]))[0].item() == 0 and not events_of(torch.tensor([7]))[1].item()


def test_an_object_appearing_is_an_event_of_its_own_only_where_the_code_counts_it() -> None:
    """Bouncer's coin appears by chance with no reward; ``appeared`` gives it the value after the six,
    only where nothing else happened (a point or a hit on the same frame stays that event)."""
    rewards, dones = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0]), torch.tensor([False, False, False, False, True])
    appeared = torch.tensor([False, True, True, True, True])
    assert event_values(rewards, dones, appeared).tolist() == [0, EVENT_APPEARED, 1, 2, 3]
    assert event_values(rewards, dones).tolist() == [0, 0, 1, 2, 3]
    assert event_of(EVENT_APPEARED) == (0.0, False)  # no point, no end: the HUD does not move
    gen = torch.Generator().manual_seed(1)
    context, actions = torch.randn(256, 2, 4, 8, 8, generator=gen), torch.randint(0, 6, (256, 2), generator=gen)
    counted = _chance(appeared=True, prior_net="local", prior_chain=True)
    drawn = torch.cat([counted(context, actions, code_noise(counted, 256, gen), torch.tensor(t)) for t in (1.0, 5.0)])
    assert int(drawn[:, 0].max()) == EVENT_APPEARED  # drawn, and nothing past it
    with pytest.raises(ValueError, match="appeared .* needs event_group"):
        _chance(event_group=False, appeared=True)
    with pytest.raises(ValueError, match=">= 7 values"):
        ChanceCode(6, groups=2, values=6, event_group=True, appeared=True)
    with pytest.raises(SettingError, match="model.chance.appeared"):
        load("train", ["model.chance.appeared=true", "model.denoiser.chance_groups=2"])
    with pytest.raises(SettingError, match="chance_values >= 7"):
        load("train", ["model.chance.appeared=true", "model.chance.event_group=true", "model.denoiser.chance_groups=2",
                       "model.denoiser.chance_values=6"])


def test_the_event_net_may_be_narrower_than_the_places_and_draws_the_same_way() -> None:
    """The event's net runs every frame at play (the place's only with an event): its own width."""
    narrow = _chance(prior_net="local", prior_chain=True, event_width=4)
    assert narrow.prior_event.inp.out_channels == 4 and narrow.prior_learnt.inp.out_channels == 8
    gen = torch.Generator().manual_seed(3)
    context, actions = torch.randn(64, 2, 4, 8, 8, generator=gen), torch.randint(0, 6, (64, 2), generator=gen)
    noise = code_noise(narrow, 64, gen)
    drawn = narrow(context, actions, noise, torch.tensor(1.0))
    assert torch.equal(drawn[:, :1], narrow.draw_event(context, actions, noise, torch.tensor(1.0)))
    assert int(drawn[:, 0].max()) < EVENT_KINDS


def _chance(event_group: bool = True, loud: bool = True, **prior) -> ChanceCode:
    torch.manual_seed(0)
    chance = ChanceCode(6, context_length=2, latent_channels=4, latent_size=8, groups=GROUPS, values=VALUES,
                        width=8, hidden=32, event_group=event_group, **prior)
    for p in chance.parameters() if loud else ():  # loud logits, so that masked values would win draws if they could
        p.data.mul_(4)
    return chance


def test_the_prior_draws_only_the_values_an_event_has() -> None:
    chance = _chance()
    gen = torch.Generator().manual_seed(1)
    context, actions = torch.randn(256, 2, 4, 8, 8, generator=gen), torch.randint(0, 6, (256, 2), generator=gen)
    logits = chance.prior(context, actions)
    drawn = torch.cat([draw(logits, gen, t) for t in (0.0, 1.0, 5.0)])
    assert int(drawn[:, 0].max()) < EVENT_KINDS  # the event group: only its six values
    assert int(drawn[:, 1].max()) >= EVENT_KINDS  # a learnt group: all of them (checks the draws could)
    chained = _chance(prior_net="local", prior_chain=True)
    drawn = torch.cat([chained(context, actions, code_noise(chained, 256, gen), torch.tensor(t)) for t in (0.0, 1.0, 5.0)])
    assert int(drawn[:, 0].max()) < EVENT_KINDS  # the chained prior's event net: masked as well
    unmasked = _chance(event_group=False).prior(context, actions)
    assert int(draw(unmasked, gen, 5.0)[:, 0].max()) >= EVENT_KINDS


def _agreeing_codes(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows whose code is (an event drawn by a fair coin: nothing or a point, the place it puts
    its orb -- value 2 + the event for a point, 0 for nothing): the learnt group follows the event,
    as a respawn follows a taken orb."""
    context, actions = torch.randn(n, 2, 4, 8, 8, generator=gen), torch.zeros(n, 2, dtype=torch.long)
    event = torch.randint(0, 2, (n,), generator=gen)
    return context, actions, torch.stack([event, torch.where(event == 1, 2 + torch.randint(0, 2, (n,), generator=gen), 0)], 1)


@pytest.mark.parametrize("chain", [False, True], ids=["apart", "chained"])
def test_a_chained_prior_draws_a_respawn_only_with_its_event(chain) -> None:
    """The contract of ``prior_chain``: a learnt group drawn given the event draws the respawn with the
    point and never without; drawn apart from it, the two agree only by chance (a point whose orb
    vanishes, an orb invented with no point)."""
    chance = _chance(loud=False, prior_net="local", prior_chain=chain)
    opt = torch.optim.Adam([p for n, p in chance.named_parameters() if n.startswith("prior")], lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    for _ in range(150):
        context, actions, code = _agreeing_codes(64, gen)
        logits = chance.prior(context, actions, code)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), code.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    context, actions, _ = _agreeing_codes(400, gen)
    with torch.no_grad():
        drawn = chance(context, actions, code_noise(chance, 400, gen), torch.tensor(1.0))
    point, placed = drawn[:, 0] == 1, drawn[:, 1] >= 2
    agree = float((point == placed).float().mean())
    assert 0.3 <= float(point.float().mean()) <= 0.7  # both events drawn at about the coin's odds
    if chain:
        assert agree == 1.0, agree  # measured: 400 of 400
    else:
        assert agree < 0.7, agree  # measured: about half


def test_a_chained_prior_needs_the_local_net() -> None:
    with pytest.raises(SettingError, match="model.chance.prior_chain"):
        load("train", ["model.chance.prior_net=flat"])
    assert not load("train", ["model.chance.prior_net=flat", "model.chance.prior_chain=false"]).model.chance.prior_chain
    with pytest.raises(ValueError, match="prior_chain needs prior_net 'local'"):
        _chance(prior_chain=True)


def test_training_names_the_event_and_the_posterior_chooses_the_rest() -> None:
    chance = _chance()
    gen = torch.Generator().manual_seed(2)
    posterior = torch.randn(5, GROUPS, VALUES, generator=gen, requires_grad=True)
    events = torch.tensor([0, 1, 2, 4, 5])
    code = chance.code(posterior, events, None)
    assert code[:, 0].argmax(-1).tolist() == events.tolist()
    assert torch.equal(code[:, 1].argmax(-1), posterior[:, 1].argmax(-1))
    assert torch.equal(chance.learnt(posterior), posterior[:, 1:])
    code[:, 0].sum().backward()  # the data's event is no choice of the posterior: no gradient from it
    assert posterior.grad is None or posterior.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="event group needs"):
        ChanceCode(6, groups=1, values=4, event_group=True)


def test_the_event_group_needs_room_for_six_events_in_one_line() -> None:
    with pytest.raises(SettingError, match="model.chance.event_group"):
        load("train", ["model.chance.event_group=true", "model.denoiser.chance_groups=0"])
    with pytest.raises(SettingError, match="chance_values >= 6"):
        load("train", ["model.chance.event_group=true", "model.denoiser.chance_groups=1", "model.denoiser.chance_values=4"])
    assert load("train", ["model.chance.event_group=true", "model.denoiser.chance_groups=2"]).model.chance.event_group


def test_the_dream_counts_the_event_it_drew(tiny_events_checkpoint) -> None:
    """A forced code (as a session's regeneration forces it) with a point, a point lost and a game
    over: the dream reports exactly those, with no event head in the checkpoint."""
    model = WorldModel.from_pretrained(tiny_events_checkpoint, device="cpu")
    assert model.events is None and model.draws_events and model.has_events
    dream = Dream(model)
    dream.set_steps(1)
    dream.start(Bouncer().reset(3)[None].repeat(2, 0), seed=0)
    said = []
    for event in (1, 0, 2, 5):
        dream.force_chance(pack([event, 3], VALUES))
        result = dream.step(0)
        said.append((result.reward, result.done))
    assert said == [(1.0, False), (0.0, False), (-1.0, False), (-1.0, True)]
    for _ in range(20):  # drawn, not forced: always one of the six events
        assert int(dream.step(0) and dream.sampler.last_code[0, 0]) < EVENT_KINDS


def test_the_engine_keeps_score_and_lives_from_the_drawn_events(tiny_events_checkpoint) -> None:
    model = WorldModel.from_pretrained(tiny_events_checkpoint, device="cpu")
    engine = ModelEngine(model, steps=1, optimize=False)
    engine.reset(4)
    assert engine.score is not None and engine.score.lives == engine.game.start_lives
    engine.force_chance(pack([1, 0], VALUES))
    engine.step(0)
    engine.force_chance(pack([2, 0], VALUES))
    engine.step(0)
    assert (engine.score.score, engine.score.lives) == (1, engine.game.start_lives - 1)
    assert "none" not in engine.status().score
