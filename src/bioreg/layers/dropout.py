"""Dropout-family regularizers of Dutta (2019), Ch. 4 ("Dropping correlated units").

Every module here is the identity in ``eval()`` mode and, except :class:`Dropout`,
works on convolutional activations ``(N, C, H, W)``:

* :class:`Dropout` — element-wise inverted dropout (Srivastava et al. 2014).
* :class:`SpatialDropout` — whole feature maps (Tompson et al. 2015; §4.1.1).
* :class:`SpatialDropoutMod` — per example one random map and the maps whose
  kernels are most similar to it (eq 2.16) are dropped (§4.2, first modification).
* :class:`DropBlock` — contiguous ``block_size x block_size`` regions (Ghiasi et al.
  2018; Algorithm 1, eq 4.1), one mask per example shared by all maps, with the
  linear ``drop_prob`` schedule of §4.1.1.
* :class:`DropBlockRandom` — the DropBlock mask applied to a random half of the
  maps of each example, ``drop_prob`` doubled (§4.2, control).
* :class:`CorrDrop` — the DropBlock mask applied to a random map and the half of the
  maps most similar to it by kernel similarity, ``drop_prob`` doubled (§4.2).

Each stochastic op has a pure functional core ``f(x, …, training, generator=None)`` and the
Module is a thin wrapper that supplies its state (the scheduled probability, the live kernels of
the producing convolution), as torchvision's ``drop_block2d`` / ``DropBlock2d``:
:func:`spatial_dropout_mod`, :func:`drop_block`, :func:`drop_block_random`, :func:`corr_drop`
(:class:`Dropout` and :class:`SpatialDropout` wrap ``F.dropout`` / ``F.dropout2d``). A core is the
identity when ``training=False``; with a ``generator`` it draws all its randomness from it, else
from torch's global RNG (what the modules do).

All randomness is drawn for the whole batch at once (no Python loop over
examples); the kernel-similarity ranking (argsort of eq 2.16's similarities,
computed from the *live* weights of the producing convolution, for the maps
chosen in the batch) is done once per forward pass, with shapes fixed by the batch and
the number of maps (no ``unique``, no host read: graph-safe). Design notes:
``docs/decisions/dropout.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bioreg.layers.base import (
    InsertionContext,
    RegularizerConfigError,
    TrainingState,
    check_probability,
    float32_internals,
)

__all__ = [
    "Dropout",
    "SpatialDropout",
    "SpatialDropoutMod",
    "DropBlock",
    "DropBlockRandom",
    "CorrDrop",
    "spatial_dropout_mod",
    "drop_block",
    "drop_block_random",
    "corr_drop",
    "most_similar_maps",
    "block_gamma",
    "block_keep_mask",
    "linear_ramp",
    "n_selected",
    "similarity_rows",
]

SCHEDULES = ("linear", "none")


# --------------------------------------------------------------------------- helpers
def n_selected(fraction: float, channels: int) -> int:
    """Number of maps a fraction of ``channels`` stands for: ``floor(fraction * C + 1/2)``.

    Round half up (not Python's banker's rounding), so e.g. 0.5 of 5 maps is 3.
    Used by SpatialDropoutMod (``p``), DropBlockRandom and CorrDrop (``fraction``).
    """
    return int(math.floor(fraction * channels + 0.5))


def block_gamma(drop_prob: float | torch.Tensor, block_size: int, height: int,
                width: int) -> float | torch.Tensor:
    """Seed probability gamma of eq 4.1 (Ghiasi et al. 2018, eq 1), for ``H x W`` maps.

    ``gamma = drop_prob / block_size**2 * H * W / ((H - block_size + 1) * (W - block_size + 1))``.
    For square maps this is eq 4.1 with ``feat_size**2`` in the numerator: the thesis
    prints ``feat_size`` (not squared), which does not make the expected dropped
    fraction equal ``drop_prob``; we follow Ghiasi et al. (docs/decisions/dropout.md).
    For a block that fits (``1 <= block_size <= min(H, W)``) ``gamma <= drop_prob``, because
    ``block_size * (H - block_size + 1) >= H`` (same for W); the modules reject any effective
    probability > 1 at construction (:class:`DropBlockRandom`/:class:`CorrDrop` check
    ``drop_prob / fraction <= 1``); gamma reaches 1 only for ``block_size = 1`` at probability 1
    (every unit dropped), and the clamp guards direct calls. A tensor ``drop_prob`` (graph-safe
    mode) gives a tensor.
    """
    valid = (height - block_size + 1) * (width - block_size + 1)
    gamma = drop_prob * height * width / (block_size**2 * valid)
    return gamma.clamp_max(1.0) if isinstance(gamma, torch.Tensor) else min(1.0, gamma)


def block_keep_mask(
    n: int, height: int, width: int, block_size: int, gamma: float | torch.Tensor,
    *, device: torch.device | None = None, dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep mask ``(n, 1, H, W)`` of DropBlock (Algorithm 1): 1 = kept, 0 = dropped.

    Seeds ``~ Bernoulli(gamma)`` are drawn on the valid region
    ``(H - block_size + 1) x (W - block_size + 1)`` (Figure 4.1), so every block lies
    fully inside the map; each seed at ``(i, j)`` zeroes rows ``i … i+block_size-1`` and
    columns ``j … j+block_size-1`` (for odd sizes: the block centred on the seed's
    position in the map). The expansion is a stride-1 max-pool over the seed grid
    padded by ``block_size - 1``.

    Why not ``torchvision.ops.drop_block2d``: it draws one mask per (example,
    channel) and multiplies it in, while Ch. 4 needs one mask per example that is
    shared by all maps (DropBlock) or by a chosen subset of maps
    (DropBlockRandom/CorrDrop), and a normalisation over those maps only; it
    also rejects even block sizes and fails for gamma > 1. The sampling is the
    same (``bernoulli_`` on the seed grid), so with the same generator state this
    mask equals torchvision's for one channel (tested). A tensor ``gamma`` (graph-safe mode: the
    scheduled rate lives on the device) draws the seeds as ``U(0, 1) < gamma``: the same
    distribution, another random stream than ``bernoulli_`` with a number.
    """
    shape = (n, 1, height - block_size + 1, width - block_size + 1)
    if isinstance(gamma, torch.Tensor):
        seeds = (torch.rand(shape, device=device, dtype=dtype, generator=generator) < gamma).to(dtype)
    else:
        seeds = torch.empty(shape, device=device, dtype=dtype)
        seeds.bernoulli_(gamma, generator=generator)
    pad = block_size - 1
    dropped = F.max_pool2d(F.pad(seeds, [pad, pad, pad, pad]), kernel_size=block_size, stride=1)
    return 1.0 - dropped


