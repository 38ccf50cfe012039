"""The host-framework role: an SSL objective that the spatial-affinity add-on can wrap."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from crossscale_kit.ema.ema import ema_update, make_ema
from crossscale_kit.encoders.vit import ViTEncoder
from crossscale_kit.frameworks.context import PlannedMasks, StepContext
from crossscale_kit.samplers.base import PatchMasks


@dataclass
class HostOutput:
    """What a host framework returns for one batch.

    Attributes:
        loss: scalar tensor to minimise.
        logs: floats (or 0-d tensors) to log, e.g. ``{"loss/host": ...}``.
        student_idx: ``(B, K)`` long, the MR patch indices the student encoded (row-major over the
            student's patch grid), or None when the host has no patch subset.
        student_tokens: ``(B, K, D)`` student features at ``student_idx`` as the add-on should compare
            them (encoder output, or projection-head output for hosts with a head).
        grid: ``(gh, gw)`` patch grid of the student's input.
        monitor: detached features to watch for collapse, ``name -> (B, K, D)``: ``"student"`` (what the
            student encoder produces) and ``"target"`` (what the host regresses onto in feature space, where
            it has one); add-ons add theirs (``"teacher"``). A value may be a zero-argument callable (computed
            only when read). Read at log steps only (:mod:`crossscale_kit.eval.collapse`).
    """

    loss: torch.Tensor
    logs: dict = field(default_factory=dict)
    student_idx: torch.Tensor | None = None
    student_tokens: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    monitor: dict = field(default_factory=dict)


class Framework(nn.Module, abc.ABC):
    """Role of every trainable objective (hosts and add-ons).

    The base owns what every host shares, so a host writes only its constructor and ``forward``:

    * the student: ``_init_host(encoder, view, ema_momentum, head=None)`` checks and stores the
      ``ViTEncoder`` (exported at the end of training), the optional projection head and the view;
    * EMA copies: ``self.add_ema(online, "name")`` registers a frozen copy of ``online`` as
      ``self.name``; :meth:`ema_pairs` lists every pair (those of wrapped frameworks included),
      :meth:`ema_update` updates them, ``train()`` keeps the copies in eval mode, and
      :meth:`ema_feature_modules` finds the copies of the student feature path by itself;
    * the momentum: ``self.ema_momentum`` is a schedule ``f(step, total_steps)`` (a pure function of the
      step); :meth:`momentum` evaluates it. A host without EMA copies still has one for its add-ons.

    The train loop calls, each step: ``out = fw(batch, ctx)`` (``ctx`` a :class:`StepContext`);
    ``out.loss.backward()``; optimizer step; ``fw.ema_update(fw.momentum(step, total_steps))``.
    """

    #: which image of the batch the student sees: "mr" or "hr"
    view: str = "mr"

    @property
    def views(self) -> tuple[str, ...]:
        """The images of the batch :meth:`forward` reads (the loader crops only these): a host reads its
        ``view``; an add-on that also reads the other sensor overrides this."""
        return (self.view,)

    def __init__(self) -> None:
        super().__init__()
        self._ema_links: list[tuple[nn.Module, str]] = []  # (online module, attribute name of its EMA copy)
        self.ema_momentum = None

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor], ctx: StepContext | None = None) -> HostOutput:
        """Compute the loss.

        Args:
            batch: ``{"mr": (B, C, H, W), "hr": (B, C, s*H, s*W)}`` float32, normalised per sensor.
                A host reads ``batch[self.view]``.
            ctx: the step context (step, the generator shared by all ranks, this rank's rows of the
                global batch); None means a one-process step with an unseeded generator.
        """

    # -- construction helpers ----------------------------------------------------------------------
    def _init_host(self, encoder: nn.Module, view: str, ema_momentum, head: nn.Module | None = None) -> None:
        """Check and store what every host has: a ``ViTEncoder`` student, its view, an EMA momentum
        schedule ``f(step, total)`` and, for hosts with one, the projection head of the student features
        (``self.head``, may also be set afterwards)."""
        if view not in ("mr", "hr"):
            raise ValueError(f"{type(self).__name__}.view must be 'mr' or 'hr', got {view!r}.")
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(f"{type(self).__name__}.encoder must be a ViTEncoder, got {type(encoder).__name__}.")
        if not callable(ema_momentum):
            raise TypeError(
                f"{type(self).__name__}.ema_momentum must be a schedule f(step, total_steps) such as "
                f"crossscale_kit.ema.Cosine(0.996, 1.0), got {ema_momentum!r}."
            )
        self.encoder = encoder
        self.head = head
        self.view = view
        self.ema_momentum = ema_momentum

    def add_ema(self, online: nn.Module, name: str) -> nn.Module:
        """Register a frozen copy of ``online`` as ``self.<name>``, EMA-updated by :meth:`ema_update`.

        Returns:
            the copy (already registered; kept in eval mode by ``train()``).
        """
        if hasattr(self, name):
            raise ValueError(f"{type(self).__name__} already has an attribute {name!r}; give the EMA copy another name.")
        ema = make_ema(online)
        setattr(self, name, ema)
        self._ema_links.append((online, name))
        return ema

    # -- what the loop and the add-ons use ---------------------------------------------------------
    @property
    def student_encoder(self) -> nn.Module:
        """The encoder that is exported at the end of training (a :class:`ViTEncoder`)."""
        return self.encoder

    def feature_modules(self) -> nn.ModuleDict:
        """The online modules whose composition gives :meth:`student_features` (copied by add-ons)."""
        mods = {"encoder": self.student_encoder}
        if getattr(self, "head", None) is not None:
            mods["head"] = self.head
        return nn.ModuleDict(mods)

    def student_features(self, image: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Student features ``(B, K, D)`` of the patches ``idx`` (B, K) of ``image``, as in ``HostOutput``.

        The encoder output, through the projection head for hosts with one. Used by add-ons that sample
        their own patches.
        """
        return self.features_from_modules(self.feature_modules(), image, idx)

    def ema_feature_modules(self) -> nn.ModuleDict | None:
        """The EMA copies of :meth:`feature_modules` (same keys), if the host keeps them in lock-step.

        A host whose target encoder (and head) is the EMA of exactly the student feature path has them
        here; the spatial-affinity add-on then uses them as its HR teacher instead of keeping a second,
        numerically identical copy. None (a host without such copies, e.g. MAE) makes the add-on keep its own.
        """
        copies = {id(online): name for online, name in self._ema_links}
        mods = self.feature_modules()
        if any(id(m) not in copies for m in mods.values()):
            return None
        return nn.ModuleDict({key: getattr(self, copies[id(m)]) for key, m in mods.items()})

    @staticmethod
    def features_from_modules(modules: nn.ModuleDict, image: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """Apply a copy of :meth:`feature_modules` the way :meth:`student_features` applies the originals."""
        out = modules["encoder"](image, idx)
        if "head" in modules:
            out = modules["head"](out)
        return out

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(online, ema)`` module pairs updated after every optimizer step, wrapped frameworks' first."""
        pairs = []
        for child in self.children():
            if isinstance(child, Framework):
                pairs += child.ema_pairs()
        return pairs + [(online, getattr(self, name)) for online, name in self._ema_links]

    def momentum(self, step: int, total_steps: int) -> float:
        """EMA momentum at ``step`` of ``total_steps`` (a pure function of the step)."""
        if self.ema_momentum is None:
            raise ValueError(f"{type(self).__name__} has no ema_momentum schedule; set one (e.g. crossscale_kit.ema.Cosine(0.996, 1.0)).")
        return float(self.ema_momentum(step, total_steps))

    def ema_update(self, momentum: float) -> None:
        """Update every EMA copy towards its online module (see :mod:`crossscale_kit.ema`)."""
        ema_update(self.ema_pairs(), momentum)

    def train(self, mode: bool = True):
        """Set the training mode of the online modules; EMA copies always stay in eval mode."""
        super().train(mode)
        for _, name in self._ema_links:
            getattr(self, name).eval()
        return self

    def mask_samplers(self) -> list:
        """The samplers :meth:`forward` draws from, in draw order (a host: its ``sampler``)."""
        sampler = getattr(self, "sampler", None)
        return [sampler] if sampler is not None else []

    @staticmethod
    def draw_planned(samplers: list, local_batch: int, grid: tuple[int, int], ctx: StepContext) -> PlannedMasks | None:
        """Draw now what :meth:`forward` would draw for ``ctx`` from ``samplers`` (its :meth:`mask_samplers`):
        the same generator, the same order. A loader worker calls this for a coming micro-batch
        (``crossscale_kit.train.masks.MaskPlanner``, which holds the samplers, not the model); the result goes into the
        micro-batch's ``StepContext.planned`` and the forward takes its masks from there. None without samplers.
        """
        if not samplers:
            return None
        if ctx.planned is not None:
            raise ValueError("draw_planned needs a context without planned masks (it draws them).")
        masks = tuple(Framework.sample_patches(s, local_batch, grid, ctx) for s in samplers)
        return PlannedMasks(masks, tuple(type(s).__name__ for s in samplers), grid)

    @staticmethod
    def sample_patches(sampler, local_batch: int, grid: tuple[int, int], ctx: StepContext | None):
        """Draw patch index sets for this process's ``local_batch`` images, consistent with the global batch.

        The sampler draws for the whole global batch from ``ctx.generator`` (seeded identically on every
        rank) and each rank keeps its ``ctx.rows``, so N ranks draw exactly the masks one process would.

        Returns:
            the sampler's :class:`~crossscale_kit.samplers.base.PatchMasks` cut to the local batch ``(B, ...)``.
        """
        ctx = ctx if ctx is not None else StepContext()
        if ctx.planned is not None:  # drawn ahead of time from the same generator (see draw_planned)
            return ctx.planned.take(sampler, local_batch, grid)
        rows, total = ctx.local_rows(local_batch)
        masks = sampler.sample(total, grid, ctx.generator)
        if not isinstance(masks, PatchMasks):
            raise TypeError(
                f"{type(sampler).__name__}.sample returned {type(masks).__name__}; a PatchSampler returns a PatchMasks "
                "(SplitMasks, MultiBlockMasks, BlockMasks or a subclass)."
            )
        return masks.rows(rows)
