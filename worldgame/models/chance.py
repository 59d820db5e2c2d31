"""The chance code: what the context and the action do not determine, chosen once per frame and drawn.

A game's next frame is the context's consequence plus a little chance (where an orb respawns,
whether a punch lands, how the ball bounces). A denoiser trained on the mean of the possible next
frames draws their blend when sampled in a few steps; no sampler can pick among outcomes the
network has averaged. So the chance part is taken out of the picture and made a small discrete
code ``c`` of G groups of V values (2 x 16 = 8 bits a frame by default):

* the *posterior* q(c | context, actions, real next latent) names, in training, which outcome the
  real frame took: its most likely value as a hard one-hot forward, the softmax's gradient back
  (Stochastic MuZero's chance encoder; ``train.teacher.posterior_noise=true`` draws it by
  Gumbel-max instead, which on Bouncer left the prior knowing nothing and the dream losing orbs);
* the denoiser is conditioned on ``c`` (its embedding beside the action embedding), so given the
  code the next frame is nearly deterministic and one or two steps draw it sharp;
* the *prior* p(c | context, actions), trained with cross-entropy on the posterior's code (no
  gradient into the posterior), is what play draws from, once per frame, before the sampler.

With ``event_group`` the first group is not learnt but *named by the data*: the transition's event
(:data:`EVENT_KINDS`: nothing, a point, a point lost, each with or without the game's end), read
from the recorded rewards and game ends. The prior draws it like the other groups, so at play the
event happens first and the frame is drawn to agree with it (the player back in the middle after a
hit, the taken orb gone), and the HUD's score and lives count the same draw the picture shows.

Like Stochastic MuZero's chance outcomes and Δ-IRIS's per-frame tokens, written for our latents.
Checkpoint part ``chance/``; a checkpoint without one plays exactly as before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from worldgame.models.local_prior import LocalPrior, pick
from worldgame.models.places import name_places, where_block

# the event group's values: value v is the reward sign EVENT_SIGNS[v % 3], the game ended if v >= 3
EVENT_SIGNS = (0, 1, -1)
EVENT_KINDS = 2 * len(EVENT_SIGNS)
# with ``appeared``, one value more: an object the game put on the field by chance with no reward and no
# end (Bouncer's coin). Without it, such a frame is "nothing happened", which gated the place off: the
# coin's place was left to the denoiser's average, and in every where model's dream orbs turned into coins
EVENT_APPEARED = EVENT_KINDS
MASKED = -1.0e4  # logit of a value the event group never takes (finite: fp16 and ONNX keep it)


def event_values(rewards: torch.Tensor, dones: torch.Tensor, appeared: torch.Tensor | None = None) -> torch.Tensor:
    """The event group's value (B,) of transitions with ``rewards`` (B,) and game ends ``dones`` (B,);
    with ``appeared`` (B,) bool, :data:`EVENT_APPEARED` where an object appeared and nothing else happened."""
    sign = torch.sign(rewards).long()
    values = (sign == 1).long() + 2 * (sign == -1).long() + len(EVENT_SIGNS) * dones.long()
    return values if appeared is None else torch.where(appeared.bool() & (values == 0), EVENT_APPEARED, values)


def events_of(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward sign (B,) in -1/0/+1, game ended (B,) bool) of event group values (B,): what the event
    head's ``predict`` gives, from the drawn code instead (values past :data:`EVENT_KINDS`: nothing)."""
    values = values.long()
    known = values < EVENT_KINDS
    signs = torch.tensor(EVENT_SIGNS, device=values.device)[values % len(EVENT_SIGNS)]
    return torch.where(known, signs, 0), known & (values >= len(EVENT_SIGNS))


def event_of(value: int) -> tuple[float, bool]:
    """(reward sign, game ended) an event group value says (the inverse of :func:`event_values`)."""
    value = int(value)
    if not 0 <= value < EVENT_KINDS:
        return 0.0, False
    return float(EVENT_SIGNS[value % len(EVENT_SIGNS)]), value >= len(EVENT_SIGNS)


