"""The patch-sampler role and its typed results."""
from __future__ import annotations

import abc
import copy
import dataclasses
from dataclasses import dataclass, field

import torch


def check_indices(name: str, idx: torch.Tensor, num_patches: int, dims: int = 2) -> None:
    """Check a freshly drawn index set: ``dims``-D long, every entry in ``[0, num_patches)``.

    Samplers draw on the CPU, so this is where indices are checked, once; the encoders and the
    correspondence never read indices back from the device.
    """
    if not torch.is_tensor(idx) or idx.dtype != torch.long or idx.dim() != dims:
        got = f"{idx.dtype} {tuple(idx.shape)}" if torch.is_tensor(idx) else type(idx).__name__
        raise ValueError(f"{name} must be a {dims}-D LongTensor of patch indices, got {got}.")
    if idx.numel() and idx.device.type == "cpu" and (int(idx.min()) < 0 or int(idx.max()) >= num_patches):
        raise IndexError(
            f"{name} holds patch indices outside [0, {num_patches}) ({int(idx.min())}..{int(idx.max())}); "
            "the sampler must draw row-major indices of the patch grid it was given."
        )


@dataclass(frozen=True)
class PatchMasks:
    """Base of every sampler result: index tensors whose first dimension is the batch.

    Attributes every kind has:
        visible: ``(B, K)`` long, the patches the student encodes (row-major over the grid).
        num_patches: ``gh * gw`` of the grid the indices were drawn for.

    Every tensor field is checked when the result is made (shapes, dtype, range, equal batch).
    """

    num_patches: int = field(kw_only=True)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The index tensors of this result by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "num_patches"}

    def _check_batch(self) -> None:
        sizes = {name: t.shape[0] for name, t in self.tensors().items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"{type(self).__name__} fields disagree on the batch size: {sizes}.")

    @property
    def batch_size(self) -> int:
        return next(iter(self.tensors().values())).shape[0]

    def rows(self, rows: slice) -> "PatchMasks":
        """The same result for the images ``rows`` of the batch (this rank's part of the global batch)."""
        return self._derive({name: t[rows] for name, t in self.tensors().items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PatchMasks":
        """The same result with every tensor on ``device``."""
        return self._derive({n: t.to(device, non_blocking=non_blocking) for n, t in self.tensors().items()})

    def pin_memory(self) -> "PatchMasks":
        """The same result in pinned host memory (a DataLoader's pin thread calls this)."""
        return self._derive({n: t.pin_memory() for n, t in self.tensors().items()})

    def _derive(self, tensors: dict[str, torch.Tensor]) -> "PatchMasks":
        # rows of checked indices, or the same indices elsewhere, need no second check (and no host read)
        out = copy.copy(self)
        for name, t in tensors.items():
            object.__setattr__(out, name, t)
        return out


@dataclass(frozen=True)
class SplitMasks(PatchMasks):
    """A visible / target split (LatentMIM, MAE).

    Attributes:
        visible: ``(B, K)`` long, the patches the student encodes, each row sorted.
        targets: ``(B, M)`` long, the patches to predict, disjoint from ``visible``, each row sorted.
    """

    visible: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        check_indices("SplitMasks.visible", self.visible, self.num_patches)
        check_indices("SplitMasks.targets", self.targets, self.num_patches)
        self._check_batch()


@dataclass(frozen=True)
class MultiBlockMasks(PatchMasks):
    """I-JEPA's context and target blocks.

    Attributes:
        context: ``(B, Kc)`` long, the context patches (what the student encodes), each row sorted.
        targets: ``(B, M, Kt)`` long, ``M`` target blocks per image, each row sorted.
    """

    context: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        check_indices("MultiBlockMasks.context", self.context, self.num_patches)
        check_indices("MultiBlockMasks.targets", self.targets, self.num_patches, dims=3)
        self._check_batch()

    @property
    def visible(self) -> torch.Tensor:
        """The context: what the student encodes."""
        return self.context


@dataclass(frozen=True)
class BlockMasks(PatchMasks):
    """One contiguous block of patches per image (the spatial-affinity sampling ablation).

    Attributes:
        visible: ``(B, K)`` long, the block's patches, each row sorted.
    """

    visible: torch.Tensor

    def __post_init__(self) -> None:
        check_indices("BlockMasks.visible", self.visible, self.num_patches)


class PatchSampler(abc.ABC):
    """Chooses which patches of a ``(gh, gw)`` grid an encoder sees.

    ``sample(batch_size, grid, generator)`` returns a :class:`PatchMasks` (one dataclass per kind:
    :class:`SplitMasks`, :class:`MultiBlockMasks`, :class:`BlockMasks`) of ``LongTensor`` index sets,
    row-major over the grid (``idx = row * gw + col``), on the CPU, checked when made. Every kind has
    ``visible`` ``(B, K)``: the patches the student encodes.
    """

    @abc.abstractmethod
    def sample(self, batch_size: int, grid: tuple[int, int], generator: torch.Generator | None = None) -> PatchMasks:
        ...
