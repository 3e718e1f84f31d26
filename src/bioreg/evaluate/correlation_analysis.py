"""Correlations of a trained CNN's activations under mixup (Dutta 2019, §3.2.1–3.2.2, eqs 3.2–3.6, Table 3.2).

Procedure (§3.2.1). Pick ``S`` fixed test images. For image ``i`` draw a random test mini-batch of
``B`` partner images ``x_j1 … x_jB`` and mix (eq 3.1) ``x̃_b = λ_b x_i + (1 − λ_b) x_jb`` with
``λ_b = b / (B − 1)``, ``b = 0 … B − 1`` (``B`` values evenly spaced over [0, 1], both ends
included). Forward the ``B`` mixed images to layer ``K`` (the thesis's numbering: a *named
insertion point* of the model, ``layer3`` = the ReLU output of VGG-11's conv layer 3) and take the
Pearson correlation of the ``N = C·H·W`` unit activations over the ``B`` observations: ``Σ_i``.
``Σ′ = (1/S) Σ_i Σ_i`` (eq 3.2).

Never ``N × N`` (layer 3: ``N = 32 768``, ``Σ′`` would be 4 GB in float32). With ``z_i`` the
``B × N`` block of activations of image ``i`` z-scored per unit (population std) and divided by
``√B``, ``Σ_i = z_iᵀ z_i``; stacking the blocks into ``Z`` (``S·B × N``), ``Σ′ = ZᵀZ / S``: one
matrix product, computed tile by tile (tiles of whole feature maps) and reduced on the fly into

* the min, max, mean and (population) std of the ``N(N − 1)/2`` off-diagonal entries (Table 3.2);
* for the kernel smoother (§3.2.2), the sum and the count of ``Σ′`` entries per *bin*
  ``(map c₁ ≤ map c₂, distance d)``. Every pair of units in one bin has the same input
  ``X = (d(f(i), f(j)), k(f(i), f(j)))`` of eq 3.4 (``f`` = eq 3.3, ``d`` = eq 2.15 in feature-map
  grid units, ``k`` = eq 2.16 from the layer's own kernels, which depends only on the two maps), so
  the Nadaraya–Watson estimate of eq 3.6 over the bins, each weighted by its count, is *exactly*
  the estimate over all ``N(N − 1)/2`` points: ``Σ_pairs K(X₀, X) Y = Σ_bins K(X₀, X_bin) Y_sum``
  and ``Σ_pairs K(X₀, X) = Σ_bins K(X₀, X_bin) count``.

Choices the text leaves open (docs/decisions/correlation_analysis.md):

* ``B`` = 64 (the thesis says "a random mini-batch of size B" and gives no value; 64 observations
  give a per-image correlation a standard error of ~0.13, ~0.013 after averaging S = 100 images, and
  keep ``Z`` of layer 3 at 0.84 GB in float32);
* λ: ``B`` values ``linspace(0, 1, B)`` (both ends; λ = 1 is the fixed image itself);
* the ``S`` images are drawn without replacement, each partner batch without replacement from the
  test set (it may contain the fixed image); one seeded generator (``seed``), so every network is
  analysed on exactly the same mixed inputs;
* units whose activation does not vary over the ``B`` observations of an image (dead ReLUs; a
  standard deviation ≤ ``1e-5·|mean| + 1e-8`` counts as none, float32 activations carry ~1e-7
  relative rounding) have no Pearson correlation. ``zero_variance="zero"`` (default): such a unit's
  correlation is 0 in that ``Σ_i`` (what ``nan_to_num`` or an ε in the denominator gives), and
  ``Σ′ = ZᵀZ / S`` for every pair — eq 3.2's average over all ``S`` images, entry by entry.
  ``zero_variance="exclude"``: ``Σ′_ij`` is the mean of the ``Σ_i`` in which both units vary
  (``(ZᵀZ)_ij / n_ij``, ``n = VᵀV`` with ``V`` the ``S × N`` indicator of varying units); pairs with
  ``n_ij = 0`` are left out of the statistics and the smoother (``n_undefined``). Not the default:
  a pair that varies together in one image only keeps that image's correlation, often ±1, and such
  rare pairs then set Table 3.2's max and min (seen on digits: max 1.00, min −1.00 at every layer);
* off-diagonal only: §3.2.2 counts ``N(N − 1)/2`` points (its index set ``A`` also lists
  ``j = i``, but those are all 1 and are no correlation *between* units);
* eq 3.6's kernel is printed ``exp(−‖X − X₀‖ / (2b²))``; the text calls it "a Gaussian kernel",
  which is ``exp(−‖X − X₀‖² / (2b²))``, so ``kernel="gaussian"`` (squared norm) is the default and
  ``kernel="norm"`` (as printed) is available; ``b = bandwidth`` = 0.25 in the raw units of ``X``
  (grid units for ``d``, cosine for ``k``; one ``b`` for both, as printed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bioreg.errors import UserError
from bioreg.layers.base import kernel_similarity
from bioreg.layers.correlation import CorrelationParams, spatial_matrix, tuning_matrix

__all__ = [
    "AnalysisError", "ZERO_VARIANCE", "KERNELS", "THESIS_LAYERS", "DISTANCE_SCALES", "unit_coords",
    "mix_lambdas", "draw_inputs", "naive_sigma_prime", "naive_pairs", "zscore_block", "save_bins", "load_bins", "valid_layers", "resolve_layer", "cumulative_stride", "collect_blocks", "TiledReducer",
    "LayerBins", "load_test_images", "nadaraya_watson", "smooth_grid", "linear_exponential_stats", "offdiag_stats",
    "analyse_layer", "LayerResult", "CorrelationAnalysis", "check_checkpoint_model",
]

ZERO_VARIANCE = ("zero", "exclude")
KERNELS = ("gaussian", "norm")
#: VGG-11 layers of Table 3.2 / Figs 3.2–3.6 (thesis numbering: conv layers after 1, 1 and 2 pools)
THESIS_LAYERS = (3, 5, 6, 8, 9)
#: meanings of eq 2.14's "scaled Euclidean distance" for the Linear Exponential column
DISTANCE_SCALES = ("grid", "input_pixels")


class AnalysisError(UserError, ValueError):
    """A bad argument of the correlation analysis; the message is one line naming the valid choices
    (a :class:`bioreg.errors.UserError`)."""


# ----------------------------------------------------------------------------------------------
# Index map (eq 3.3), λ layout, layers
# ----------------------------------------------------------------------------------------------


def unit_coords(i: int | Tensor | np.ndarray, height: int, width: int):
    """``f(i) = (x, y, z)`` of eq 3.3: ``z = i // (H W)``, ``x = (i % (H W)) // W``, ``y = (i % (H W)) % W``.

    ``z`` is the feature map, ``x`` the row and ``y`` the column of unit ``i`` in the flatten of a
    ``(C, H, W)`` activation (PyTorch's order). Works on ints, tensors and arrays.
    """
    hw = height * width
    z = i // hw
    r = i % hw
    return r // width, r % width, z


def mix_lambdas(batch: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``B`` mixing weights of one fixed image: ``linspace(0, 1, B)`` (both ends included)."""
    return torch.linspace(0.0, 1.0, batch, dtype=dtype)


def _net(model: nn.Module) -> nn.Module:
    """The network that declares insertion points (unwraps ``Classifier.net``)."""
    if getattr(model, "points", None) is not None:
        return model
    inner = getattr(model, "net", None)
    if inner is not None and getattr(inner, "points", None) is not None:
        return inner
    raise AnalysisError(f"{type(model).__name__} declares no insertion points; the analysis needs a bioreg model "
                        "(bioreg.models, e.g. VGG11)")


def _points(net: nn.Module) -> Mapping[str, Any]:
    pts = net.points
    return pts() if callable(pts) else pts


def valid_layers(model: nn.Module) -> list[str]:
    """Points of ``model`` the analysis accepts: 4-D activations produced (possibly via a pool) by a Conv2d."""
    net = _net(model)
    out = []
    for name, p in _points(net).items():
        if p.producer and isinstance(net.get_submodule(p.producer), nn.Conv2d):
            out.append(name)
    return out


def resolve_layer(model: nn.Module, layer: int | str) -> str:
    """``3`` or ``"3"`` or ``"layer3"`` → the point name ``layer3``; unknown → :class:`AnalysisError`."""
    valid = valid_layers(model)
    key = str(layer)
    for cand in (key, f"layer{key}"):
        if cand in valid:
            return cand
    raise AnalysisError(f"unknown layer {layer!r} for {type(_net(model)).__name__}; valid layers (conv points): "
                        f"{', '.join(valid)} (Table 3.2 uses {', '.join(map(str, THESIS_LAYERS))})")


def cumulative_stride(input_shape: Sequence[int], act_shape: Sequence[int]) -> float:
    """Input pixels per feature-map grid step: input width / activation width (2 at VGG-11 layer 3)."""
    return float(input_shape[-1]) / float(act_shape[-1])


def _check_sizes(samples: int, batch: int) -> None:
    for name, v in (("S (samples)", samples), ("B (batch)", batch)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise AnalysisError(f"{name} must be an integer >= 2 (a correlation needs 2 observations / an average "
                                f"needs 2 images), got {v!r}")


# ----------------------------------------------------------------------------------------------
# Gathering the activations (§3.2.1)
# ----------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


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
        return cls(zt=zt, valid=vv, shape=tuple(int(v) for v in shape), samples=len(z), batch=int(z[0].shape[0]))


def draw_inputs(n_test: int, samples: int, batch: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices of the ``S`` fixed images (without replacement) and of their ``S × B`` partners."""
    _check_sizes(samples, batch)
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


@torch.no_grad()
def collect_blocks(model: nn.Module, layer: str, images: Tensor, fixed: Tensor, partners: Tensor,
                   dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                   progress: Any = None) -> Blocks:
    """Forward the mixed batches of every fixed image to ``layer`` and stack their z-scored blocks.

    ``images`` (n, C, H, W) in the model's input space; ``fixed`` (S,), ``partners`` (S, B) index it.
    The forward pass stops at the layer (a hook raises), so deeper layers cost nothing.
    """
    net = _net(model)
    point = _points(net)[layer]
    tap = net.get_submodule(point.tap)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    samples, batch = partners.shape
    lam = mix_lambdas(batch, images.dtype).to(device).view(-1, 1, 1, 1)
    got: dict[str, Tensor] = {}

    def hook(_m, _i, out):
        got["a"] = out
        raise _Stop

    h = tap.register_forward_hook(hook)
    was = model.training
    model.eval()
    zt = valid = None
    try:
        for s in range(samples):
            x = images[fixed[s]].to(device).unsqueeze(0)
            xp = images[partners[s]].to(device)
            try:
                model(lam * x + (1.0 - lam) * xp)  # eq 3.1 with B evenly spaced λ
            except _Stop:
                pass
            a = got.pop("a")
            if a.dim() != 4:
                raise AnalysisError(f"layer {layer!r} gives {a.dim()}-D activations; the analysis needs conv "
                                    f"feature maps (C, H, W)")
            shape = tuple(int(v) for v in a.shape[1:])
            zb, vb = zscore_block(a.reshape(batch, -1))
            zb = Blocks.unit_major_to_position_major(zb, shape)
            vb = Blocks.unit_major_to_position_major(vb, shape)
            if zt is None:
                n = zb.shape[1]
                zt = torch.empty(n, samples * batch, dtype=dtype, device=device)
                valid = torch.empty(samples, n, dtype=torch.bool, device=device)
            zt[:, s * batch:(s + 1) * batch] = zb.T.to(dtype)
            valid[s] = vb
            if progress is not None:
                progress()
    finally:
        h.remove()
        model.train(was)
    return Blocks(zt=zt, valid=valid, shape=shape, samples=samples, batch=batch)  # type: ignore[arg-type]


@torch.no_grad()
def naive_sigma_prime(model: nn.Module, layer: str, images: Tensor, fixed: Tensor, partners: Tensor,
                      zero_variance: str = "zero") -> np.ndarray:
    """The reference Σ′ for small layers: ``numpy.corrcoef`` of each image's mixed batch, averaged
    (``zero``: an undefined correlation counts 0; ``exclude``: the mean where defined, NaN where never).
    Materialises ``N × N`` (tests and the benchmark's exactness check only)."""
    batch = partners.shape[1]
    lam = mix_lambdas(batch, images.dtype).view(-1, 1, 1, 1)
    tap = _net(model).get_submodule(_points(_net(model))[layer].tap)
    got: dict[str, Tensor] = {}

    def grab(_m, _i, out):
        got["a"] = out
        raise _Stop

    mats = []
    h = tap.register_forward_hook(grab)
    try:
        for s in range(len(fixed)):
            try:
                model(lam * images[fixed[s]][None] + (1 - lam) * images[partners[s]])
            except _Stop:
                pass
            with np.errstate(all="ignore"):
                mats.append(np.corrcoef(got.pop("a").reshape(batch, -1).double().cpu().numpy().T))
    finally:
        h.remove()
    stack = np.stack(mats)
    if zero_variance == "zero":
        return np.nan_to_num(stack, nan=0.0).mean(0)
    with np.errstate(all="ignore"):
        return np.nansum(stack, 0) / np.isfinite(stack).sum(0)


def naive_pairs(sigma: np.ndarray, shape: Sequence[int], weight: Tensor) -> tuple[Tensor, Tensor]:
    """The data set of eqs 3.4–3.5 from a dense ``Σ′``: ``X (n, 2) = (d, k)`` and ``Y (n,)`` over its
    defined off-diagonal pairs ``i < j`` (the all-points reference of the binned smoother)."""
    _, h, w = shape
    iu = np.triu_indices(sigma.shape[0], 1)
    y = sigma[iu]
    ok = np.isfinite(y)
    xi, yi, zi = unit_coords(iu[0][ok], h, w)
    xj, yj, zj = unit_coords(iu[1][ok], h, w)
    k = kernel_similarity(weight.detach().double().cpu()).numpy()
    x = np.stack([np.sqrt((xi - xj) ** 2 + (yi - yj) ** 2), k[zi, zj]], 1)
    return torch.from_numpy(x), torch.from_numpy(y[ok])


# ----------------------------------------------------------------------------------------------
# Tiled product + on-the-fly reduction
# ----------------------------------------------------------------------------------------------


def distance_index(height: int, width: int) -> tuple[Tensor, Tensor]:
    """``(didx, d)``: for positions ``p, q`` (row-major), ``didx[p, q]`` indexes the distinct grid
    distances ``d`` (ascending, ``d[0] = 0``) of eq 2.15."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    y, x = yy.reshape(-1), xx.reshape(-1)
    sq = (y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2
    keys, inv = torch.unique(sq, sorted=True, return_inverse=True)
    return inv, keys.double().sqrt()


@dataclass
class OffDiagStats:
    n: int
    min: float
    max: float
    mean: float
    std: float

    def as_dict(self) -> dict[str, float]:
        return {"max": self.max, "min": self.min, "mean": self.mean, "std": self.std, "n_pairs": self.n}


class TiledReducer:
    """``Σ′ = ZᵀZ / n`` tile by tile, each tile reduced on the fly into the off-diagonal statistics
    and the (map pair, distance) bins; nothing ``N × N`` is ever held.

    Tiles are blocks of *positions* ``P × Q`` (``P ≤ Q``, all maps): with ``Zᵀ`` stored
    position-major (:class:`Blocks`), a tile is ``(|P|·C) × (|Q|·C)`` in ``(p, c₁, q, c₂)`` order,
    so regrouping it into one row per position pair ``(p, q)`` (whose distance is ``d(p, q)``)
    moves contiguous runs of ``C`` values, and the bins are one ``index_add`` of rows of ``C²``.
    Accumulators are float64; the product runs in ``Zᵀ``'s dtype. ``tile_units`` bounds a tile's
    side (whole positions, at least one), so the working memory is a few tiles besides ``Z``.
    """

    def __init__(self, blocks: Blocks, zero_variance: str = "zero", tile_units: int = 2048) -> None:
        if zero_variance not in ZERO_VARIANCE:
            raise AnalysisError(f"zero_variance={zero_variance!r}; valid: {', '.join(ZERO_VARIANCE)}")
        self.b = blocks
        self.mode = zero_variance
        c, h, w = blocks.shape
        self.c, self.hw = c, h * w
        self.pos_per_tile = max(1, min(self.hw, int(tile_units) // c))
        didx, self.d = distance_index(h, w)
        self.nd = int(self.d.numel())
        dev = blocks.zt.device
        self.didx = didx.to(dev)  # (HW, HW)
        self.vf = blocks.valid.to(blocks.zt.dtype) if zero_variance == "exclude" else None
        self.acc_sum = torch.zeros(self.nd, c * c, dtype=torch.float64, device=dev)
        self.acc_cnt = torch.zeros(self.nd, c * c, dtype=torch.float64, device=dev)
        self._n = 0.0
        self._sum = 0.0
        self._sq = 0.0
        self._min = math.inf
        self._max = -math.inf
        self.matmul_s = 0.0
        self.total_s = 0.0

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """``(p0, p1, q0, q1)`` position ranges of the tiles (upper block triangle)."""
        m = self.pos_per_tile
        starts = list(range(0, self.hw, m))
        return [(p0, min(p0 + m, self.hw), q0, min(q0 + m, self.hw)) for p0 in starts for q0 in starts if q0 >= p0]

    @torch.no_grad()
    def run(self, progress: Any = None, sync: Any = None) -> TiledReducer:
        import time

        for p0, p1, q0, q1 in self.tiles():
            t0 = time.perf_counter()
            self._tile(p0, p1, q0, q1, sync)
            self.total_s += time.perf_counter() - t0
            if progress is not None:
                progress()
        return self

    def _tile(self, p0: int, p1: int, q0: int, q1: int, sync: Any = None) -> None:
        import time

        c, zt = self.c, self.b.zt
        np_, nq = p1 - p0, q1 - q0
        rows, cols = slice(p0 * c, p1 * c), slice(q0 * c, q1 * c)
        t0 = time.perf_counter()
        g = zt[rows] @ zt[cols].T  # (ZᵀZ) tile, units (p, c1) x (q, c2)
        if sync is not None:
            sync()
        self.matmul_s += time.perf_counter() - t0
        if self.mode == "zero":
            g.div_(self.b.samples)
        else:
            n = self.vf[:, rows].T @ self.vf[:, cols]  # images in which both units vary
            g.div_(n)  # 0 / 0 = NaN marks a pair that never varies together: undefined
            del n
        # one row per position pair (p, q): contiguous runs of C values
        r = g.view(np_, c, nq, c).transpose(1, 2).contiguous().view(np_ * nq, c * c)
        del g
        diag = p0 == q0
        if diag:  # the unit diagonal (p == q, c1 == c2) is not a pair
            pr = torch.arange(np_, device=r.device) * (np_ + 1)
            cc = torch.arange(c, device=r.device) * (c + 1)
            r[pr[:, None], cc[None, :]] = math.nan
        undef = r.isnan() if (diag or self.mode == "exclude") else None
        n_undef = int(undef.count_nonzero()) if undef is not None else 0
        cnt = r.numel() - n_undef
        wgt = 0.5 if diag else 1.0  # a diagonal tile holds each unordered pair twice
        if cnt:
            if n_undef:
                flat = r.view(-1)
                ref = flat[0] if not bool(undef.view(-1)[0]) else flat[int(undef.view(-1).logical_not().byte().argmax())]
                r.masked_fill_(undef, ref)  # a defined value leaves min / max unchanged
            lo, hi = torch.aminmax(r)
            if n_undef:
                r.masked_fill_(undef, 0.0)
            flat = r.view(-1)
            self._n += wgt * cnt
            self._sum += wgt * float(flat.sum())
            self._sq += wgt * float(torch.dot(flat, flat))
            self._min = min(self._min, float(lo))
            self._max = max(self._max, float(hi))
        elif n_undef:
            r.zero_()
        idx = self.didx[p0:p1, q0:q1].reshape(-1)
        part = torch.zeros(self.nd, c * c, dtype=r.dtype, device=r.device).index_add_(0, idx, r)
        self.acc_sum.add_(part.double(), alpha=wgt)
        per_d = torch.bincount(idx, minlength=self.nd).double()
        self.acc_cnt.add_(per_d[:, None], alpha=wgt)
        if n_undef:
            pu = torch.zeros(self.nd, c * c, dtype=r.dtype, device=r.device).index_add_(0, idx, undef.to(r.dtype))
            self.acc_cnt.sub_(pu.double(), alpha=wgt)

    def stats(self) -> OffDiagStats:
        n = self._n
        if n == 0:
            return OffDiagStats(0, math.nan, math.nan, math.nan, math.nan)
        mean = self._sum / n
        var = max(self._sq / n - mean * mean, 0.0)
        return OffDiagStats(int(round(n)), self._min, self._max, mean, math.sqrt(var))

    def n_undefined(self) -> int:
        n_all = self.b.zt.shape[0] * (self.b.zt.shape[0] - 1) // 2
        return int(n_all - round(self._n))

    def bins(self, kernels: Tensor) -> LayerBins:
        """Unordered map pairs ``c1 ≤ c2``: ``(c1, c2)`` and ``(c2, c1)`` summed (the same-map pair
        holds every unordered unit pair once already); ``k`` from the layer's kernels (eq 2.16)."""
        c = self.c
        iu = torch.triu_indices(c, c, device=self.acc_sum.device)
        s = self.acc_sum.view(self.nd, c, c)
        n = self.acc_cnt.view(self.nd, c, c)
        same = (iu[0] == iu[1]).to(s.dtype)
        s_pairs = s[:, iu[0], iu[1]] + s[:, iu[1], iu[0]] * (1 - same)
        n_pairs = n[:, iu[0], iu[1]] + n[:, iu[1], iu[0]] * (1 - same)
        k = kernel_similarity(kernels.detach().double().cpu())
        iu_c = iu.cpu()
        return LayerBins(d=self.d.cpu(), k=k[iu_c[0], iu_c[1]], maps=iu_c.T.contiguous(),
                         sums=s_pairs.T.contiguous().cpu(), counts=n_pairs.T.round().contiguous().cpu())


# ----------------------------------------------------------------------------------------------
# Bins and the Nadaraya-Watson smoother (eq 3.6)
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerBins:
    """Binned smoother data: for each unordered map pair ``maps[m] = (c1, c2)`` (``k[m]`` its eq 2.16
    similarity) and distance ``d[t]`` (grid units), the sum and count of ``Σ′`` over its unit pairs."""

    d: Tensor       # (nd,)
    k: Tensor       # (npairs,)
    maps: Tensor    # (npairs, 2)
    sums: Tensor    # (npairs, nd)
    counts: Tensor  # (npairs, nd)

    def points(self) -> tuple[Tensor, Tensor, Tensor]:
        """Non-empty bins as ``X (n, 2) = (d, k)``, ``Y_sum (n,)``, ``count (n,)``; bins with the same
        ``X`` (e.g. every same-map pair has ``k = 1``) merged."""
        dd = self.d[None, :].expand_as(self.sums)
        kk = self.k[:, None].expand_as(self.sums)
        keep = self.counts > 0
        x = torch.stack([dd[keep], kk[keep]], dim=1)
        uniq, inv = torch.unique(x, dim=0, return_inverse=True)
        ys = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, self.sums[keep])
        cs = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, self.counts[keep])
        return uniq, ys, cs

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for the ``.npz`` file: sums in float32 (1e-7 relative; the record's grid is computed from the
        float64 sums), counts in int32 (≤ H²W² per bin)."""
        return {"d": self.d.numpy(), "k": self.k.numpy(), "maps": self.maps.numpy().astype(np.int32),
                "sums": self.sums.numpy().astype(np.float32), "counts": self.counts.numpy().astype(np.int32)}


def _check_kernel(kernel: str, bandwidth: float) -> None:
    if kernel not in KERNELS:
        raise AnalysisError(f"kernel={kernel!r}; valid: {', '.join(KERNELS)} (gaussian = squared norm, "
                            "norm = eq 3.6 as printed)")
    if not (isinstance(bandwidth, (int, float)) and math.isfinite(bandwidth) and bandwidth > 0):
        raise AnalysisError(f"bandwidth must be a positive number, got {bandwidth!r}")


def nadaraya_watson(x0: Tensor, x: Tensor, y_sum: Tensor, count: Tensor, bandwidth: float,
                    kernel: str = "gaussian", chunk: int = 1 << 22) -> Tensor:
    """Eq 3.6 at the query points ``x0 (m, 2)`` from binned data (``count`` points with sum ``y_sum``
    at each ``x``): ``Σ K(x0, x) y_sum / Σ K(x0, x) count``. ``K = exp(−‖x − x0‖^p / (2b²))``,
    ``p = 2`` (gaussian) or 1 (norm, as printed). Computed in log space (max-shifted per query),
    so no query underflows to 0/0. With ``count = 1`` and ``y_sum = y`` it is the all-points form."""
    _check_kernel(kernel, bandwidth)
    x0, x = x0.double(), x.double()
    y_sum, count = y_sum.double(), count.double()
    out = torch.empty(len(x0), dtype=torch.float64)
    step = max(1, chunk // max(1, len(x)))
    for a in range(0, len(x0), step):
        q = x0[a:a + step]
        dist2 = torch.cdist(q, x).square() if kernel == "gaussian" else torch.cdist(q, x)
        logw = -dist2 / (2.0 * bandwidth ** 2)
        logw = logw - logw.amax(dim=1, keepdim=True)
        w = logw.exp()
        out[a:a + step] = (w @ y_sum) / (w @ count)
    return out


def smooth_grid(bins: LayerBins, d_grid: Tensor, k_grid: Tensor, bandwidth: float = 0.25,
                kernel: str = "gaussian") -> Tensor:
    """``g(d, k)`` of eq 3.6 on the grid ``d_grid × k_grid`` (returns ``(len(k_grid), len(d_grid))``).

    Gaussian kernel: separable, ``K = K_d K_k``, so ``Σ_bins K Y = K_d(grid_d, d) · [Σ_pairs
    K_k(grid_k, k) sums(pair, d)]`` — exact and ``O(pairs · nd · grid)``; norm kernel: the direct
    sum of :func:`nadaraya_watson` over the (merged) bins."""
    _check_kernel(kernel, bandwidth)
    d_grid, k_grid = d_grid.double(), k_grid.double()
    if kernel == "norm":
        dd, kk = torch.meshgrid(d_grid, k_grid, indexing="xy")
        x, ys, cs = bins.points()
        return nadaraya_watson(torch.stack([dd.reshape(-1), kk.reshape(-1)], 1), x, ys, cs, bandwidth, kernel
                               ).reshape(len(k_grid), len(d_grid))
    two_b2 = 2.0 * bandwidth ** 2
    ld = -(d_grid[:, None] - bins.d[None, :].double()).square() / two_b2   # (gd, nd)
    lk = -(k_grid[:, None] - bins.k[None, :].double()).square() / two_b2   # (gk, npairs)
    # shift each query row by the max over *non-empty* data so the ratio never becomes 0/0
    has_d = bins.counts.sum(0) > 0
    has_k = bins.counts.sum(1) > 0
    ld = ld - ld.masked_fill(~has_d[None, :], -math.inf).amax(1, keepdim=True)
    lk = lk - lk.masked_fill(~has_k[None, :], -math.inf).amax(1, keepdim=True)
    wd, wk = ld.exp(), lk.exp()
    num = wk @ bins.sums.double() @ wd.T      # (gk, gd)
    den = wk @ bins.counts.double() @ wd.T
    return num / den


# ----------------------------------------------------------------------------------------------
# The "Linear Exponential" column: eq 2.14's off-diagonal statistics without N x N
# ----------------------------------------------------------------------------------------------


def offdiag_stats(dense: Tensor) -> OffDiagStats:
    """Min, max, mean, std of the off-diagonal entries of a small dense matrix (tests, benchmark)."""
    n = dense.shape[0]
    m = dense[~torch.eye(n, dtype=torch.bool, device=dense.device)].double()
    m = m[torch.isfinite(m)]
    return OffDiagStats(int(m.numel() // 2), float(m.min()), float(m.max()), float(m.mean()),
                        float(m.std(correction=0)))


def linear_exponential_stats(weight: Tensor, height: int, width: int, params: CorrelationParams) -> OffDiagStats:
    """Table 3.2's "Linear Exponential" statistics: eq 2.14 off the diagonal for a layer with kernels
    ``weight`` and ``H × W`` maps, from ``T`` (C × C) and ``S`` (HW × HW) of
    :mod:`bioreg.layers.correlation` — never the ``N × N`` matrix ``T ⊗ S + c``.

    Off-diagonal pairs: ``(c1 ≠ c2, any p, q)`` with value ``T S + c`` and ``(c, p ≠ q)`` with
    ``T_cc S_pq + c`` (``T_cc = 1``). ``T, S ≥ 0``, so extremes are products of extremes.
    """
    t = tuning_matrix(weight, params)
    s = spatial_matrix(height, width, params)
    c, hw = t.shape[0], s.shape[0]
    n = c * hw
    if n < 2:
        raise AnalysisError("a layer with fewer than 2 units has no off-diagonal pairs")
    eye_t = torch.eye(c, dtype=torch.bool)
    eye_s = torch.eye(hw, dtype=torch.bool)
    td, sd = t.diagonal(), s.diagonal()
    # sums over all n^2 entries of T⊗S + c, then remove the n diagonal entries
    total = t.sum() * s.sum() + params.c * n * n
    total_sq = t.square().sum() * s.square().sum() + 2 * params.c * t.sum() * s.sum() + params.c ** 2 * n * n
    diag = (td[:, None] * sd[None, :] + params.c).reshape(-1)
    m_sum = float(total - diag.sum())
    m_sq = float(total_sq - diag.square().sum())
    cnt = n * (n - 1)
    mean = m_sum / cnt
    std = math.sqrt(max(m_sq / cnt - mean * mean, 0.0))
    cands_hi, cands_lo = [], []
    if c > 1:
        toff = t[~eye_t]
        cands_hi.append(toff.max() * s.max())
        cands_lo.append(toff.min() * s.min())
    if hw > 1:
        soff = s[~eye_s]
        cands_hi.append(td.max() * soff.max())
        cands_lo.append(td.min() * soff.min())
    hi = float(max(cands_hi)) + params.c
    lo = float(min(cands_lo)) + params.c
    return OffDiagStats(cnt // 2, lo, hi, mean, std)


# ----------------------------------------------------------------------------------------------
# One layer, end to end
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerResult:
    layer: str
    shape: tuple[int, int, int]
    stats: OffDiagStats
    n_undefined: int
    bins: LayerBins
    d_grid: Tensor
    k_grid: Tensor
    grid: Tensor                 # (len(k_grid), len(d_grid))
    linear_exponential: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def section(self, digits: int = 6) -> dict[str, Any]:
        """The record section of this layer (JSON-ready; grid rounded to ``digits`` decimals)."""
        r = lambda v: None if v is None or not math.isfinite(v) else round(float(v), digits)  # noqa: E731
        st = self.stats
        x, ys, cs = self.bins.points()
        return {
            "max": r(st.max), "min": r(st.min), "mean": r(st.mean), "std": r(st.std),
            "n_pairs": st.n, "n_undefined": self.n_undefined, "shape": list(self.shape),
            "n_bins": int(len(x)),
            "profile_d": {"d": [r(v) for v in self.bins.d.tolist()],
                          "mean": [r(v) for v in (self.bins.sums.sum(0) / self.bins.counts.sum(0).clamp_min(1)).tolist()],
                          "count": [int(v) for v in self.bins.counts.sum(0).tolist()]},
            "smoothed": {"d": [r(v) for v in self.d_grid.tolist()], "k": [r(v) for v in self.k_grid.tolist()],
                         "g": [[r(v) for v in row] for row in self.grid.tolist()]},
            "linear_exponential": self.linear_exponential,
            "settings": self.settings, "timing_s": {k: round(v, 3) for k, v in self.timing.items()},
        }


def analyse_layer(model: nn.Module, layer: int | str, images: Tensor, *, samples: int = 100, batch: int = 64,
                  seed: int = 0, zero_variance: str = "zero", kernel: str = "gaussian", bandwidth: float = 0.25,
                  grid: tuple[int, int] = (41, 41), scales: Sequence[str | float] = DISTANCE_SCALES,
                  le_params: CorrelationParams | None = None, dtype: torch.dtype = torch.float32,
                  tile_units: int = 2048, device: torch.device | str | None = None) -> LayerResult:
    """Σ′ of one layer (eq 3.2), its Table 3.2 statistics, bins and smoothed ``g(d, k)`` (eq 3.6)."""
    import time

    if zero_variance not in ZERO_VARIANCE:
        raise AnalysisError(f"zero_variance={zero_variance!r}; valid: {', '.join(ZERO_VARIANCE)}")
    _check_kernel(kernel, bandwidth)
    name = resolve_layer(model, layer)
    _check_sizes(samples, batch)
    net = _net(model)
    weight = net.get_submodule(_points(net)[name].producer).weight
    fixed, partners = draw_inputs(len(images), samples, batch, seed)
    t0 = time.perf_counter()
    blocks = collect_blocks(model, name, images, fixed, partners, dtype=dtype, device=device)
    t1 = time.perf_counter()
    red = TiledReducer(blocks, zero_variance, tile_units).run()
    t2 = time.perf_counter()
    bins = red.bins(weight)
    c, h, w = blocks.shape
    d_grid = torch.linspace(0.0, float(bins.d.max()), grid[0], dtype=torch.float64)
    k_grid = torch.linspace(-1.0, 1.0, grid[1], dtype=torch.float64)
    g = smooth_grid(bins, d_grid, k_grid, bandwidth, kernel)
    t3 = time.perf_counter()
    stride = cumulative_stride(images.shape[1:], blocks.shape)
    le: dict[str, dict[str, float]] = {}
    base = le_params or CorrelationParams()
    for sc in scales:
        if sc == "grid":
            val = 1.0
        elif sc == "input_pixels":
            val = stride
        else:
            try:
                val = float(sc)
            except (TypeError, ValueError):
                raise AnalysisError(f"distance scale {sc!r}; valid: {', '.join(DISTANCE_SCALES)} or a number") from None
        p = CorrelationParams(a=base.a, b=base.b, c=base.c, tau=base.tau, distance_scale=val)
        st = linear_exponential_stats(weight, h, w, p)
        le[str(sc)] = {**{k: round(v, 6) for k, v in st.as_dict().items() if k != "n_pairs"}, "distance_scale": val}
    settings = {"S": samples, "B": batch, "seed": seed, "zero_variance": zero_variance, "kernel": kernel,
                "bandwidth": bandwidth, "lambdas": "linspace(0, 1, B)", "dtype": str(dtype).replace("torch.", ""),
                "cumulative_stride": stride, "point": name}
    timing = {"collect": t1 - t0, "tiles": t2 - t1, "matmul": red.matmul_s, "smooth": t3 - t2}
    return LayerResult(name, blocks.shape, red.stats(), red.n_undefined(), bins, d_grid, k_grid, g, le,
                       settings, timing)


# ----------------------------------------------------------------------------------------------
# Evaluator (eval.evaluators.correlation_analysis) and checkpoint check
# ----------------------------------------------------------------------------------------------


def load_test_images(datamodule: Any) -> Tensor:
    ds = datamodule.test_set()
    return torch.stack([ds[i][0] for i in range(len(ds))])


class CorrelationAnalysis:
    """Evaluator: the §3.2 analysis at each of ``layers``; returns ``{layer: section}`` for
    ``record.extra.correlation_analysis``. ``bins_path``: also write every layer's bins to this
    ``.npz`` (the script sets it next to the record). Options as in :func:`analyse_layer`."""

    def __init__(self, layers: Sequence[int | str] = THESIS_LAYERS, samples: int = 100, batch: int = 64,
                 seed: int = 0, zero_variance: str = "zero", kernel: str = "gaussian", bandwidth: float = 0.25,
                 grid: Sequence[int] = (41, 41), scales: Sequence[str | float] = DISTANCE_SCALES,
                 dtype: str = "float32", tile_units: int = 2048, bins_path: str | None = None,
                 progress: bool | None = None) -> None:
        _check_sizes(samples, batch)
        if zero_variance not in ZERO_VARIANCE:
            raise AnalysisError(f"zero_variance={zero_variance!r}; valid: {', '.join(ZERO_VARIANCE)}")
        _check_kernel(kernel, bandwidth)
        if dtype not in ("float32", "float64"):
            raise AnalysisError(f"dtype={dtype!r}; valid: float32, float64")
        if not layers:
            raise AnalysisError(f"layers is empty; Table 3.2 uses {', '.join(map(str, THESIS_LAYERS))}")
        self.layers = list(layers)
        self.kw = dict(samples=samples, batch=batch, seed=seed, zero_variance=zero_variance, kernel=kernel,
                       bandwidth=bandwidth, grid=tuple(int(g) for g in grid), scales=list(scales),
                       dtype=getattr(torch, dtype), tile_units=tile_units)
        self.bins_path = bins_path
        self.progress = progress
        self.results: dict[str, LayerResult] = {}

    def run(self, model: nn.Module, images: Tensor, device: torch.device | str | None = None,
            progress: bool = False) -> dict[str, LayerResult]:
        names = [resolve_layer(model, layer) for layer in self.layers]  # all errors before any work
        out = {}
        for name in names:
            if progress:
                print(f"correlation analysis: {name}", flush=True)
            out[name] = analyse_layer(model, name, images, device=device, **self.kw)
        self.results = out
        return out

    def __call__(self, ctx: Any) -> dict[str, Any]:
        show = ctx.progress if self.progress is None else self.progress
        res = self.run(ctx.model, load_test_images(ctx.datamodule), device=ctx.device, progress=show)
        if self.bins_path:
            save_bins(self.bins_path, res)
        return {"layers": {name: r.section() for name, r in res.items()}}


def save_bins(path: str, results: Mapping[str, LayerResult]) -> None:
    """All layers' bins in one compressed ``.npz`` (keys ``<layer>/<array>``), written atomically."""
    import io

    from bioreg.io import atomic_write_bytes

    arrays = {f"{name}/{k}": v for name, r in results.items() for k, v in r.bins.to_numpy().items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_bins(path: str, layer: str) -> LayerBins:
    with np.load(path) as f:
        if f"{layer}/d" not in f.files:
            have = sorted({k.split("/")[0] for k in f.files})
            raise AnalysisError(f"{path} has no bins of {layer!r}; it has: {', '.join(have)}")
        return LayerBins(d=torch.from_numpy(f[f"{layer}/d"]), k=torch.from_numpy(f[f"{layer}/k"]),
                         maps=torch.from_numpy(f[f"{layer}/maps"]).long(),
                         sums=torch.from_numpy(f[f"{layer}/sums"]).double(),
                         counts=torch.from_numpy(f[f"{layer}/counts"]).double())


def _arch_name(model: nn.Module) -> str:
    """The network's class name, through a ``Classifier`` (``.net``) or a LitClassifier (``.model.net``)."""
    for path in ("", "net", "model.net"):
        try:
            m = model.get_submodule(path) if path else model
        except AttributeError:
            continue
        if getattr(m, "points", None) is not None:
            return type(m).__name__
    return type(model).__name__


def check_checkpoint_model(state_dict: Mapping[str, Any], model: nn.Module, where: str = "checkpoint",
                           valid: Sequence[str] = ()) -> None:
    """One-line :class:`AnalysisError` when ``state_dict`` is not a checkpoint of ``model``'s architecture."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or wrong:
        ex = (missing or wrong)[0]
        hint = f"; analyse a checkpoint of one of: {', '.join(valid)}" if valid else ""
        raise AnalysisError(f"{where} is not a checkpoint of {_arch_name(model)} ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors, e.g. {ex!r}){hint}")
