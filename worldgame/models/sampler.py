"""The prepared sampler a dream samples with (StreamDiffusion's ``prepare()``): one sampler choice of
one WorldModel, with everything play, bench, eval and serve need to run it fast.

* the choice: ``lcm``, ``ddim`` or ``dpmsolver`` run the checkpoint's denoiser/, ``teacher`` runs
  its teacher/ with DDIM (any step count) -- the same prepared plans either way, only the network
  and the step limit differ;
* the prepared per-step-count plans (models/samplers/: lcm.py, ddim.py, dpmsolver.py),
  made once per (step count, input shape) and kept;
* the fast path, keyed by batch size: a traced graph (:meth:`Sampler.trace`) or an inference
  backend (models/backends/, :meth:`Sampler.accelerate`) for the denoiser and the VAE decoder.
  Every batch size without one runs the torch modules, so eval can trace the batch sizes its
  batched dreams use (``trace_on_use``) while play keeps batch 1.

The WorldModel itself holds no routing state: it is the modules, encode/decode and the reference
sampling loop (``world_model.scheduler_sample``) every plan here is tested against bit for bit.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from worldgame.errors import WorldgameError
from worldgame.models.chance import code_noise, example_conditions
from worldgame.models.frame_denoiser import ContextGraph, SplitDenoiser, StepGraph, has_context_features
from worldgame.models.samplers import make_plan
from worldgame.models.samplers.base import PreparedSampler
from worldgame.models.schedulers import DEFAULT_SPACING, SAMPLERS, SPACINGS, play_scheduler, set_timesteps
from worldgame.models.world_model import MAX_TEACHER_STEPS, WorldModel, play_default

MAX_PLAY_STEPS = 8  # the few-step samplers' limit (keys 1/2/4/8); the teacher's is MAX_TEACHER_STEPS
MAX_PLANS = 32  # eval's many batch sizes: keep memory bounded
MAX_TRACED = 8  # batch sizes traced on use at most; later ones run the torch modules
TRACE_AFTER = 3  # samples of one batch size before it is traced: a trace (~1 s) pays off only on a long run
# the largest batch traced on use: tracing saves Python overhead, which small batches are made of
# (shipped Bouncer model, one thread: batch 2 27 -> 16 ms, batch 4 26 -> 23 ms, batch 64 278 -> 290 ms)
MAX_TRACED_BATCH = 8
ANY_BATCH = 0  # the fast-path key of a path that serves every batch size without one of its own


def choose(metadata: dict[str, Any], name: str | None, spacing: str | None) -> tuple[str, str]:
    """The (sampler, spacing) to run, checked: ``name`` None = the checkpoint's play default (a
    spacing alone changes that sampler's spacing); ``spacing`` None = the sampler's default."""
    if name is None:
        name = play_default(metadata)["sampler"]
        spacing = spacing if spacing is not None else play_default(metadata)["spacing"]
    if name not in SAMPLERS:
        raise WorldgameError(f"sampler={name!r}: choose {', '.join(SAMPLERS)}")
    if spacing is not None and (name == "lcm" or spacing not in SPACINGS):
        raise WorldgameError(f"spacing={spacing!r}: " + ("LCM has its own timesteps; leave spacing unset (null)"
                                                         if name == "lcm" else f"choose {', '.join(SPACINGS)}"))
    return name, spacing or DEFAULT_SPACING.get(name)


class Sampler:
    """One sampler of ``model``, prepared (see the module docstring).

    Args:
        model: the loaded WorldModel (``teacher=True`` for the teacher sampler).
        name, spacing: the sampler (:func:`choose`; None = the checkpoint's play default).
        trace_on_use: trace the network for each batch size up to :data:`MAX_TRACED_BATCH` sampled
            :data:`TRACE_AFTER` times (CPU float32 only; eval's batched dreams, not its one-off batches). Play traces batch 1 once
            instead (:meth:`trace`).
    """

    def __init__(self, model: WorldModel, name: str | None = None, spacing: str | None = None,
                 trace_on_use: bool = False) -> None:
        self.name, self.spacing = choose(model.metadata, name, spacing)
        if self.name == "teacher" and model.teacher is None:
            raise WorldgameError(f"sampler=teacher: checkpoint {getattr(model, 'path', '')} has no teacher/ folder "
                                 "(or was loaded without it); use sampler=lcm")
        self.model = model
        # the teacher is DDIM like any other: its network, DDIM's plans and many more steps allowed
        self.network = model.teacher if self.name == "teacher" else model.denoiser
        self.plan_kind = "ddim" if self.name == "teacher" else self.name
        self.max_steps = MAX_TEACHER_STEPS if self.name == "teacher" else MAX_PLAY_STEPS
        self.scheduler = play_scheduler(self.plan_kind, self.spacing, model.prediction_type)
        self._plans: dict[tuple, PreparedSampler] = {}  # (steps, shape, context noise) -> plan
        self._fast: dict[int, tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]] = {}
        self.trace_on_use = trace_on_use and model.device.type == "cpu" and model.dtype == torch.float32
        self._uses: dict[int, int] = {}  # samples per batch size without a fast path
        self.precision = "fp32" if model.dtype == torch.float32 else str(model.dtype).removeprefix("torch.")  # a backend may lower it (int8)
        # the chance code (models/chance.py): drawn from the prior once per frame, before the steps
        self.chance = model.chance if self.network.config.get("chance_groups", 0) else None
        self.chance_temperature = 1.0  # 1 = the prior's odds, 0 = the most likely code
        self._temperature = torch.tensor(1.0)  # the same, as the prior's graph takes it
        self._prior_fast: dict[int, Callable[..., torch.Tensor]] = {}  # batch size -> the prior's draw on a backend
        self._conditions: dict[int, torch.Tensor] = {}  # batch size -> (B, K + G) actions then code, reused
        self.last_code: torch.Tensor | None = None  # (B, G): the code of the last sample
        self._forced: torch.Tensor | None = None  # a recorded code the next sample uses instead of its draw
        self.chance_ms = 0.0  # the last draw's time (prior + draw), ms

    # --- the fast path, per batch size ---------------------------------------------------------
    def accelerate(self, batch_size: int, denoise: Callable[..., torch.Tensor],
                   decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Run inputs of ``batch_size`` through ``denoise`` (and ``decode``, unless None) instead of
        the torch modules: callables of the same signature (a traced graph, an inference backend).
        ``batch_size`` ANY_BATCH: every batch size that has no path of its own."""
        self._fast[batch_size] = (denoise, decode)

    def accelerate_prior(self, batch_size: int, prior: Callable[..., torch.Tensor]) -> None:
        """Run the chance prior's draw (its forward) at ``batch_size`` through ``prior`` (an inference backend)."""
        self._prior_fast[batch_size] = prior

    def force_code(self, code: torch.Tensor | None) -> None:
        """The next sample uses ``code`` (B, G) instead of the one it draws (it still draws it, so the
        generator advances as it did): a recorded session regenerates its recorded codes."""
        self._forced = code

    def conditions(self, context: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``actions`` (B, K), followed by this frame's chance code when the network has one: drawn from
        the prior at :attr:`chance_temperature` with ``generator`` (before any sampling noise)."""
        if self.chance is None:
            return actions
        t0 = time.perf_counter()
        b, k = actions.shape
        buf = self._conditions.get(b)
        if buf is None:
            buf = self._conditions[b] = torch.zeros(b, k + self.chance.config.groups, dtype=torch.long, device=actions.device)
        noise = code_noise(self.chance, b, generator, actions.device, self.model.dtype)
        self._temperature.fill_(self.chance_temperature)
        code = self._prior_fast.get(b, self.chance)(context, actions, noise, self._temperature)
        buf[:, :k] = actions
        buf[:, k:] = code if self._forced is None else self._forced
        self._forced = None
        self.last_code = buf[:, k:]
        self.chance_ms = (time.perf_counter() - t0) * 1000  # bench's "chance" stage (the draw syncs on the argmax)
        return buf

    def fast_batches(self) -> set[int]:
        """The batch sizes that run on a fast path."""
        return set(self._fast)

    def trace(self, batch_size: int = 1) -> None:
        """Trace the network this sampler runs for one batch size (CPU: frozen, ~2x faster per step
        on the shipped model; bit-identical to the modules in float32, which tests check).

        Why ``torch.jit`` although torch 2.13 deprecates it: measured on the shipped Bouncer model
        (batch 1, one thread), ``torch.export`` runs at eager speed (32 ms vs 16 ms traced) after 5 s
        of export, and ``torch.compile`` needs a C++ toolchain, minutes of compilation per shape and
        is not bit-identical to the modules, which recorded sessions need. Its deprecation warning
        is silenced here, the one place it is used; ONNX Runtime stays the default CPU path."""
        k, c, s = self.model.context_length, self.network.config.latent_channels, self.network.config.latent_size
        d = {"device": self.model.device, "dtype": self.model.dtype}
        example = (
            torch.zeros(batch_size, c, s, s, **d),
            torch.zeros(batch_size, dtype=torch.long, device=self.model.device),
            torch.zeros(batch_size, k, c, s, s, **d),
            example_conditions(self.network, batch_size, device=self.model.device),  # actions (+ code)
            torch.zeros(batch_size, **d),
        )
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks inside diffusers blocks
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace / freeze: see above
            if has_context_features(self.network):  # two graphs: the context's features once a frame, the step
                features = self.network.context_features(*example[2:])
                traced = SplitDenoiser(self._traced(ContextGraph(self.network), example[2:]),
                                       self._traced(StepGraph(self.network), (*example[:2], *features)))
            else:
                traced = self._traced(self.network, example)
        self.accelerate(batch_size, traced, None)

    def _traced(self, module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> Callable[..., Any]:
        traced = torch.jit.trace(module, example, check_trace=False)
        return torch.jit.freeze(traced.eval()) if self.model.device.type == "cpu" else traced

    def _path(self, batch_size: int) -> tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]:
        fast = self._fast.get(batch_size, self._fast.get(ANY_BATCH))
        if fast is None and self.trace_on_use and batch_size <= MAX_TRACED_BATCH and len(self._fast) < MAX_TRACED:
            self._uses[batch_size] = uses = self._uses.get(batch_size, 0) + 1
            if uses >= TRACE_AFTER:
                self.trace(batch_size)
                fast = self._fast[batch_size]
        return fast or (self.network, None)

    # --- sampling ------------------------------------------------------------------------------
    def plan(self, steps: int, context: torch.Tensor, context_noise: float | None = None) -> PreparedSampler:
        """This sampler prepared for ``steps``, ``context``'s shape and a context-noise level (None:
        the checkpoint's), made on first use and kept. The level is the caller's (each dream owns
        its own): the sampler itself holds no player's setting, so any number of dreams share it."""
        noise = self.model.context_noise if context_noise is None else float(context_noise)
        key = (steps, tuple(context.shape), noise)
        plan = self._plans.get(key)
        if plan is None:
            if not 1 <= steps <= self.max_steps:
                raise ValueError(f"steps must be 1..{self.max_steps} for sampler {self.name}, got {steps}")
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = make_plan(self.plan_kind, self.scheduler, steps, context, noise)
        return plan

    @torch.inference_mode()
    def step(
        self,
        context: torch.Tensor,
        actions: torch.Tensor,
        steps: int = 4,
        generator: torch.Generator | None = None,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
        out: torch.Tensor | None = None,
        context_noise: float | None = None,
    ) -> torch.Tensor:
        """Predict the next latent with ``steps`` steps: a prepared plan, bit-identical to running the
        diffusers scheduler it mirrors step by step (``world_model.scheduler_sample``).

        Args:
            context: (B, K, C, h, w) the last K latents, oldest first.
            actions: (B, K) long, the actions that produced context frames 2..K and, last, the
                action being taken now (the one the predicted frame answers). A network with a
                chance code gets this frame's code after them (:meth:`conditions`).
            steps: sampling steps (1..8; 1..1000 for the teacher).
            generator: torch generator for the sampling noise (same seed -> same frames).
            on_step: called with (step index, denoised estimate) after each step (LCM Steps view).
            out: (B, C, h, w) tensor to write the result into (play reuses one); None: a new one.
            context_noise: the level the context is noised with (None: the checkpoint's).
        Returns:
            (B, C, h, w) predicted latent (``out`` when given).
        """
        plan = self.plan(steps, context, context_noise)
        if out is None:
            out = torch.empty_like(plan.latents)
        actions = self.conditions(context, actions, generator)  # + the chance code, drawn first
        return plan.sample(self._path(context.shape[0])[0], context, actions, generator, on_step, out)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``model.decode`` through this batch size's fast decoder where there is one."""
        return self.model.decode(latents, self._fast.get(latents.shape[0], self._fast.get(ANY_BATCH, (None, None)))[1])

    def timesteps(self, steps: int) -> list[int]:
        """The timesteps of a ``steps``-step sample (what the LCM Steps view labels)."""
        set_timesteps(self.scheduler, steps)
        return [int(t) for t in self.scheduler.timesteps]


def as_sampler(sampler: Sampler | WorldModel) -> Sampler:
    """``sampler`` itself, or a WorldModel's play-default sampler on the torch modules (scripts, tests)."""
    return sampler if isinstance(sampler, Sampler) else Sampler(sampler)
