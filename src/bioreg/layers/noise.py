"""Uncorrelated and correlated Gaussian / Poisson noise on activations (Dutta 2019, §2.2–2.3).

Four modules, each inserted *after* the ReLU of a layer (they receive activations
``a >= 0``) and each the identity in ``eval()`` mode:

=====  ==========================  ========================================================
entry  class                       training-mode output
=====  ==========================  ========================================================
``ug`` :class:`UncorrelatedGaussian`  ``h = a + σ(a) * xi``, ``xi ~ N(0, 1)`` i.i.d. (eqs 2.3–2.5);
                                      ``σ(a) = sqrt(a + eps)`` (``scale: variance``, Fano factor 1,
                                      default) or ``σ(a) = a`` (``scale: std``), or a fixed ``sigma``
``cg`` :class:`CorrelatedGaussian`    ``h = a + diag(σ(a)) L x`` (eqs 2.6–2.8), ``Σ = LLᵀ``
                                      from eq 2.14 with the producing conv's live kernels
``up`` :class:`UncorrelatedPoisson`   ``h ~ Poisson(a)`` (eq 2.9), straight-through gradient;
                                      optionally the Gumbel-softmax relaxation (eqs 2.10–2.12)
``cp`` :class:`CorrelatedPoisson`     Gaussian copula (§2.2.4): ``x ~ N(0, Σ)``, ``u = Φ(x)``,
                                      ``h = F⁻¹_Poisson(u; a)``, straight-through gradient
=====  ==========================  ========================================================

The correlation matrix Σ (eq 2.14, nearest correlation matrix §2.3.3) and the samplers
that draw ``x`` come from :mod:`bioreg.layers.correlation`. The Poisson quantile
:func:`poisson_icdf` is computed in torch, on the tensor's device (see its docstring
for the algorithm and the range in which it is exact). Design notes:
``docs/decisions/noise.md``.

Each module is a thin wrapper around a pure function of the same name in snake case
(:func:`uncorrelated_gaussian`, :func:`uncorrelated_poisson`, :func:`correlated_gaussian`,
:func:`correlated_poisson`), ``f(a, ..., training)``, as ``torchvision.ops.drop_block2d`` is to
``DropBlock2d``: the function holds the noise model; the module holds the parameters (checked once,
at construction) and, for CG/CP, the sampler and its Σ-refresh schedule.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from bioreg.errors import require_extra
from bioreg.layers.base import InsertionContext, RegularizerConfigError, float32_internals
from bioreg.layers.correlation import (
    REPAIR_METHODS,
    SAMPLER_KINDS,
    CorrelationParams,
    build_sampler,
    check_distance_scale,
    resolve_distance_scale,
)

__all__ = [
    "UncorrelatedGaussian",
    "CorrelatedGaussian",
    "UncorrelatedPoisson",
    "CorrelatedPoisson",
    "uncorrelated_gaussian",
    "correlated_gaussian",
    "uncorrelated_poisson",
    "correlated_poisson",
    "NOISE_SCALES",
    "poisson_icdf",
    "poisson_icdf_from_normal",
    "gumbel_softmax_poisson",
    "DENSE_MAX_UNITS",
]

#: Largest layer (C*H*W units) for which the dense sampler is allowed: its Σ and Cholesky factor
#: take 2 n² floats (16384 units: 2 GiB in float32).
DENSE_MAX_UNITS = 16384

#: Readings of "σ = a_i" for the Gaussian noise (Dutta 2019: §2.2.1 says σ² = a_i, Table 2.1 and
#: §2.4.3 say σ = a_i): ``variance`` -> std sqrt(a + eps) (default), ``std`` -> std a.
NOISE_SCALES = ("variance", "std")


# --------------------------------------------------------------------------------------------
# parameter and input checks
# --------------------------------------------------------------------------------------------
def _check_eps(eps: float) -> float:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise RegularizerConfigError(f"eps must be a finite number > 0 (e.g. 1e-6), got {eps!r}")
    return float(eps)


def _check_sigma(sigma: float | None) -> float | None:
    if sigma is None:
        return None
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
        raise RegularizerConfigError(
            f"sigma must be null (σ² = a + eps, Fano factor 1) or a finite number >= 0, got {sigma!r}"
        )
    return float(sigma)


def _check_scale(scale: str, sigma: float | None) -> str:
    if scale not in NOISE_SCALES:
        raise RegularizerConfigError(
            f"scale must be one of {NOISE_SCALES} (variance: σ² = a + eps, Dutta 2019 §2.2.1; std: σ = a, "
            f"Table 2.1 and §2.4.3), got {scale!r}"
        )
    if sigma is not None and scale != "variance":
        raise RegularizerConfigError(
            f"scale={scale!r} sets σ from the activation, but sigma={sigma!r} fixes it: give one of them "
            "(sigma: null to use scale)"
        )
    return scale


def _check_refresh_every(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RegularizerConfigError(
            f"refresh_every must be an integer >= 1 (refresh Σ every n training steps), got {n!r}"
        )
    return n


def _check_activations(a: torch.Tensor, who: str) -> None:
    """Raise when ``a`` has negative or non-finite entries (the noise models need rates a >= 0)."""
    if a.numel() == 0:
        return
    lo, hi = torch.aminmax(a.detach())
    # no host sync in the training step (a GPU, or any compiled step): the device asserts (and aborts)
    if a.device.type != "cpu" or torch.compiler.is_compiling():
        torch._assert_async((lo >= 0) & (hi < math.inf), f"{who} received negative or non-finite activations")
        return
    if not bool((lo >= 0) & (hi < math.inf)):  # NaN makes both comparisons False
        bad = "non-finite" if not bool(torch.isfinite(a).all()) else f"negative (min {float(lo):.4g})"
        raise RegularizerConfigError(
            f"{who} received {bad} activations. Its noise variance / Poisson rate is the activation "
            "itself (Dutta 2019, §2.2), so it must sit after a ReLU (activations >= 0, finite): place it "
            "at a point after a convolution's ReLU (e.g. `at: layer1`)."
        )


# --------------------------------------------------------------------------------------------
# Poisson quantile (inverse CDF) in torch
# --------------------------------------------------------------------------------------------
def _poisson_cdf(k: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """P(X <= k) for X ~ Poisson(lam) and integer-valued k >= -1: Q(k + 1, lam), and 0 for k = -1."""
    return torch.where(k < 0, torch.zeros_like(lam), torch.special.gammaincc(k.clamp_min(0.0) + 1.0, lam))


def _poisson_search(k: torch.Tensor, lam: torch.Tensor, u: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Smallest integer k >= 0 with F(k; lam) >= u, starting from the guess ``k`` (all float64, 1-D).

    Bracket ``lo < answer <= hi`` (``F(lo) < u <= F(hi)``) around the guess by steps
    of 1, 2, 4, ... away from it, then bisect. A guess that is right or off by one
    costs two CDF evaluations; a guess off by ``m`` costs O(log m).
    """
    below = _poisson_cdf(k, lam) < u
    lo = torch.where(below, k, k - 1.0)
    hi = torch.where(below, k + 1.0, k)
    step = torch.ones_like(k)
    # widen upwards where F(hi) < u, downwards where F(lo) >= u (lo = -1 always qualifies)
    for side in ("up", "down"):
        sub = torch.nonzero(below if side == "up" else ~below).squeeze(1)
        step.fill_(1.0)
        for _ in range(max_iter):
            if sub.numel() == 0:
                break
            if side == "up":
                bad = _poisson_cdf(hi[sub], lam[sub]) < u[sub]
                sub = sub[bad]
                lo[sub] = hi[sub]
                step[sub] *= 2.0
                hi[sub] = lo[sub] + step[sub]
            else:
                bad = (lo[sub] >= 0) & (_poisson_cdf(lo[sub], lam[sub]) >= u[sub])
                sub = sub[bad]
                hi[sub] = lo[sub]
                step[sub] *= 2.0
                lo[sub] = (hi[sub] - step[sub]).clamp_min(-1.0)
        else:
            raise RuntimeError("poisson_icdf: bracketing did not converge")
    sub = torch.nonzero(hi - lo > 1).squeeze(1)
    for _ in range(max_iter):
        if sub.numel() == 0:
            break
        mid = torch.floor((lo[sub] + hi[sub]) / 2)
        go_up = _poisson_cdf(mid, lam[sub]) < u[sub]
        lo[sub] = torch.where(go_up, mid, lo[sub])
        hi[sub] = torch.where(go_up, hi[sub], mid)
        sub = sub[hi[sub] - lo[sub] > 1]
    else:
        raise RuntimeError("poisson_icdf: bisection did not converge")
    return hi


