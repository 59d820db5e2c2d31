"""A ``where`` chance code (models/chance.py ``posterior_net="where"``): its two learnt groups name the
latent cell where the real next frame departs most from what the denoiser expected, block then
cell. On Bouncer the flat posterior's code said nothing of where a respawned orb appears, so the
denoiser, told it, drew a hit's frame one orb short; a ``where`` code is a place by construction.

The contract here: a game where after each step one object appears in one of the sixteen cells of a
4 x 4 latent grid by a fair draw. Trained for real (a tiny denoiser and chance code, the teacher
stage's loss pieces and its start for the code's maps), then sampled in one step: told the code the
posterior names for a held-out frame, the denoiser draws the object in that frame's cell; drawn from
the prior, every frame shows one whole object, in many cells."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from worldgame.models import ActionDenoiser, TinyAutoencoder, WorldModel
from worldgame.models.chance import ChanceCode, straight_through
from worldgame.models.places import PLACE_REACH, where_block, where_logits, where_maps
from worldgame.models.sampler import Sampler
from worldgame.models.schedulers import lcm_scheduler, train_scheduler
from worldgame.settings import SettingError, load
from worldgame.train.sampling import sample
from worldgame.train.teacher import _start_where_maps, expected_next

C, S, K, V = 4, 4, 1, 4  # a 4 x 4 latent grid: V = 4 blocks of 4 cells
DRAWS = 256


def test_the_coarse_group_names_the_block_and_the_fine_one_the_cell() -> None:
    """Every cell of a 16 x 16 grid (V = 16): a score peaked there is named as its block and its cell
    in that block, and the two maps those values light are brightest together at that cell alone."""
    maps = where_maps(16, 16, 4)
    for y in range(16):
        for x in range(16):
            score = torch.zeros(1, 16, 16)
            score[0, y, x] = 5.0
            coarse, fine = where_logits(score, 16)
            block = int(coarse.argmax())
            cell = int(fine[0, block].argmax())
            assert (block, cell) == ((y // 4) * 4 + x // 4, (y % 4) * 4 + x % 4)
            lit = (maps[block] + maps[16 + cell]).sum(0)
            assert (lit == lit.max()).nonzero().tolist() == [[y, x]]
    assert [where_block(v, n) for v, n in ((16, 16), (4, 4), (9, 9), (16, 12), (12, 16))] == [4, 2, 3, 0, 0]


def test_a_where_code_needs_two_or_four_learnt_groups_on_a_square_grid_in_one_line() -> None:
    for groups in (4, 2):  # 3 or 1 learnt groups: not whole places
        with pytest.raises(ValueError, match="two or four learnt groups"):
            ChanceCode(3, 1, C, 16, groups=groups, values=16, event_group=True, posterior_net="where")
    for wrong in (["model.denoiser.chance_groups=2", "model.chance.event_group=true"],
                  ["model.denoiser.chance_groups=4", "model.chance.event_group=true"],
                  ["model.denoiser.chance_groups=3", "model.denoiser.chance_values=9", "model.chance.event_group=true"]):
        with pytest.raises(SettingError, match="model.chance.posterior_net=where: names each place by two learnt groups"):
            load("train", ["data=d", "out=o", "model.chance.posterior_net=where", *wrong])
    load("train", ["data=d", "out=o", "model.chance.posterior_net=where", "model.denoiser.chance_groups=5",
                   "model.chance.event_group=true"])  # two places


def test_a_second_place_names_the_next_surprise_out_of_the_first_ones_reach() -> None:
    """Two surprising cells far apart: the code names both, the larger first; a second one within
    PLACE_REACH of the first, or below the floor: the second place is the corner."""
    chance = ChanceCode(3, 1, C, 16, groups=5, values=16, event_group=True, posterior_net="where")
    assert chance.places == 2
    context, actions = torch.zeros(3, 1, C, 16, 16), torch.zeros(3, 1, dtype=torch.long)
    target, expected = torch.zeros(3, C, 16, 16), torch.zeros(3, C, 16, 16)
    target[:, :, 3, 5] = 10.0  # the largest surprise, in every window
    target[0, :, 12, 9] = 5.0  # far: the second place
    target[1, :, 4, 6] = 5.0  # inside the first one's reach
    target[2, :, 12, 9] = 1.0  # below the floor (3)
    code = chance.posterior(context, actions, target, expected).argmax(-1)
    cell = lambda block, fine: ((block // 4) * 4 + fine // 4, (block % 4) * 4 + fine % 4)
    assert [cell(int(c[1]), int(c[2])) for c in code] == [(3, 5)] * 3
    assert [cell(int(c[3]), int(c[4])) for c in code] == [(12, 9), (0, 0), (0, 0)]
    assert PLACE_REACH >= 1


def _batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context: an empty field; target: one object lit in a cell chosen by a fair draw (and that cell)."""
    context = torch.zeros(n, K, C, S, S) - 1
    cell = torch.randint(0, S * S, (n,), generator=gen)
    target = torch.zeros(n, C, S * S) - 1
    target[torch.arange(n), :, cell] = 1
    return context, torch.zeros(n, K, dtype=torch.long), target.view(n, C, S, S), cell