def linear_ramp(state: TrainingState) -> float:
    """Progress of the per-epoch linear schedule of §4.1.1: ``epoch / (max_epochs - 1)`` in [0, 1].

    ``epoch`` is 0-based, so the first epoch uses 0 and the last real epoch (``max_epochs - 1``)
    uses 1, i.e. the full target ("from 0 to 0.5"). With ``max_epochs <= 1`` the only epoch is
    the last one and gets the target. Epochs past the end (e.g. a resumed run with a smaller
    ``max_epochs``) stay at 1. ``TrainingState.progress`` (``epoch / max_epochs``) is not used:
    it never reaches 1 in a real run (docs/decisions/dropout.md).
    """
    if state.max_epochs <= 1:
        return 1.0
    return min(max(state.epoch / (state.max_epochs - 1), 0.0), 1.0)


def _check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
        raise RegularizerConfigError(f"block_size must be an integer >= 1, got {block_size!r}")
    return int(block_size)


def _check_fraction(fraction: float, name: str = "fraction") -> float:
    if not 0.0 < fraction <= 1.0 or fraction != fraction:
        raise RegularizerConfigError(f"{name} must be in (0, 1], got {fraction!r}")
    return float(fraction)


def _check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise RegularizerConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    return schedule


def _check_4d(x: torch.Tensor, who: str) -> None:
    if x.dim() != 4:
        raise RegularizerConfigError(
            f"{who} works on convolutional activations (N, C, H, W); got a tensor of shape {tuple(x.shape)}"
        )