def poisson_icdf_from_normal(
    x: torch.Tensor, lam: torch.Tensor, *, u: torch.Tensor | None = None, max_iter: int = 128
) -> torch.Tensor:
    """Poisson quantile ``F⁻¹(Φ(x); lam)`` (the copula step of Dutta 2019 §2.2.4).

    Returns the smallest integer ``k >= 0`` with ``P(X <= k; lam) >= u`` where
    ``u = Φ(x)`` (or the given ``u``; ``x`` then only seeds the start), as a tensor of
    ``lam``'s dtype (float64 inside).

    Algorithm (vectorised, on the tensor's device): a Cornish–Fisher start
    ``k0 = floor(lam + z sqrt(lam) + (z² - 1)/6)`` with ``z = x`` (the normal score is
    exactly what the copula draws), then an exact search with the Poisson CDF
    ``F(k; lam) = Q(k + 1, lam)`` (``torch.special.gammaincc``, float64): bracket the
    answer by steps 1, 2, 4, ... away from ``k0`` and bisect. The start is right or off
    by one for almost every entry, so the usual cost is two CDF evaluations per
    non-zero rate on the whole (compacted) tensor; entries with ``lam = 0`` (ReLU
    zeros) are 0 without any work.

    Range: exact — the same integer as ``scipy.stats.poisson.ppf`` up to float64
    rounding of the CDF at a step boundary — for ``0 <= lam <= 1e6`` (tested on a
    grid of u in [1e-12, 1 - 1e-10]). For larger rates the algorithm is unchanged but
    the incomplete gamma function itself (same Cephes code as scipy) loses ~1e-8
    absolute accuracy in the far tails (seen at lam = 1e7, u > 1 - 1e-6). Without
    ``u``, ``x`` is clipped to [-8.2, 8.2] so that ``Φ(x) < 1`` in float64.
    """
    if x.shape != lam.shape:
        x, lam = torch.broadcast_tensors(x, lam)
    out_dtype = lam.dtype if lam.is_floating_point() else torch.float32
    lam64 = lam.detach().to(torch.float64).reshape(-1)
    if u is None:
        z = x.detach().to(torch.float64).reshape(-1).clamp(-8.2, 8.2)
        u64 = torch.special.ndtr(z)
    else:
        z = x.detach().to(torch.float64).reshape(-1).clamp(-40.0, 40.0)
        u64 = u.detach().to(torch.float64).reshape(-1)
    if torch.compiler.is_compiling():  # a compiled step: fixed shapes, the same integers
        return _icdf_fixed_shapes(lam64, z, u64).reshape(lam.shape).to(out_dtype)
    k = torch.zeros_like(lam64)
    # lam = 0 (a ReLU zero) or u = 0: quantile 0 without any work; the rest is compacted
    idx = torch.nonzero((lam64 > 0) & (u64 > 0)).squeeze(1)
    if idx.numel() == 0:
        return k.reshape(lam.shape).to(out_dtype)
    k0, kk, done = _first_guess(lam64[idx], z[idx], u64[idx])
    rest = torch.nonzero(~done).squeeze(1)  # start off by more than one: bracket and bisect
    if rest.numel():
        kk[rest] = _poisson_search(k0[rest], lam64[idx][rest], u64[idx][rest], max_iter)
    k[idx] = kk
    return k.reshape(lam.shape).to(out_dtype)