@pytest.fixture(scope="module")
def model() -> WorldModel:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        net = ActionDenoiser(num_actions=2, context_length=K, latent_channels=C, latent_size=S, block_out_channels=(16, 16),
                             action_dim=8, norm_num_groups=8, chance_groups=2, chance_values=V, chance_map=2)
        chance = ChanceCode(2, K, C, S, groups=2, values=V, width=8, hidden=32, prior_net="local", prior_chain=True,
                            posterior_net="where", where_floor=1.0)
        _start_where_maps(net, chance)  # as the teacher stage starts a fresh where code
        opt = torch.optim.AdamW([*net.parameters(), *chance.parameters()], lr=2e-3)
        noise = train_scheduler("sample")
        for _ in range(400):
            context, actions, z0, _ = _batch(32, gen)
            t = torch.randint(0, 1000, (32,), generator=gen)
            zt = noise.add_noise(z0, torch.randn(z0.shape, generator=gen), t)
            expected = expected_next(net, chance, context, actions, None, torch.zeros(32), noise)
            code = straight_through(chance.posterior(context, actions, z0, expected), gen, noise=False)
            prior = chance.prior(context, actions, code.detach().argmax(-1))
            loss = (net(zt, t, context, actions, torch.zeros(32), code) - z0).square().mean() \
                + F.cross_entropy(prior.flatten(0, 1), code.detach().argmax(-1).flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    meta = {"game": "sixteen_places", "frame_size": 16, "action_names": ["NOOP", "FIRE"], "context_noise": 0.0,
            "prediction_type": "sample", "context_length": K}
    vae = TinyAutoencoder(latent_channels=C, width=8, encoder_blocks=1, decoder_blocks=1)
    return WorldModel(vae, net.eval(), meta, chance=chance.eval())


def _lit_cells(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(brightest cell (n,), whether it is whole (> 0.8) and every other cell empty (< 0.2)) of samples (n, C, S, S)."""
    lit = ((z.mean(1).flatten(1) + 1) / 2).clamp(0, 1)
    top = lit.max(1)
    others = lit.scatter(1, top.indices[:, None], 0.0)
    return top.indices, (top.values > 0.8) & (others.max(1).values < 0.2)


@torch.no_grad()
def test_told_the_where_code_the_denoiser_draws_the_object_in_its_cell(model) -> None:
    context, actions, target, cell = _batch(DRAWS, torch.Generator().manual_seed(1))
    expected = expected_next(model.denoiser, model.chance, context, actions, None, None, lcm_scheduler("sample"))  # the blend of 16 cells
    code = model.chance.posterior(context, actions, target, expected).argmax(-1)  # the block, then the cell in it
    s = S // where_block(V, S)
    y, x = cell // S, cell % S
    assert torch.equal(code[:, 0], (y // s) * s + x // s) and torch.equal(code[:, 1], (y % s) * s + x % s)
    z = sample(model.denoiser, lcm_scheduler("sample"), context, torch.cat([actions, code], 1), 1, seed=2)
    drawn, clean = _lit_cells(z)
    assert clean.all() and torch.equal(drawn, cell), (clean.float().mean(), (drawn == cell).float().mean())


@torch.no_grad()
def test_drawn_from_the_prior_every_frame_shows_one_whole_object_in_many_cells(model) -> None:
    sampler = Sampler(model, "lcm")
    context, actions, _, _ = _batch(DRAWS, torch.Generator().manual_seed(3))
    drawn, clean = _lit_cells(sampler.step(context, actions, steps=1, generator=torch.Generator().manual_seed(4)))
    assert clean.all(), clean.float().mean()
    assert len(drawn.unique()) >= 14, drawn.unique()  # a fair draw of 16 cells, 256 times


def test_the_where_code_names_the_corner_when_nothing_passes_the_floor_and_needs_the_expected_latent() -> None:
    chance = ChanceCode(2, K, C, S, groups=2, values=V, prior_net="local", posterior_net="where", where_floor=1.0)
    context, actions, target, cell = _batch(8, torch.Generator().manual_seed(5))
    y, x = cell // S, cell % S
    surprising = chance.posterior(context, actions, target, target - 2 * (target > 0)).argmax(-1)  # 4, above the floor
    assert torch.equal(surprising, torch.stack([y // 2 * 2 + x // 2, y % 2 * 2 + x % 2], 1))
    quiet = chance.posterior(context, actions, target, target - 0.5 * (target > 0)).argmax(-1)  # 0.25, below it
    assert (quiet == 0).all()
    with pytest.raises(ValueError, match="pass expected"):
        chance.posterior(context, actions, target)


def test_with_an_event_group_a_place_is_named_and_drawn_only_with_an_event() -> None:
    """A place drawn on a frame without an event was, on Bouncer, a coin appearing: the draw that
    landed on an orb turned it into a coin and the coins multiplied. So the rule names, and the prior
    draws, a place only where the event group names an event; elsewhere the corner."""
    torch.manual_seed(0)
    chance = ChanceCode(2, K, C, 16, groups=3, values=16, event_group=True, prior_net="local", prior_chain=True,
                        posterior_net="where", where_floor=1.0)
    for p in chance.parameters():  # a prior far from uniform: it draws places everywhere
        p.data.mul_(4)
    with torch.no_grad():  # and an event about half the time
        chance.prior_event.head[-1].weight.zero_()
        chance.prior_event.head[-1].bias.copy_(torch.tensor([1.0] + [-1.0] * 5 + [0.0] * 10))
    context, target = torch.zeros(8, K, C, 16, 16) - 1, torch.zeros(8, C, 16, 16) - 1
    target[:, :, 9, 6] = 1  # something appeared at cell (9, 6): block 9, cell 6
    actions, events = torch.zeros(8, K, dtype=torch.long), torch.tensor([0, 1, 2, 0, 3, 4, 0, 5])
    code = chance.code(chance.posterior(context, actions, target, context[:, -1]), events, None).argmax(-1)
    assert code[:, 0].tolist() == events.tolist()
    assert code[:, 1:].tolist() == [[0, 0] if e == 0 else [9, 6] for e in events.tolist()]
    from worldgame.models.chance import code_noise

    drawn = chance(context.repeat(32, 1, 1, 1, 1), actions.repeat(32, 1), code_noise(chance, 256, torch.Generator().manual_seed(1)),
                   torch.tensor(1.0))
    quiet = drawn[:, 0] == 0
    assert quiet.any() and (drawn[quiet, 1:] == 0).all() and (drawn[~quiet, 1:] != 0).any()