def _check_ctx_4d(ctx: InsertionContext, who: str) -> None:
    if len(ctx.shape) != 3:
        raise RegularizerConfigError(
            f"{who} works on convolutional activations (C, H, W); point {ctx.point!r} has shape {ctx.shape}"
        )


class _NeedsSimilarity:
    """Mixin: reads the live kernels of the producing convolution (eq 2.16)."""

    ctx: InsertionContext | None

    def _bind_similarity(self, ctx: InsertionContext, who: str) -> None:
        w = ctx.producer_weight(who)  # raises ContextError naming the point
        if len(ctx.shape) >= 1 and w.shape[0] != ctx.shape[0]:
            raise RegularizerConfigError(
                f"{who} at point {ctx.point!r}: the producing convolution has {w.shape[0]} kernels "
                f"but the point has {ctx.shape[0]} feature maps"
            )

    def _kernels(self, who: str, x: torch.Tensor) -> torch.Tensor:
        """The live kernels of the producing convolution, detached, checked against ``x``'s maps."""
        _check_4d(x, who)
        if self.ctx is None:
            raise RegularizerConfigError(
                f"{who} needs the kernels of the convolution before it: place it with "
                "bioreg.lit.module.place_regularizers (or call bind(ctx)) before training"
            )
        w = self.ctx.producer_weight(who).detach()
        if w.shape[0] != x.shape[1]:
            raise RegularizerConfigError(
                f"{who} at point {self.ctx.point!r}: {w.shape[0]} kernels but {x.shape[1]} feature maps"
            )
        return w


@torch.no_grad()
def most_similar_maps(weight: torch.Tensor, chosen: torch.Tensor, k: int, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``(N, k)``: for each example's chosen map, the ``k`` maps most similar to it (itself first).

    ``weight`` is the ``(C, …)`` kernel tensor of the producing convolution, ``chosen`` the ``(N,)``
    chosen map per example. The ranking (eq 2.16) is computed from rows of the ``C x C`` similarity
    matrix (:func:`similarity_rows`): one per example when ``N < C``, else the whole matrix, gathered
    per example. Every shape is fixed by ``N`` and ``C`` alone (no ``unique`` of the chosen maps, no
    host read), so the step can be captured as a graph. Exact ties (identical or zero kernels) are
    broken by a random order of the maps drawn once per call (from ``generator``), not by index.
    """
    channels, n = weight.shape[0], chosen.shape[0]
    chosen_w = chosen.to(weight.device)
    if n < channels:
        sim = similarity_rows(weight, chosen_w)  # (N, C)
    else:
        sim = similarity_rows(weight, torch.arange(channels, device=weight.device))[chosen_w]
    sim[torch.arange(n, device=sim.device), chosen_w] = 2.0  # each map first in its ranking
    perm = torch.randperm(channels, device=sim.device, generator=generator)
    order = torch.argsort(sim[:, perm], dim=1, descending=True, stable=True)[:, :k]
    return perm[order].to(chosen.device)


def similarity_rows(weight: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of the kernel-similarity matrix of eq 2.16 (``kernel_similarity(weight)[rows]``,
    except that the diagonal entries are the cosine of a kernel with itself: 1, or 0 for a zero kernel).
    """
    flat = weight.reshape(weight.shape[0], -1).float()
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit[rows] @ unit.T).clamp_(-1.0, 1.0)


