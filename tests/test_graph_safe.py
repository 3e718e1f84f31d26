"""Graph-safe training steps (issue 18): the two host syncs are gone and the numbers are unchanged.

* ``most_similar_maps`` (CorrDrop, SpatialDropoutMod) without ``torch.unique``, and the Σ refresh
  without reading the clipped-eigenvalue count back, give the very same tensors as the code before
  (frozen in ``tests/helpers/pre_graph_safe.py``) under the same seed;
* a refresh on the ``meta`` device (where any host read raises) shows that nothing is read back.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from bioreg.layers.correlation import CorrelationParams, DenseSampler, StructuredSampler, correlation_matrix
from bioreg.layers.dropout import most_similar_maps
from helpers.pre_graph_safe import StructuredSamplerV0, most_similar_maps_v0, spectral_parts_v0

pytestmark = pytest.mark.usefixtures("one_thread")

# a + c > 1 (negative diagonal slack): Sigma always needs the repair (some eigenvalues clipped)
REPAIRED = CorrelationParams(a=0.95, b=0.05, c=0.1)


@pytest.mark.parametrize("n,c,k", [(6, 16, 5), (40, 8, 4), (128, 64, 32), (3, 3, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_most_similar_maps_equals_the_unique_version(n: int, c: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(c, 3, 3, 3, generator=g)
    weight[1] = weight[0]  # an exact tie, broken by the random order of the maps
    chosen = torch.randint(c, (n,), generator=g)
    chosen[: n // 2] = chosen[0]  # repeated maps: what unique() used to merge
    new = most_similar_maps(weight, chosen, k, generator=torch.Generator().manual_seed(seed + 10))
    old = most_similar_maps_v0(weight, chosen, k, generator=torch.Generator().manual_seed(seed + 10))
    assert torch.equal(new, old)
    assert torch.equal(new[:, 0], chosen)


@pytest.mark.parametrize("params", [REPAIRED, CorrelationParams()])
def test_dense_spectral_refresh_equals_the_readback_version(params: CorrelationParams) -> None:
    torch.manual_seed(3)
    weight = torch.randn(6, 3, 3, 3)
    sampler = DenseSampler((6, 7, 7), params, "spectral")
    sampler.refresh(weight)
    f, shared, n_clipped = spectral_parts_v0(correlation_matrix(weight, 7, 7, params), params.c)
    assert sampler.n_clipped == n_clipped and sampler.repaired == (n_clipped > 0)
    assert torch.equal(sampler._factor, f)
    assert (shared is None) == (sampler._shared is None)
    if shared is not None:
        assert torch.equal(sampler._shared, shared)
    assert REPAIRED is not params or n_clipped > 0  # the repaired case is exercised


@pytest.mark.parametrize("method,max_units", [("spectral", 4096), ("higham", 10)])
@pytest.mark.parametrize("seed", [0, 5])
def test_structured_refresh_and_sample_equal_the_readback_version(method: str, max_units: int, seed: int) -> None:
    torch.manual_seed(seed)
    weight = torch.randn(6, 3, 3, 3)
    new = StructuredSampler((6, 7, 7), REPAIRED, method, ncm_max_units=max_units)
    old = StructuredSamplerV0((6, 7, 7), REPAIRED, method, ncm_max_units=max_units)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the spectral fallback of higham above max_units
        new.refresh(weight)
    old.refresh(weight)
    assert new.n_clipped > 0 and new.repaired and new.repair_used == "spectral"
    torch.manual_seed(seed + 100)
    a = new.sample(5)
    torch.manual_seed(seed + 100)
    b = old.sample(5)
    assert torch.equal(a, b)


def test_structured_refresh_reads_nothing_back() -> None:
    """On ``meta`` every host read (item, bool, int, float) raises: the refresh and the sample of the
    default repair (higham, spectral fallback above ncm_max_units) must get through. The first refresh
    looks for the fallback warning once, on the CPU here."""
    sampler = StructuredSampler((6, 5, 5), REPAIRED, "higham", ncm_max_units=10)
    with pytest.warns(RuntimeWarning, match="spectral repair"):
        sampler.refresh(torch.randn(6, 3, 3, 3))
    for _ in range(2):
        sampler.refresh(torch.randn(6, 3, 3, 3, device="meta"))
        assert sampler.sample(3).shape == (3, 6, 5, 5)
    with pytest.raises(RuntimeError, match="meta"):
        _ = sampler.n_clipped  # the count is there, on the device, until someone asks for it
    spectral = StructuredSampler((6, 5, 5), REPAIRED, "spectral")
    spectral.refresh(torch.randn(6, 3, 3, 3, device="meta"))
    assert spectral.sample(2).device.type == "meta"
