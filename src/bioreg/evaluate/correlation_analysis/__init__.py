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

The package, by concern (every name below is importable from ``bioreg.evaluate.correlation_analysis``):

* :mod:`.common` — choices, :class:`AnalysisError`, option checks, eq 3.3's index map, λ, layers;
* :mod:`.collect` — the fixed images and partners, the forward passes, ``Zᵀ`` (:class:`Blocks`);
* :mod:`.reduce` — the tiled product and its reduction (:class:`TiledReducer`);
* :mod:`.smooth` — the bins (:class:`LayerBins`) and the smoother of eq 3.6;
* :mod:`.linear_exponential` — Table 3.2's "Linear Exponential" column from eq 2.14;
* :mod:`.analysis` — one layer end to end, the evaluator, the checkpoint check;
* :mod:`.bins_io` — the bins file beside the record;
* :mod:`.reference` — dense ``N × N`` references for small layers (tests, benchmark).
"""

from __future__ import annotations

from bioreg.evaluate.correlation_analysis.analysis import (
    CorrelationAnalysis,
    LayerResult,
    analyse_layer,
    check_checkpoint_model,
    load_test_images,
)
from bioreg.evaluate.correlation_analysis.bins_io import load_bins, save_bins
from bioreg.evaluate.correlation_analysis.collect import Blocks, collect_blocks, draw_inputs, zscore_block
from bioreg.evaluate.correlation_analysis.common import (
    DISTANCE_SCALES,
    KERNELS,
    THESIS_LAYERS,
    ZERO_VARIANCE,
    AnalysisError,
    OffDiagStats,
    cumulative_stride,
    mix_lambdas,
    resolve_layer,
    unit_coords,
    valid_layers,
)
from bioreg.evaluate.correlation_analysis.linear_exponential import linear_exponential_stats
from bioreg.evaluate.correlation_analysis.reduce import TiledReducer, distance_index
from bioreg.evaluate.correlation_analysis.reference import naive_pairs, naive_sigma_prime, offdiag_stats
from bioreg.evaluate.correlation_analysis.smooth import LayerBins, nadaraya_watson, smooth_grid

__all__ = [
    "AnalysisError", "ZERO_VARIANCE", "KERNELS", "THESIS_LAYERS", "DISTANCE_SCALES", "unit_coords",
    "mix_lambdas", "draw_inputs", "naive_sigma_prime", "naive_pairs", "zscore_block", "save_bins",
    "load_bins", "valid_layers", "resolve_layer", "cumulative_stride", "collect_blocks", "Blocks",
    "TiledReducer", "distance_index", "OffDiagStats", "LayerBins", "load_test_images", "nadaraya_watson",
    "smooth_grid", "linear_exponential_stats", "offdiag_stats", "analyse_layer", "LayerResult",
    "CorrelationAnalysis", "check_checkpoint_model",
]