def _first_guess(lm: torch.Tensor, zz: torch.Tensor, uu: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cornish–Fisher start ``k0``, the answer ``kk`` where ``done`` after one CDF step (float64, 1-D)."""
    k0 = torch.floor(lm + zz * lm.sqrt() + (zz * zz - 1.0) / 6.0).clamp_min_(0.0)
    # F(k0) and F of its neighbour (no further indexing): settles almost every entry. The neighbour's
    # CDF is F(k0) +- one pmf term (exp/lgamma are about half the cost of a second gammaincc)
    f0 = torch.special.gammaincc(k0 + 1.0, lm)
    below = f0 < uu
    k1 = torch.where(below, k0 + 1.0, k0 - 1.0)
    kp = torch.where(below, k1, k0)  # the pmf term between F(k0) and F(k1)
    pmf = torch.exp(kp * torch.log(lm) - lm - torch.lgamma(kp + 1.0))
    f1 = torch.where(below, f0 + pmf, (f0 - pmf).masked_fill_(k1 < 0, 0.0))
    done = torch.where(below, f1 >= uu, f1 < uu)
    return k0, torch.where(below, k1, k0), done


#: Steps of the fixed-shape search (:func:`_icdf_fixed_shapes`): widening by 1, 2, 4, ... covers a
#: start that is off by up to 2**24, then as many halvings; a device assert checks that it converged.
_FIXED_STEPS = 24


def _icdf_fixed_shapes(lam64: torch.Tensor, z: torch.Tensor, u64: torch.Tensor) -> torch.Tensor:
    """:func:`poisson_icdf_from_normal` with shapes fixed by the input's size alone (for a compiled,
    CUDA-graph step): the same first step on every entry (rates 0 masked), then the exact search on at
    most ``1024 + n // 128`` entries (``nonzero_static``; about 0.2 % need it even at rates <= 0.05)
    with a fixed number of masked steps. Both searches find the smallest ``k`` with ``F(k) >= u``
    from the same CDF, so the integers are the eager ones; a device assert guards both bounds."""
    n = lam64.numel()
    active = (lam64 > 0) & (u64 > 0)
    lm = torch.where(active, lam64, torch.ones_like(lam64))  # inactive entries: a harmless problem
    uu = torch.where(active, u64, torch.full_like(u64, 0.5))
    k0, kk, done = _first_guess(lm, torch.where(active, z, torch.zeros_like(z)), uu)
    rest = active & ~done
    cap = 1024 + n // 128
    torch._assert_async(rest.sum() <= cap, "poisson_icdf: more entries need the search than its capacity")
    idx = torch.nonzero_static(rest, size=cap, fill_value=n).squeeze(1)  # n: a padding slot

    def padded(t: torch.Tensor, v: float) -> torch.Tensor:
        return torch.cat([t, t.new_full((1,), v)])

    hi = _search_fixed_steps(padded(k0, 0.0)[idx], padded(lm, 1.0)[idx], padded(uu, 0.5)[idx])
    kk = padded(kk, 0.0).index_put((idx,), hi)[:n]
    return torch.where(active, kk, torch.zeros_like(kk))


def _search_fixed_steps(k: torch.Tensor, lam: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`_poisson_search` with masks instead of compaction and ``_FIXED_STEPS`` steps per phase."""
    below = _poisson_cdf(k, lam) < u
    lo = torch.where(below, k, k - 1.0)
    hi = torch.where(below, k + 1.0, k)
    step = torch.ones_like(k)
    up, down = below, ~below
    for _ in range(_FIXED_STEPS):  # widen: upwards where F(hi) < u, downwards where F(lo) >= u
        up = up & (_poisson_cdf(hi, lam) < u)
        down = down & (lo >= 0) & (_poisson_cdf(lo, lam) >= u)
        lo = torch.where(up, hi, lo)
        hi = torch.where(down, lo, hi)
        step = torch.where(up | down, step * 2.0, step)
        hi = torch.where(up, lo + step, hi)
        lo = torch.where(down, (hi - step).clamp_min(-1.0), lo)
    for _ in range(_FIXED_STEPS):  # bisect
        act = hi - lo > 1
        mid = torch.floor((lo + hi) / 2)
        go_up = _poisson_cdf(mid, lam) < u
        lo = torch.where(act & go_up, mid, lo)
        hi = torch.where(act & ~go_up, mid, hi)
    converged = ~(up | down).any() & (hi - lo <= 1).all()
    torch._assert_async(converged, "poisson_icdf: the fixed-step search did not converge")
    return hi


