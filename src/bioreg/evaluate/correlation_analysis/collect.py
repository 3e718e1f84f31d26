"""Gathering the activations (§3.2.1): the fixed images and their partners, the mixed batches forwarded
to the analysed layer, and each image's block z-scored into ``Zᵀ``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bioreg.evaluate.correlation_analysis.common import (
    AnalysisError,
    check_sizes,
    insertion_points,
    mix_lambdas,
    network,
)


class _Stop(Exception):
    """Raised by the tap's hook: the forward pass ends at the analysed layer."""


@contextmanager
def layer_tap(model: nn.Module, layer: str) -> Iterator[Callable[[Tensor], Tensor]]:
    """``forward(x)`` → the activation at the insertion point ``layer`` of ``model``. A hook on the
    point's tap raises, so the forward pass stops there and deeper layers cost nothing; the hook is
    removed on leaving the ``with`` block."""
    net = network(model)
    tap = net.get_submodule(insertion_points(net)[layer].tap)
    got: dict[str, Tensor] = {}

    def hook(_m, _i, out):
        got["a"] = out
        raise _Stop

    def forward(x: Tensor) -> Tensor:
        try:
            model(x)
        except _Stop:
            pass
        return got.pop("a")

    h = tap.register_forward_hook(hook)
    try:
        yield forward
    finally:
        h.remove()


@dataclass
class Blocks:
    """The stacked z-scored blocks of one layer.

    ``zt`` = ``Zᵀ``, ``N × S·B``, rows **position-major**: row ``p·C + c`` is the unit of map ``c`` at
    position ``p`` (= row-major ``(x, y)`` of eq 3.3), so that a block of positions is a contiguous
    row block holding every map; columns ``s·B … s·B + B − 1`` are image ``s``'s observations, each
    block z-scored per unit and divided by √B. ``valid`` (``S × N``, same unit order): the units
    that vary in that image.
    """

    zt: Tensor
    valid: Tensor
    shape: tuple[int, int, int]
    samples: int
    batch: int

    @staticmethod
    def unit_major_to_position_major(x: Tensor, shape: Sequence[int]) -> Tensor:
        """Columns of ``x`` (..., N) from eq 3.3's order ``(c, p)`` to ``(p, c)``."""
        c, h, w = shape
        return x.reshape(*x.shape[:-1], c, h * w).transpose(-1, -2).reshape(*x.shape[:-1], c * h * w)

    @classmethod
    def from_blocks(cls, z: Sequence[Tensor], valid: Sequence[Tensor], shape: Sequence[int]) -> Blocks:
        """From per-image ``(B, N)`` z-blocks and ``(N,)`` masks in eq 3.3's unit order (tests)."""
        zt = torch.cat([cls.unit_major_to_position_major(zb, shape) for zb in z]).T.contiguous()
        vv = torch.stack([cls.unit_major_to_position_major(v, shape) for v in valid])
        return cls(zt=zt, valid=vv, shape=tuple(int(v) for v in shape), samples=len(z),
                   batch=int(z[0].shape[0]))


def draw_inputs(n_test: int, samples: int, batch: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices of the ``S`` fixed images (without replacement) and of their ``S × B`` partners."""
    check_sizes(samples, batch)
    if samples > n_test or batch > n_test:
        raise AnalysisError(f"S={samples} and B={batch} must not exceed the {n_test} test images")
    g = torch.Generator().manual_seed(int(seed))
    fixed = torch.randperm(n_test, generator=g)[:samples]
    partners = torch.stack([torch.randperm(n_test, generator=g)[:batch] for _ in range(samples)])
    return fixed, partners


def zscore_block(act: Tensor, rtol: float = 1e-5, atol: float = 1e-8) -> tuple[Tensor, Tensor]:
    """``(B, N)`` activations → (z / √B, valid): Pearson ``Σ_i = zᵀz``; non-varying units get z = 0."""
    a = act.double()
    mean = a.mean(0)
    std = a.std(0, correction=0)
    valid = std > rtol * mean.abs() + atol
    z = (a - mean) / torch.where(valid, std, torch.ones_like(std)) / math.sqrt(a.shape[0])
    z[:, ~valid] = 0.0
    return z, valid


def _image_block(a: Tensor, layer: str, batch: int) -> tuple[Tensor, Tensor, tuple[int, int, int]]:
    """One image's ``(B, C, H, W)`` activations → its z-block and valid mask, position-major, and
    ``(C, H, W)``."""
    if a.dim() != 4:
        raise AnalysisError(f"layer {layer!r} gives {a.dim()}-D activations; the analysis needs conv "
                            f"feature maps (C, H, W)")
    shape = tuple(int(v) for v in a.shape[1:])
    zb, vb = zscore_block(a.reshape(batch, -1))
    return (Blocks.unit_major_to_position_major(zb, shape), Blocks.unit_major_to_position_major(vb, shape),
            shape)  # type: ignore[return-value]


@torch.no_grad()
def collect_blocks(model: nn.Module, layer: str, images: Tensor, fixed: Tensor, partners: Tensor,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                   progress: Any = None) -> Blocks:
    """Forward the mixed batches of every fixed image to ``layer`` and stack their z-scored blocks.

    ``images`` (n, C, H, W) in the model's input space; ``fixed`` (S,), ``partners`` (S, B) index it.
    The forward pass stops at the layer (:func:`layer_tap`), so deeper layers cost nothing.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    samples, batch = partners.shape
    lam = mix_lambdas(batch, images.dtype).to(device).view(-1, 1, 1, 1)
    was = model.training
    zt = valid = None
    with layer_tap(model, layer) as forward:
        model.eval()
        try:
            for s in range(samples):
                x = images[fixed[s]].to(device).unsqueeze(0)
                xp = images[partners[s]].to(device)
                zb, vb, shape = _image_block(forward(lam * x + (1.0 - lam) * xp), layer, batch)  # eq 3.1
                if zt is None:
                    n = zb.shape[1]
                    zt = torch.empty(n, samples * batch, dtype=dtype, device=device)
                    valid = torch.empty(samples, n, dtype=torch.bool, device=device)
                zt[:, s * batch:(s + 1) * batch] = zb.T.to(dtype)
                valid[s] = vb
                if progress is not None:
                    progress()
        finally:
            model.train(was)
    return Blocks(zt=zt, valid=valid, shape=shape, samples=samples, batch=batch)  # type: ignore[arg-type]