class CodeEmbedding(nn.Module):
    """G groups of V values -> (B, G * dim), from indices (play) or one-hot rows (training's
    straight-through code, whose gradient must reach the posterior). The same weights either way."""

    def __init__(self, groups: int, values: int, dim: int) -> None:
        super().__init__()
        self.groups, self.values = groups, values
        self.weight = nn.Parameter(torch.randn(groups * values, dim))  # N(0, 1) as nn.Embedding: as loud as the actions from the start
        self.register_buffer("offsets", torch.arange(groups) * values, persistent=False)

    def forward(self, codes: torch.Tensor | None = None, one_hot: torch.Tensor | None = None) -> torch.Tensor:
        if one_hot is not None:  # (B, G, V) float
            return torch.einsum("bgv,gvd->bgd", one_hot, self.weight.view(self.groups, self.values, -1)).flatten(1)
        return F.embedding(codes.long() + self.offsets, self.weight).flatten(1)  # codes (B, G)


class CodeMap(nn.Module):
    """G groups of V values -> (B, dim, h, w): each value draws a map of its own over the latent grid,
    the maps of a frame's G values summed, which the denoiser reads beside its input latents. A code
    given only as a vector (CodeEmbedding, added to the time embedding) reaches every place of the
    frame alike, so "the orb comes back *there*" is hard to say with it; a map says where."""

    def __init__(self, groups: int, values: int, dim: int, size: int) -> None:
        super().__init__()
        self.groups, self.values, self.dim, self.size = groups, values, dim, size
        self.weight = nn.Parameter(torch.randn(groups * values, dim, size, size))  # as loud as the latents
        self.register_buffer("offsets", torch.arange(groups) * values, persistent=False)

    def forward(self, codes: torch.Tensor | None = None, one_hot: torch.Tensor | None = None) -> torch.Tensor:
        g, v, d, n = self.groups, self.values, self.dim, self.size
        if one_hot is not None:  # (B, G, V) float: training's straight-through code
            return torch.einsum("bgv,gvx->bx", one_hot, self.weight.view(g, v, -1)).view(-1, d, n, n)
        maps = F.embedding(codes.long() + self.offsets, self.weight.flatten(1))  # (B, G, d*n*n)
        return maps.sum(1).view(-1, d, n, n)