def poisson_icdf(u: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Poisson quantile ``min{k >= 0 : P(X <= k; lam) >= u}`` in torch (see
    :func:`poisson_icdf_from_normal` for the algorithm and range).

    ``u`` in [0, 1] (``u = 1`` gives ``inf``, as ``scipy.stats.poisson.ppf``),
    ``lam >= 0``; both broadcast.
    """
    u = torch.as_tensor(u)
    lam = torch.as_tensor(lam, device=u.device)
    u, lam = torch.broadcast_tensors(u, lam)
    if not bool(((u >= 0) & (u <= 1)).all()):
        raise ValueError("poisson_icdf: u must be in [0, 1]")
    if not bool(((lam >= 0) & torch.isfinite(lam)).all()):
        raise ValueError("poisson_icdf: lam must be finite and >= 0")
    u64 = u.to(torch.float64)
    one = u64 >= 1.0
    u_in = torch.where(one, torch.zeros_like(u64), u64)
    z = torch.special.ndtri(u_in.clamp_min(1e-300))
    lam_f = lam if lam.is_floating_point() else lam.to(torch.float64)
    k = poisson_icdf_from_normal(z, lam_f, u=u_in)
    return torch.where(one, torch.full_like(k, math.inf), k)


# --------------------------------------------------------------------------------------------
# Gumbel-softmax relaxation of the Poisson distribution (§2.2.3)
# --------------------------------------------------------------------------------------------
def gumbel_softmax_poisson(
    lam: torch.Tensor, categories: int, temperature: float, eps: float = 1e-6,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Approximate Poisson(lam) samples by the straight-through Gumbel-softmax (eqs 2.10–2.12).

    The K = ``categories`` classes are the counts ``0 .. K-1`` with logits
    ``log π_i = i log(lam + eps) - lam - log i!`` (eq 2.10, the un-normalised Poisson
    pmf; the softmax normalises, so this *is* the truncated pmf). With Gumbel(0, 1)
    noise ``g`` the relaxed one-hot is ``y = softmax((log π + g) / τ)`` (eq 2.11).
    Forward value: ``argmax_i y`` (eq 2.12: an exact sample of the Poisson truncated
    to ``{0 .. K-1}``); backward: the gradient of the relaxed expectation
    ``Σ_i i y_i`` (straight-through Gumbel-softmax).
    """
    i = torch.arange(categories, device=lam.device, dtype=lam.dtype)
    lam_ = lam.unsqueeze(-1)
    logits = i * torch.log(lam_ + eps) - lam_ - torch.lgamma(i + 1.0)
    uni = torch.rand(logits.shape, device=lam.device, dtype=lam.dtype, generator=generator)
    g = -torch.log(-torch.log(uni.clamp(1e-20, 1.0 - 1e-7)))
    y = torch.softmax((logits + g) / temperature, dim=-1)
    soft = (y * i).sum(-1)
    hard = y.argmax(-1).to(lam.dtype)
    return soft + (hard - soft).detach()


# --------------------------------------------------------------------------------------------
# functional cores (the modules below are thin wrappers)
# --------------------------------------------------------------------------------------------
def _noise_std(a: torch.Tensor, sigma: float | None, scale: str, eps: float) -> torch.Tensor | float:
    """Per-unit noise standard deviation: the fixed ``sigma``, else ``sqrt(a + eps)`` (``scale`` =
    ``variance``, Fano factor 1) or ``a`` itself (``scale`` = ``std``; no ``eps``: ``σ = a`` has
    gradient 1 everywhere, the thesis adds ε only for the square root)."""
    if sigma is not None:
        return sigma
    return torch.sqrt(a + eps) if scale == "variance" else a


def uncorrelated_gaussian(
    a: torch.Tensor,
    *,
    sigma: float | None = None,
    scale: str = "variance",
    eps: float = 1e-6,
    training: bool = True,
    check_input: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """UG of Dutta (2019) §2.2.1 (eqs 2.3–2.5): ``a + σ ⊙ ξ``, ``ξ ~ N(0, 1)`` i.i.d.; ``a`` if not
    ``training``.

    ``σ`` = ``sigma`` when given, else ``sqrt(a + eps)`` (``scale="variance"``) or ``a``
    (``scale="std"``), re-parameterised so that gradients reach ``a`` through σ.
    See :class:`UncorrelatedGaussian` (the parameters are checked there, not here).
    """
    if not training:
        return a
    if check_input:
        _check_activations(a, "UncorrelatedGaussian")
    if generator is None:
        xi = torch.randn_like(a)
    else:
        xi = torch.randn(a.shape, generator=generator, device=a.device, dtype=a.dtype)
    return a + _noise_std(a, sigma, scale, eps) * xi


def uncorrelated_poisson(
    a: torch.Tensor,
    *,
    relaxation: str = "none",
    categories: int = 16,
    temperature: float = 0.5,
    eps: float = 1e-6,
    training: bool = True,
    check_input: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """UP of Dutta (2019) §2.2.3 (eq 2.9): ``h ~ Poisson(a)`` forward, straight-through backward; ``a``
    if not ``training``. ``relaxation="gumbel"``: :func:`gumbel_softmax_poisson` (eqs 2.10–2.12).
    See :class:`UncorrelatedPoisson`.
    """
    if not training:
        return a
    if check_input:
        _check_activations(a, "UncorrelatedPoisson")
    if relaxation == "gumbel":
        return gumbel_softmax_poisson(a, categories, temperature, eps, generator=generator)
    with torch.no_grad():
        h = torch.poisson(a.detach(), generator=generator)
    return a + (h - a.detach())


def _correlated_normal(a: torch.Tensor, sampler: Any, generator: torch.Generator | None) -> torch.Tensor:
    """``x ~ N(0, Σ)`` of ``a``'s shape from a refreshed sampler (``sample(batch, generator=)``)."""
    x = sampler.sample(a.shape[0], generator=generator)
    return x.to(device=a.device, dtype=a.dtype)


def correlated_gaussian(
    a: torch.Tensor,
    sampler: Any,
    *,
    sigma: float | None = None,
    scale: str = "variance",
    eps: float = 1e-6,
    training: bool = True,
    check_input: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CG of Dutta (2019) §2.2.2 (eqs 2.6–2.8): ``a + σ ⊙ x``, ``x ~ N(0, Σ)``; ``a`` if not ``training``.

    ``sampler`` is a refreshed :class:`~bioreg.layers.correlation.CorrelatedNormalSampler` for
    ``a``'s ``(C, H, W)`` (one fresh draw per image); σ as in :func:`uncorrelated_gaussian`.
    See :class:`CorrelatedGaussian` (which keeps Σ current).
    """
    if not training:
        return a
    if check_input:
        _check_activations(a, "CorrelatedGaussian")
    x = _correlated_normal(a, sampler, generator)
    return a + _noise_std(a, sigma, scale, eps) * x


def correlated_poisson(
    a: torch.Tensor,
    sampler: Any,
    *,
    training: bool = True,
    check_input: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CP of Dutta (2019) §2.2.4 (eq 2.13): Gaussian copula ``F⁻¹_Poisson(Φ(x); a)``, ``x ~ N(0, Σ)``,
    straight-through backward; ``a`` if not ``training``. See :class:`CorrelatedPoisson`.
    """
    if not training:
        return a
    if check_input:
        _check_activations(a, "CorrelatedPoisson")
    x = _correlated_normal(a, sampler, generator)
    with torch.no_grad():
        h = poisson_icdf_from_normal(x, a.detach())
    return a + (h - a.detach())


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class UncorrelatedGaussian(nn.Module):
    """Independent additive Gaussian noise, Dutta (2019) §2.2.1 (eqs 2.3–2.5); wraps
    :func:`uncorrelated_gaussian`.

    Training: ``h = a + σ ⊙ ξ`` with ``ξ ~ N(0, 1)`` i.i.d., re-parameterised so gradients
    reach ``a`` through σ as well. ``scale`` reads the thesis's "σ = a_i":

    * ``"variance"`` (default): ``σ = sqrt(a + eps)``, variance equal to the activation
      (§2.2.1, "σ² = a_i", Fano factor 1; ``eps`` = 1e-6 keeps the square root's gradient
      finite at ``a = 0``);
    * ``"std"``: ``σ = a``, standard deviation equal to the activation (Table 2.1 "σ = a_i",
      §2.4.3 "standard deviation equal to the activation values"); ``eps`` is not used.

    ``sigma`` (>= 0) fixes σ instead (then ``scale`` must stay ``variance``).
    Evaluation: identity (zero-mean noise, no rescaling needed). See ``docs/decisions/noise.md``.
    """

    def __init__(
        self, sigma: float | None = None, eps: float = 1e-6, check_input: bool = True, scale: str = "variance"
    ) -> None:
        super().__init__()
        self.sigma = _check_sigma(sigma)
        self.scale = _check_scale(scale, self.sigma)
        self.eps = _check_eps(eps)
        self.check_input = bool(check_input)

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return uncorrelated_gaussian(a, sigma=self.sigma, scale=self.scale, eps=self.eps,
                                     training=self.training,
                                     check_input=self.check_input)

    def extra_repr(self) -> str:
        return f"sigma={_sigma_repr(self.sigma, self.scale)}, scale={self.scale}, eps={self.eps}"


def _sigma_repr(sigma: float | None, scale: str) -> str:
    if sigma is not None:
        return str(sigma)
    return "sqrt(a+eps)" if scale == "variance" else "a"


class UncorrelatedPoisson(nn.Module):
    """Independent Poisson activations, Dutta (2019) §2.2.3 (eq 2.9); wraps :func:`uncorrelated_poisson`.

    Training: ``h ~ Poisson(a)`` on the forward pass, straight-through gradient
    (backward as if ``h = a``; the thesis sets the unit to its mean on the backward
    pass). With ``relaxation="gumbel"`` the sample is drawn by the straight-through
    Gumbel-softmax of eqs 2.10–2.12 instead, with ``categories`` K (counts 0..K-1,
    K >= 2) and ``temperature`` τ > 0 (τ only shapes the backward pass).
    Evaluation: identity. No ``scale`` option: eq 2.9 fixes the rate λ = a, and a Poisson's
    variance equals its mean, so there is no σ to read as a variance or a standard deviation
    (``docs/decisions/noise.md``).
    """

    _RELAX = ("none", "gumbel")

    def __init__(
        self,
        relaxation: str = "none",
        categories: int = 16,
        temperature: float = 0.5,
        eps: float = 1e-6,
        check_input: bool = True,
    ) -> None:
        super().__init__()
        if relaxation not in self._RELAX:
            raise RegularizerConfigError(f"relaxation must be one of {self._RELAX}, got {relaxation!r}")
        if isinstance(categories, bool) or not isinstance(categories, int) or categories < 2:
            raise RegularizerConfigError(
                f"categories (K of the Gumbel-softmax, eq 2.10) must be an integer >= 2, got {categories!r}"
            )
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise RegularizerConfigError(
                "temperature (τ of the Gumbel-softmax, eq 2.11) must be a finite number > 0, got "
                f"{temperature!r}"
            )
        self.relaxation = relaxation
        self.categories = int(categories)
        self.temperature = float(temperature)
        self.eps = _check_eps(eps)
        self.check_input = bool(check_input)

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return uncorrelated_poisson(a, relaxation=self.relaxation, categories=self.categories,
                                    temperature=self.temperature, eps=self.eps, training=self.training,
                                    check_input=self.check_input)

    def extra_repr(self) -> str:
        if self.relaxation == "gumbel":
            return f"relaxation=gumbel, categories={self.categories}, temperature={self.temperature}"
        return "relaxation=none"


class _Correlated(nn.Module):
    """Shared part of CG and CP: Σ from eq 2.14 with the producing conv's live kernels.

    ``bind(ctx)`` (called by :func:`bioreg.lit.module.place_regularizers`) resolves
    ``distance_scale`` and builds the sampler for the activation shape ``(C, H, W)`` of
    the point; Σ is recomputed from the live kernel (no grad) on the first training-mode
    forward call and then every ``refresh_every``-th training-mode forward call (one call
    = one training step in ordinary training; the count is the module's own, not
    ``ctx.state.global_step``, so it also works outside a Trainer and under gradient
    accumulation). The noise itself is the functional core (:func:`correlated_gaussian`,
    :func:`correlated_poisson`) applied with the refreshed sampler.

    ``distance_scale`` (the "scaled Euclidean distance" of eq 2.14, ``d = scale · eq 2.15``):
    ``"grid"`` (default) = 1, distances in units of the layer's own feature-map grid (eq 2.15
    as printed); ``"input"`` = the layer's cumulative stride (``ctx.cumulative_stride``), i.e.
    distances in input pixels, so that ``b`` means the same decay at every depth; or a number
    > 0. At layer 1 of the thesis's AllConvNet (stride 1) the two names give the same Σ.
    ``resolved_distance_scale`` is the number in use after ``bind`` (``docs/decisions/correlation.md``).
    """

    who = "correlated noise"

    def __init__(
        self,
        a: float = 0.225,
        b: float = 0.0043,
        c: float = 0.09,
        tau: float = 1.87,
        distance_scale: float | str = "grid",
        sampler: str = "structured",
        ncm_method: str = "higham",
        refresh_every: int = 1,
        eps: float = 1e-6,
        check_input: bool = True,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLER_KINDS:
            raise RegularizerConfigError(f"sampler must be one of {SAMPLER_KINDS}, got {sampler!r}")
        if ncm_method not in REPAIR_METHODS:
            raise RegularizerConfigError(f"ncm_method must be one of {REPAIR_METHODS}, got {ncm_method!r}")
        if ncm_method == "cvxpy":
            require_extra("cvxpy", "cvxpy", "ncm_method=cvxpy")
        self.distance_scale = check_distance_scale(distance_scale)
        # validates eq 2.14's parameters (a, b >= 0, c in [0, 1], tau > 0, distance_scale > 0); a named
        # scale is resolved to its number in bind()
        scale0 = self.distance_scale if isinstance(self.distance_scale, float) else 1.0
        self.params = CorrelationParams(a=a, b=b, c=c, tau=tau, distance_scale=scale0)
        self.sampler_kind = sampler
        self.ncm_method = ncm_method
        self.refresh_every = _check_refresh_every(refresh_every)
        self.eps = _check_eps(eps)
        self.check_input = bool(check_input)
        self.ctx: InsertionContext | None = None
        self.sampler: Any = None
        self.calls = 0  # training-mode forward calls so far
        self.refreshes = 0

    @property
    def resolved_distance_scale(self) -> float:
        """The number ``d`` is scaled by (eq 2.14); a named scale is resolved by :meth:`bind`."""
        return self.params.distance_scale

    # -- context
    def bind(self, ctx: InsertionContext) -> None:
        ctx.producer_weight(f"{type(self).__name__} ({self.who}, tuning similarity eq 2.16)")
        shape = tuple(int(s) for s in ctx.shape)
        if len(shape) != 3:
            raise RegularizerConfigError(
                f"{type(self).__name__} needs convolutional activations (C, H, W) at point {ctx.point!r}, "
                f"got shape {shape}"
            )
        n = shape[0] * shape[1] * shape[2]
        if self.sampler_kind == "dense" and n > DENSE_MAX_UNITS:
            gib = 2 * n * n * 4 / 2**30
            raise RegularizerConfigError(
                f"sampler=dense at point {ctx.point!r}: the layer has n = {n} units > {DENSE_MAX_UNITS}, "
                f"a dense Σ and its Cholesky factor would need {gib:.1f} GiB; use sampler=structured "
                f"(e.g. reg.<entry>.sampler=structured)"
            )
        scale = resolve_distance_scale(self.distance_scale, ctx,
                                       f"{type(self).__name__} (distance_scale=input)")
        self.params = dataclasses.replace(self.params, distance_scale=scale)
        self.ctx = ctx
        self.sampler = build_sampler(self.sampler_kind, shape, self.params, ncm_method=self.ncm_method)
        self.calls = 0

    def _producer_weight(self) -> torch.Tensor:
        assert self.ctx is not None
        return self.ctx.producer_weight(type(self).__name__)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute Σ (eq 2.14) from the producing convolution's current kernel."""
        if self.sampler is None:
            raise RuntimeError(f"{type(self).__name__} is not bound; place it with place_regularizers() "
                               "or call bind(ctx) first")
        self.sampler.refresh(self._producer_weight().detach())
        self.refreshes += 1

    def _ready_sampler(self, a: torch.Tensor) -> Any:
        """The bound sampler, Σ refreshed on schedule, after checking ``a``'s shape (training mode)."""
        if self.sampler is None:
            raise RuntimeError(f"{type(self).__name__} is not bound; place it with place_regularizers() "
                               "or call bind(ctx) first")
        assert self.ctx is not None
        if tuple(a.shape[1:]) != tuple(self.ctx.shape):
            raise RegularizerConfigError(
                f"{type(self).__name__} was bound to activations of shape {tuple(self.ctx.shape)} at point "
                f"{self.ctx.point!r} but received {tuple(a.shape[1:])}"
            )
        if not self.ctx.state.graph_safe:  # else prepare_step() did it, before the compiled forward
            self.prepare_step()
        return self.sampler

    def prepare_step(self) -> None:
        """Count one training step and refresh Σ on schedule (host work: eigendecomposition of T).
        Called by the forward itself, or in graph-safe mode by the LitClassifier before the forward."""
        if self.calls % self.refresh_every == 0:
            self.refresh()
        self.calls += 1

    def extra_repr(self) -> str:
        p = ", ".join(f"{k}={getattr(self.params, k)}" for k in ("a", "b", "c", "tau"))
        ds = self.distance_scale if isinstance(self.distance_scale, float) else (
            f"{self.distance_scale}({self.params.distance_scale:g})" if self.ctx is not None
            else self.distance_scale)
        return (f"{p}, distance_scale={ds}, sampler={self.sampler_kind}, ncm_method={self.ncm_method}, "
                f"refresh_every={self.refresh_every}")


class CorrelatedGaussian(_Correlated):
    """Correlated additive Gaussian noise, Dutta (2019) §2.2.2 and §2.3 (eqs 2.6–2.8, 2.14); wraps
    :func:`correlated_gaussian`.

    Training: ``h = a + σ ⊙ x`` with ``x ~ N(0, Σ)`` (unit variances, correlation Σ
    of eq 2.14 over all ``C·H·W`` units of the layer: spatial distance eq 2.15,
    tuning similarity eq 2.16 of the producing convolution's live kernels, nearest
    correlation matrix §2.3.3), i.e. ``z = diag(σ) L x₀`` (eq 2.8, μ = 0). σ as in
    :class:`UncorrelatedGaussian`: ``sqrt(a + eps)`` (``scale: variance``, default), ``a``
    (``scale: std``) or a fixed ``sigma``.
    Gradients reach ``a`` (and so the producing conv) through the mean and σ;
    Σ itself is refreshed without gradient. Evaluation: identity.

    Parameters: ``a, b, c, tau`` (eq 2.14; defaults of Fig 2.3), ``distance_scale``
    (``grid`` | ``input`` | a number, see :class:`_Correlated`), ``sampler`` (``structured`` |
    ``dense``), ``ncm_method`` (repair of an invalid Σ: ``higham`` -- default, the nearest
    correlation matrix of eq 2.17 --, ``cvxpy`` (eq 2.17 by an SDP solver), ``clip``, or
    ``spectral``, the fast structured repair; see :mod:`bioreg.layers.correlation` for what
    each sampler does with them), ``refresh_every``, ``eps``, ``sigma``, ``scale``.
    """

    who = "correlated Gaussian noise"

    def __init__(self, *args: Any, sigma: float | None = None, scale: str = "variance",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sigma = _check_sigma(sigma)
        self.scale = _check_scale(scale, self.sigma)

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        return correlated_gaussian(a, self._ready_sampler(a), sigma=self.sigma, scale=self.scale,
                                   eps=self.eps,
                                   training=True, check_input=self.check_input)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={_sigma_repr(self.sigma, self.scale)}, scale={self.scale}"


class CorrelatedPoisson(_Correlated):
    """Correlated Poisson activations by a Gaussian copula, Dutta (2019) §2.2.4 (eq 2.13); wraps
    :func:`correlated_poisson`.

    Training: ``x ~ N(0, Σ)`` (same Σ and samplers as :class:`CorrelatedGaussian`),
    ``u = Φ(x)``, ``h = F⁻¹_Poisson(u; λ = a)`` (:func:`poisson_icdf_from_normal`,
    exact, on the tensor's device); each unit is marginally Poisson(a) and pairs are
    correlated, less than Σ (Fig 2.2). Straight-through gradient: backward as if
    ``h = a``. Evaluation: identity. No ``scale`` option (see :class:`UncorrelatedPoisson`).
    """

    who = "correlated Poisson noise"

    @float32_internals  # internals in float32 under bf16 autocast (layers/base.py)
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        return correlated_poisson(a, self._ready_sampler(a), training=True, check_input=self.check_input)