def _select_mask(idx: torch.Tensor, n: int, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """``(n, C)`` 0/1 matrix with ones at ``idx`` (``(n, k)`` map indices)."""
    sel = torch.zeros((n, channels), device=idx.device, dtype=dtype)
    return sel.scatter_(1, idx, 1.0)


def _check_block_fits(who: str, block_size: int, h: int, w: int, what: str = "the input has maps of") -> None:
    if block_size > min(h, w):
        raise RegularizerConfigError(
            f"{who}: block_size must be in [1, {min(h, w)}] ({what} size {h}x{w}), got {block_size}"
        )


def _check_subset_prob(who: str, drop_prob: float, fraction: float) -> None:
    """``drop_prob / fraction`` (the drop probability on the selected maps) must stay <= 1."""
    if drop_prob > fraction:
        raise RegularizerConfigError(
            f"{who}: drop_prob must be in [0, {fraction:g}] for fraction={fraction:g}: it is "
            f"multiplied by 1/fraction on the selected maps and must stay a probability <= 1; got "
            f"drop_prob={drop_prob!r} (drop_prob/fraction = {drop_prob / fraction:g})"
        )


def _block_scale(mask: torch.Tensor) -> torch.Tensor:
    # count(M) / count_ones(M) (Algorithm 1); an all-dropped mask gives 0 output, not NaN
    return mask.numel() / mask.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- functional cores
def spatial_dropout_mod(x: torch.Tensor, weight: torch.Tensor, p: float, training: bool = True, *,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """SpatialDropout on kernel-similar maps (Dutta 2019 §4.2): the core of :class:`SpatialDropoutMod`.

    ``x``: ``(N, C, H, W)``; ``weight``: the ``(C, …)`` kernels of the convolution producing ``x``.
    Per example a map ``r`` is drawn uniformly and the ``floor(p * C + 1/2)`` maps most similar to it
    (eq 2.16, ``r`` first; :func:`most_similar_maps`) are zeroed; the output is scaled by
    ``1 / (1 - p)``. Identity when ``training`` is false or ``p == 0``.
    """
    if not training or p == 0.0:
        return x
    p = check_probability(p, "p")
    _check_4d(x, "SpatialDropoutMod")
    n, c = x.shape[:2]
    chosen = torch.randint(c, (n,), device=x.device, generator=generator)
    idx = most_similar_maps(_check_kernels("SpatialDropoutMod", weight, c), chosen, n_selected(p, c),
                            generator=generator)
    keep = 1.0 - _select_mask(idx, n, c, x.dtype)
    return x * (keep / (1.0 - p))[:, :, None, None]


def drop_block(x: torch.Tensor, drop_prob: float | torch.Tensor, block_size: int, training: bool = True, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """DropBlock with one mask per example shared by all maps: the core of :class:`DropBlock`.

    ``drop_prob`` is the probability in use (the module passes its scheduled value). The mask is
    :func:`block_keep_mask` with seed rate :func:`block_gamma` (eq 4.1); the output is
    ``x * M * count(M) / count_ones(M)`` over the batch's mask (Algorithm 1). Identity when
    ``training`` is false or ``drop_prob == 0`` (the shape and block size are checked in training).
    """
    return _subset_drop_block(x, drop_prob, block_size, 1.0, None, "DropBlock", training, generator)


def drop_block_random(x: torch.Tensor, drop_prob: float | torch.Tensor, block_size: int,
                      fraction: float = 0.5,
                      training: bool = True, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The DropBlock mask on a random ``fraction`` of the maps of each example (§4.2, control): the
    core of :class:`DropBlockRandom`. ``drop_prob`` (in use, before the ÷ ``fraction``) is divided by
    ``fraction`` on the selected maps; ``floor(fraction * C + 1/2)`` maps are drawn per example without
    replacement. Identity when ``training`` is false or ``drop_prob == 0``."""

    def select(n: int, c: int, k: int) -> torch.Tensor:
        return torch.rand((n, c), device=x.device, generator=generator).argsort(dim=1)[:, :k]

    return _subset_drop_block(x, drop_prob, block_size, fraction, select, "DropBlockRandom", training,
                              generator)


def corr_drop(x: torch.Tensor, weight: torch.Tensor | None, drop_prob: float | torch.Tensor, block_size: int,
              fraction: float = 0.5, training: bool = True, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """CorrDrop (Dutta 2019 §4.2): the core of :class:`CorrDrop`.

    The DropBlock mask on a random map ``r`` and the maps most similar to it by kernel similarity
    (eq 2.16 from ``weight``, the producing convolution's kernels; ``r`` first),
    ``floor(fraction * C + 1/2)`` maps per example, ``drop_prob`` (in use) divided by ``fraction`` on
    them. Identity when ``training`` is false or ``drop_prob == 0`` (then ``weight`` may be ``None``).
    """

    def select(n: int, c: int, k: int) -> torch.Tensor:
        chosen = torch.randint(c, (n,), device=x.device, generator=generator)
        return most_similar_maps(_check_kernels("CorrDrop", weight, c), chosen, k, generator=generator)

    return _subset_drop_block(x, drop_prob, block_size, fraction, select, "CorrDrop", training, generator)


def _check_kernels(who: str, weight: torch.Tensor | None, channels: int) -> torch.Tensor:
    if weight is None or weight.dim() < 2 or weight.shape[0] != channels:
        got = "none" if weight is None else f"shape {tuple(weight.shape)}"
        raise RegularizerConfigError(f"{who} needs the {channels} kernels (C, ...) of the convolution "
                                     f"producing its {channels} maps; got {got}")
    return weight


def _subset_drop_block(x: torch.Tensor, drop_prob: float | torch.Tensor, block_size: int, fraction: float,
                       select, who: str, training: bool, generator: torch.Generator | None) -> torch.Tensor:
    """DropBlock (Algorithm 1) on the maps ``select(n, C, k)`` picks per example (all maps if ``None``)."""
    if not training:
        return x
    _check_4d(x, who)
    block_size = _check_block_size(block_size)
    _check_block_fits(who, block_size, x.shape[2], x.shape[3])
    if isinstance(drop_prob, torch.Tensor):  # graph-safe mode: no branch on the value (checked by the module)
        _check_fraction(fraction)
    elif drop_prob == 0.0:
        return x
    else:
        check_probability(drop_prob, "drop_prob")
        if select is not None:
            _check_subset_prob(who, drop_prob, _check_fraction(fraction))
    n, c, h, w = x.shape
    # DropBlock: fraction 1, drop_prob itself
    gamma = block_gamma((1.0 / fraction) * drop_prob, block_size, h, w)
    mask = block_keep_mask(n, h, w, block_size, gamma, device=x.device, dtype=x.dtype, generator=generator)
    if select is None:
        return x * (mask * _block_scale(mask))
    sel = _select_mask(select(n, c, n_selected(fraction, c)), n, c, x.dtype)[:, :, None, None]  # (N, C, 1, 1)
    # 1 on the other maps, M * count(M)/count_ones(M) on the selected ones: (N, C, H, W)
    factor = torch.addcmul(torch.ones((), device=x.device, dtype=x.dtype), sel, mask * _block_scale(mask)
                           - 1.0)
    return x * factor


# --------------------------------------------------------------------------- Dropout family
class Dropout(nn.Module):
    """Element-wise (inverted) dropout (Srivastava et al. 2014; Dutta 2019 §4.1).

    In training every unit is zeroed independently with probability ``p`` and the
    kept units are scaled by ``1 / (1 - p)``, so the expected activation is
    unchanged; in evaluation the module is the identity. ``p`` must be in [0, 1).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_probability(p, "p")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpatialDropout(nn.Module):
    """SpatialDropout (Tompson et al. 2015; Dutta 2019 §4.1.1): drop whole feature maps.

    Each map of each example is zeroed with probability ``p``; kept maps are
    scaled by ``1 / (1 - p)``. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_probability(p, "p")

    def bind(self, ctx: InsertionContext) -> None:
        _check_ctx_4d(ctx, "SpatialDropout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        _check_4d(x, "SpatialDropout")
        return F.dropout2d(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SpatialDropoutMod(_NeedsSimilarity, nn.Module):
    """SpatialDropout on kernel-similar maps (Dutta 2019 §4.2, first modification).

    For every example one feature map ``r`` is chosen uniformly at random and the
    ``k = floor(p * C + 1/2)`` maps most similar to ``r`` by kernel cosine
    similarity (eq 2.16, from the live weights of the producing convolution) are
    zeroed — ``r`` itself is the first of them (it is always ranked first, even
    when another kernel is identical to it). The output is scaled by
    ``1 / (1 - p)`` as in SpatialDropout (the thesis's normalisation). The ranking
    is computed once per forward pass. Identity in eval mode. Functional core:
    :func:`spatial_dropout_mod`.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_probability(p, "p")
        self.ctx: InsertionContext | None = None

    def bind(self, ctx: InsertionContext) -> None:
        _check_ctx_4d(ctx, "SpatialDropoutMod")
        self._bind_similarity(ctx, "SpatialDropoutMod")
        self.ctx = ctx

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return spatial_dropout_mod(x, self._kernels("SpatialDropoutMod", x), self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018; Dutta 2019 §4.1.1, Algorithm 1, eq 4.1).

    In training, a mask ``M`` of shape ``(N, 1, H, W)`` — one per example, **shared
    by all feature maps** (the variant the thesis reports as best, and the
    baseline its §4.2 modifications depart from) — is built by
    :func:`block_keep_mask` with seed probability gamma of eq 4.1
    (:func:`block_gamma`); the output is ``A * M * count(M) / count_ones(M)`` with
    the counts over the whole batch's mask (Algorithm 1).

    ``drop_prob`` is the target; with ``schedule="linear"`` (default) the value in
    use is ``drop_prob * linear_ramp(ctx.state)`` = ``drop_prob * epoch / (E - 1)``
    (0-based ``epoch`` and ``E = max_epochs`` kept current by the LitClassifier), i.e. a
    per-epoch linear ramp from 0 in the first epoch to exactly ``drop_prob`` in the last
    (:func:`linear_ramp`; ``E = 1``: the target). An unbound module (no ``bind``, no
    ``state`` set) sees the start of training (drops nothing) unless ``schedule="none"``
    (fixed ``drop_prob``). ``block_size`` must not exceed the map (checked in
    ``bind`` from ``ctx.shape`` and at forward time). Functional core: :func:`drop_block`.
    """

    #: factor on the scheduled drop_prob for the maps the mask is applied to
    prob_factor: float = 1.0
    who = "DropBlock"

    def __init__(self, drop_prob: float = 0.5, block_size: int = 3, schedule: str = "linear") -> None:
        super().__init__()
        self.drop_prob = check_probability(drop_prob, "drop_prob")
        self.block_size = _check_block_size(block_size)
        self.schedule = _check_schedule(schedule)
        self.state: TrainingState | None = None  # set by bind (the model's shared state)
        self.ctx: InsertionContext | None = None
        # graph-safe mode: the scheduled drop_prob on the device, written by prepare_step (not saved)
        self.register_buffer("p_now", torch.zeros(()), persistent=False)
        self._p_written: float | None = None

    def bind(self, ctx: InsertionContext) -> None:
        _check_ctx_4d(ctx, self.who)
        _check_block_fits(self.who, self.block_size, ctx.shape[1], ctx.shape[2],
                          f"point {ctx.point!r} has maps of")
        self.state = ctx.state
        self.ctx = ctx

    def current_drop_prob(self) -> float:
        """The scheduled drop probability (before the ``prob_factor`` of the subset variants)."""
        if self.schedule == "none":
            return self.drop_prob
        if self.state is None:  # unbound: the start of training
            return 0.0
        return self.drop_prob * linear_ramp(self.state)

    def current_gamma(self, h: int, w: int) -> float:
        return block_gamma(self.prob_factor * self.current_drop_prob(), self.block_size, h, w)

    def prepare_step(self) -> None:
        """Graph-safe mode: write the scheduled probability into ``p_now`` (on the device), so that the
        compiled forward reads a tensor, not a number that changes each epoch."""
        p = self.current_drop_prob()
        if p != self._p_written:
            self.p_now.fill_(p)
            self._p_written = p

    def drop_prob_in_use(self) -> float | torch.Tensor:
        """What the forward passes to the functional core: ``p_now`` in graph-safe mode, else the number."""
        if self.state is not None and self.state.graph_safe:
            return self.p_now
        return self.current_drop_prob()

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block(x, self.drop_prob_in_use(), self.block_size, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, schedule={self.schedule!r}"


class _SubsetDropBlock(DropBlock):
    """DropBlock whose per-example mask is applied only to ``k`` selected maps.

    ``k = floor(fraction * C + 1/2)``; the scheduled ``drop_prob`` is divided by
    ``fraction`` (×2 for the thesis's 50 %), the thesis's device "to keep a similar
    effective drop out probability to DropBlock" (§4.2). That is exact only without
    block overlap (small ``drop_prob``): overlapping blocks saturate faster at the doubled
    rate, so near the end of the ramp the fraction of dropped units over all maps is
    clearly below DropBlock's. At the end of the ramp (block 3, half of 8 maps), DropBlock
    at 0.5 vs this at drop_prob 0.5 (1.0 on the selected maps): expected dropped fraction
    0.412 vs 0.341 on 4×4 maps and 0.397 vs 0.320 on 32×32 (closed form with overlaps;
    docs/decisions/dropout.md). ``drop_prob / fraction`` (the drop probability on the selected
    maps at the end of the ramp) must be <= 1, checked at construction. The thesis's 0.5 doubles to
    exactly 1, which is still a proper DropBlock setting for ``block_size > 1``: the seed rate
    gamma of eq 4.1 stays below 1 (0.126 on 32×32 maps with block 3; overlapping blocks
    drop about 64 % of the selected units). The selected maps are multiplied by
    ``M * count(M) / count_ones(M)`` (Algorithm 1 applied to them); the other maps pass
    unchanged.
    """

    def __init__(self, drop_prob: float = 0.5, block_size: int = 3, schedule: str = "linear",
                 fraction: float = 0.5) -> None:
        super().__init__(drop_prob, block_size, schedule)
        self.fraction = _check_fraction(fraction)
        _check_subset_prob(self.who, self.drop_prob, self.fraction)
        self.prob_factor = 1.0 / self.fraction

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fraction={self.fraction}"


class DropBlockRandom(_SubsetDropBlock):
    """DropBlock mask on a random ``fraction`` (50 %) of the maps of each example (§4.2).

    The control for CorrDrop: per example ``k = floor(fraction * C + 1/2)`` maps are
    drawn uniformly without replacement; ``drop_prob`` is doubled (÷ fraction) in the
    schedule. See :class:`DropBlock` for the mask, schedule and normalisation. Functional core:
    :func:`drop_block_random`.
    """

    who = "DropBlockRandom"

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block_random(x, self.drop_prob_in_use(), self.block_size, self.fraction, self.training)


class CorrDrop(_NeedsSimilarity, _SubsetDropBlock):
    """CorrDrop (Dutta 2019 §4.2): DropBlock mask on a random map and its most similar maps.

    Per example a map ``r`` is chosen uniformly at random; the mask is applied to
    the ``k = floor(fraction * C + 1/2)`` maps most similar to ``r`` by kernel
    similarity (eq 2.16; ``r`` first), ``drop_prob`` doubled (÷ fraction) in the
    schedule. The ranking is computed once per forward pass from the live kernels
    of the producing convolution. Functional core: :func:`corr_drop`.
    """

    who = "CorrDrop"

    def bind(self, ctx: InsertionContext) -> None:
        _check_ctx_4d(ctx, self.who)
        self._bind_similarity(ctx, "CorrDrop")
        super().bind(ctx)

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.drop_prob_in_use()
        used = self.training and (isinstance(p, torch.Tensor) or p > 0.0)
        weight = self._kernels(self.who, x) if used else None  # read only when used
        return corr_drop(x, weight, p, self.block_size, self.fraction, self.training)