def _encoder(in_channels: int, width: int, latent_size: int) -> tuple[nn.Module, int]:
    """Two stride-2 convolutions over the stacked latents; returns the net and its flat output size."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU(),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),
        nn.Flatten(),
    )
    return net, 2 * width * (latent_size // 4) ** 2


PRIOR_NETS = ("flat", "local")  # settings.PriorNet's members (a checkpoint's config is checked against these)
POSTERIOR_NETS = ("flat", "where")  # settings.PosteriorNet's members


class ChanceCode(ModelMixin, ConfigMixin):
    """The chance code's posterior (training) and prior (play).

    Args:
        num_actions: size of the game's discrete action set.
        context_length: K, the context latents (and actions) both nets see.
        latent_channels, latent_size: one latent's channels and side (the denoiser's).
        groups, values: G x V, the code's shape (G independent draws of V values each).
        width: channels of each net's first convolution (doubled once).
        action_dim: size of one action embedding.
        hidden: the layer between the convolutions and the code's logits.
        event_group: group 0 is the transition's event named by the data (:func:`event_values`), not
            learnt by the posterior; its values past :data:`EVENT_KINDS` are never drawn.
        event_width: (a local prior with ``event_group``) channels of the event group's own net; 0 (what a
            config without this key means): ``width``. The event net runs every frame at play, so its
            width is most of the prior's cost (0.19 ms of 0.43 at width 32 on one core).
        appeared: (``event_group`` only) the event group has one value more, :data:`EVENT_APPEARED`: an
            object the game put on the field by chance with no reward (the data's ``appeared`` column),
            so a gated ``where`` code names its place too (what a config without this key means: no).
        prior_net: the prior's net: ``flat`` (the posterior's shape; what a config without this key
            means) or ``local`` (:class:`LocalPrior`, at the latents' resolution).
        prior_chain: (``local`` only) the groups are drawn one after another, each given those drawn
            before it (the event first); without it (what a config without this key means) they are
            drawn independently, and a drawn hit need not agree with the drawn respawn.
        posterior_net: the posterior: ``flat`` (two stride-2 convolutions and a linear head that learn
            what the code says; what a config without this key means) or ``where``, a rule with no
            weights: each pair of learnt groups (one or two pairs) names the latent cell where the real
            next latent departs most from what the denoiser expected knowing only the event
            (``expected``, models/places.py), its block then its cell in the block; a second pair the
            next such cell away from the first.
            Measured on Bouncer, the flat posterior's code said nothing of where a respawned orb
            appears (the respawns under one code value spread 11.7 px, under any 16.1), so told it
            the denoiser drew a hit's frame one orb short in 58 % of held-out hits; the most
            surprising cell is the respawn's in 87 % of them.
        where_floor: (``where`` only) the surprise (mean square over the latent's channels) a cell
            must pass to be named; below it the code names cell 0, the grid's corner (nothing new
            appeared). Bouncer's ordinary frames peak near 0.07 (0.9 quantile 1.2), its events near
            17 (0.1 quantile 11).
    """

    @register_to_config
    def __init__(self, num_actions: int, context_length: int = 4, latent_channels: int = 4, latent_size: int = 16,
                 groups: int = 2, values: int = 16, width: int = 32, action_dim: int = 16, hidden: int = 256,
                 event_group: bool = False, prior_net: str = "flat", prior_chain: bool = False,
                 posterior_net: str = "flat", where_floor: float = 3.0, appeared: bool = False,
                 event_width: int = 0) -> None:
        super().__init__()
        kinds = EVENT_KINDS + bool(appeared)
        if appeared and not event_group:
            raise ValueError("appeared names an object's appearance in the event group: it needs event_group")
        if event_group and (groups < 1 or values < kinds):
            raise ValueError(f"a chance code with an event group needs >= 1 group of >= {kinds} values, "
                             f"not {groups} x {values}")
        if prior_net not in PRIOR_NETS:
            raise ValueError(f"prior_net is {str(prior_net)[:40]!r}, not one of {', '.join(PRIOR_NETS)}")
        if prior_chain and prior_net != "local":
            raise ValueError(f"prior_chain needs prior_net 'local', not {str(prior_net)[:40]!r}")
        if posterior_net not in POSTERIOR_NETS:
            raise ValueError(f"posterior_net is {str(posterior_net)[:40]!r}, not one of {', '.join(POSTERIOR_NETS)}")
        learnt = groups - event_group
        if posterior_net == "where" and (learnt not in (2, 4) or not where_block(values, latent_size)):
            raise ValueError(f"a 'where' posterior needs two or four learnt groups whose {values} values cut the "
                             f"{latent_size}x{latent_size} latent grid into {values} blocks of {values} cells")
        mask = torch.zeros(groups, values)
        if event_group:
            mask[0, kinds:] = MASKED
        self.register_buffer("mask", mask, persistent=False)
        k, c = context_length, latent_channels
        flat = prior_net == "flat"  # made in the order of the first checkpoints (the same seed, the same start)
        if not flat:  # the event group foreseen by a net of its own (LocalPrior's docstring says why)
            def local(n: int, channels: int = width, **chained) -> LocalPrior:
                return LocalPrior(c * k, num_actions, k, latent_size, n, values, channels, hidden // 4, **chained)

            self.prior_event = local(1, event_width or width) if event_group else None
            learnt = groups - event_group
            self.prior_learnt = local(learnt, chain=prior_chain, given=values * event_group) if learnt else None
        else:
            self.prior_conv, _ = _encoder(c * k, width, latent_size)
        where = posterior_net == "where"  # a rule without weights (posterior())
        features = 2 * width * (latent_size // 4) ** 2  # _encoder's output
        if not where:
            self.posterior_conv, _ = _encoder(c * (k + 1), width, latent_size)
        if flat:
            self.prior_actions = nn.Embedding(num_actions, action_dim)
        if not where:
            self.posterior_actions = nn.Embedding(num_actions, action_dim)
        if flat:
            self.prior_head = nn.Sequential(nn.Linear(features + k * action_dim, hidden), nn.SiLU(), nn.Linear(hidden, groups * values))
        if not where:
            self.posterior_head = nn.Sequential(nn.Linear(features + k * action_dim, hidden), nn.SiLU(), nn.Linear(hidden, groups * values))

    @property
    def chained(self) -> bool:
        """Whether each group is drawn given the groups drawn before it (``prior_chain``)."""
        return bool(self.config.get("prior_chain", False))

    def prior(self, context: torch.Tensor, actions: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """The prior's logits (B, G, V) from context (B, K, C, h, w) and actions (B, K); a chained
        prior's group g given the values of ``code`` (B, G) before it (training: the posterior's)."""
        if self.chained and code is None:
            raise ValueError("a chained prior's logits need the code its later groups are given")
        if self.config.prior_net == "local":
            stacked, eg = context.flatten(1, 2), int(self.config.event_group)
            logits = [self.prior_event(stacked, actions)] if eg else []
            if self.prior_learnt is not None:
                logits.append(self.prior_learnt(stacked, actions, code[:, 0] if eg else None, code[:, eg:])
                              if self.chained else self.prior_learnt(stacked, actions))
            logits = torch.cat(logits, 1)
        else:
            h = self.prior_conv(context.flatten(1, 2))
            logits = self.prior_head(torch.cat([h, self.prior_actions(actions).flatten(1)], 1))
        return logits.view(-1, self.config.groups, self.config.values) + self.mask

    def forward(self, context: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor,
                temperature: torch.Tensor) -> torch.Tensor:
        """The frame's code (B, G), drawn from the prior given context (B, K, C, h, w) and actions (B, K)
        with Gumbel ``noise`` (B, G, V) (:func:`code_noise`) at ``temperature`` (a 0-d tensor; 0 = the
        likeliest code): what play runs, once a frame, on ONNX Runtime where it can."""
        if not self.chained:
            code = pick(self.prior(context, actions), noise, temperature)
        else:
            event = self.draw_event(context, actions, noise, temperature) if self.config.event_group else None
            drawn = [] if event is None else [event]
            if self.prior_learnt is not None:
                drawn.append(self.draw_places(context, actions, event, noise, temperature))
            code = torch.cat(drawn, 1)
        if self.gates_places:  # a place only with an event (code())
            code = torch.cat([code[:, :1], torch.where(code[:, :1] == 0, 0, code[:, 1:])], 1)
        return code

    def draw_event(self, context: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor,
                   temperature: torch.Tensor) -> torch.Tensor:
        """A local prior's event group (B, 1), drawn as :meth:`forward` draws it (``noise``: all groups')."""
        return self.prior_event.draw(context.flatten(1, 2), actions, None, noise[:, :1], temperature, self.mask[:1])

    def draw_places(self, context: torch.Tensor, actions: torch.Tensor, event: torch.Tensor | None,
                    noise: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """A chained local prior's learnt groups (B, G - 1 or G) given the drawn ``event`` (B, 1) or None,
        before :meth:`forward`'s gate."""
        eg = int(self.config.event_group)
        return self.prior_learnt.draw(context.flatten(1, 2), actions, None if event is None else event[:, 0],
                                      noise[:, eg:], temperature, self.mask[eg:])

    @property
    def gates_places(self) -> bool:
        """Whether a drawn code names a place only with an event (a ``where`` code with an event group)."""
        return self.names_places and bool(self.config.event_group)

    @property
    def draws_in_two(self) -> bool:
        """Whether play may draw the event first and the place only when there is one: a gated code
        whose event and place have nets of their own (a chained local prior). On Bouncer 99 frames
        of 100 have no event, so the place's net -- half the draw's cost -- mostly need not run."""
        return self.gates_places and self.chained  # chained: a local prior (the constructor checks)

    def likeliest(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The most likely code (B, G) (a chained prior's: each group's likeliest given those before)."""
        g, v = self.config.groups, self.config.values
        return self(context, actions, torch.zeros(len(context), g, v, device=context.device), torch.tensor(0.0))

    def drawer(self, temperature: float = 1.0):
        """``draw_code(context, actions, generator) -> (B, G)``: this prior's code for each frame, drawn
        (what the reference loop and training's dreams take; play's Sampler draws the same way)."""
        t = torch.tensor(float(temperature))
        return lambda context, actions, generator: self(context, actions, code_noise(self, len(context), generator,
                                                                                   context.device, context.dtype), t)

    @property
    def names_places(self) -> bool:
        """Whether the posterior is the ``where`` rule (its code needs the denoiser's ``expected`` latent)."""
        return self.config.get("posterior_net", "flat") == "where"

    @property
    def places(self) -> int:
        """How many places a ``where`` code names (a pair of learnt groups each); 0 for another posterior."""
        return (self.config.groups - int(self.config.event_group)) // 2 if self.names_places else 0

    def posterior(self, context: torch.Tensor, actions: torch.Tensor, target: torch.Tensor,
                  expected: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior's logits (B, G, V): which outcome the real next latent ``target`` (B, C, h, w) took.
        A ``where`` posterior's are the surprise of each cell, ``target`` against ``expected`` (B, C, h, w),
        the floor at cell 0 (its fine group: the cells of the block its coarse group names)."""
        if self.names_places:
            if expected is None:
                raise ValueError("a 'where' posterior names the place the next latent departs from the expected one: pass expected")
            score = (target - expected).float().square().mean(1)
            named = name_places(score, self.config.values, self.places, self.config.where_floor)
            groups = [torch.zeros_like(named[0])] * int(self.config.event_group) + named
            return torch.stack(groups, 1)
        h = self.posterior_conv(torch.cat([context.flatten(1, 2), target], 1))
        h = torch.cat([h, self.posterior_actions(actions).flatten(1)], 1)
        return self.posterior_head(h).view(-1, self.config.groups, self.config.values)

    def learnt(self, logits: torch.Tensor) -> torch.Tensor:
        """The groups of ``logits`` (B, G, V) the posterior chooses (all but the event group)."""
        return logits[:, 1:] if self.config.event_group else logits

    def code(self, posterior: torch.Tensor, events: torch.Tensor | None, generator: torch.Generator | None,
             noise: bool = False) -> torch.Tensor:
        """Training's one-hot code (B, G, V): the posterior's (:func:`straight_through`), its event group
        replaced by the data's ``events`` (B,) (:func:`event_values`) where the code has one."""
        code = straight_through(posterior, generator, noise)
        if not self.config.event_group:
            return code
        named = F.one_hot(events.long(), self.config.values).to(code.dtype)[:, None]
        learnt = code[:, 1:]
        if self.names_places:  # a place only with an event: on Bouncer a place drawn on a frame without one
            # was a coin appearing (an orb the draw landed on turned into a coin, and the coins multiplied)
            corner = F.one_hot(torch.zeros_like(events.long()), self.config.values).to(code.dtype)[:, None]
            learnt = torch.where((events == 0)[:, None, None], corner, learnt)
        return torch.cat([named, learnt], 1)


def straight_through(logits: torch.Tensor, generator: torch.Generator | None, noise: bool = True) -> torch.Tensor:
    """A hard one-hot code (B, G, V) drawn from ``logits`` by Gumbel-max, with the gradient of the
    softmax (straight-through Gumbel-softmax, temperature 1); ``noise=False``: the most likely value
    (a deterministic posterior, straight-through softmax)."""
    soft = (logits + gumbel_like(logits, generator)).softmax(-1) if noise else logits.softmax(-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


def gumbel_like(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gumbel(0, 1) noise of ``logits``'s shape, drawn from ``generator`` on its device."""
    return _gumbel(logits.shape, generator, logits.device, logits.dtype)


def _gumbel(shape: tuple[int, ...], generator: torch.Generator | None, device, dtype: torch.dtype) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7))).to(dtype)


def code_noise(chance: ChanceCode, batch: int, generator: torch.Generator | None, device=None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The Gumbel noise (B, G, V) of one frame's draw of ``chance``'s code, drawn from ``generator``
    (rounded to the model's ``dtype``, as the logits it is added to were). It is drawn at every
    temperature, so the generator -- and every frame's sampling noise after the code -- does not
    depend on the temperature."""
    return _gumbel((batch, chance.config.groups, chance.config.values), generator, device, dtype).float()


def draw(logits: torch.Tensor, generator: torch.Generator | None, temperature: float = 1.0) -> torch.Tensor:
    """A code (B, G) from independent groups' ``logits`` (B, G, V): :func:`pick` with noise drawn
    from ``generator`` (a chained prior draws with its own ``forward``)."""
    return pick(logits, gumbel_like(logits, generator).float(), torch.tensor(float(temperature)))


def pack(code: list[int], values: int) -> int:
    """One frame's G values -> one whole number (group g counts values**g): a session column."""
    return sum(int(v) * values**g for g, v in enumerate(code))


def unpack(packed: int, groups: int, values: int) -> torch.Tensor:
    """One :func:`pack`-ed number -> its (1, G) code."""
    return torch.tensor([[(int(packed) // values**g) % values for g in range(groups)]], dtype=torch.long)


def diversity_loss(logits: torch.Tensor) -> torch.Tensor:
    """log V minus the entropy of the batch's mean code distribution, averaged over the groups (0 when
    every value is used equally; wav2vec 2.0's diversity loss). Without it the posterior can settle
    on one value for every frame -- a dead code the denoiser learns to ignore -- before the
    denoiser has learnt to read it (measured on Boxing: perplexity 7.5 -> 1.0 within 3,000 steps)."""
    mean = logits.float().softmax(-1).mean(0)  # (G, V)
    entropy = -(mean * mean.clamp_min(1e-12).log()).sum(-1)
    return (math.log(logits.shape[-1]) - entropy).mean()


def rate(posterior: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """KL(q || p) in nats per frame (summed over the groups, averaged over the batch), with the
    prior held still: what each frame's code says that the prior could not foresee. Paid by the
    posterior (DreamerV3's representation loss), it keeps the code for the game's chance -- a
    respawn's place, a punch that lands -- and off the detail the context already decides, which a
    code drawn from the prior at play would only scramble."""
    q = posterior.float().log_softmax(-1)
    p = prior.detach().float().log_softmax(-1)
    return (q.exp() * (q - p)).sum(-1).sum(-1).mean()


def usage(codes: torch.Tensor, values: int) -> torch.Tensor:
    """Perplexity of each group's code over a batch (B, G) -> (G,): how many values are in use
    (1 = a dead code that always says the same; V = every value used equally)."""
    counts = F.one_hot(codes.long(), values).float().mean(0)  # (G, V)
    entropy = -(counts * counts.clamp_min(1e-12).log()).sum(-1)
    return entropy.exp()


def example_conditions(net, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A (batch, K [+ G]) long input for ``net``'s actions slot: random actions (zeros without a
    generator), then a random chance code where the network has one (traces and export probes)."""
    k, groups = net.config.context_length, net.config.get("chance_groups", 0)
    if generator is None:
        return torch.zeros(batch, k + groups, dtype=torch.long, device=device)
    actions = torch.randint(0, net.config.num_actions, (batch, k), generator=generator)
    code = torch.randint(0, net.config.get("chance_values", 1), (batch, groups), generator=generator)
    return torch.cat([actions, code], 1).to(device)
