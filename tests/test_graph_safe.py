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
def test_structured_refresh_and_sample_equal_the_readback_version(
    method: str, max_units: int, seed: int
) -> None:
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


# ------------------------------------------------------------------------------------------------
# The training forward of every regularizer: one graph, the same one at every step
# ------------------------------------------------------------------------------------------------

from bioreg.layers.base import prepare_step  # noqa: E402
from bioreg.layers.noise import _icdf_fixed_shapes, poisson_icdf_from_normal  # noqa: E402
from bioreg.lit.module import check_mix_applied  # noqa: E402
from helpers.configs import CONF, compose  # noqa: E402

#: every conf/reg option, placed in a model it fits (at its default points, as the experiments use
#: them); options of one group are placed together (their entries renamed apart) and traced at once
REG_GROUPS = [
    ("allconvnet", ("none", "ug", "up", "cg", "cp", "allconv_dropout")),
    ("vgg11", ("dropout", "spatialdropout", "spatialdropoutmod", "dropblock", "dropblockrandom", "corrdrop",
               "mixup")),
    ("vgg11", ("manifold_mixup",)),  # one batch mixer per model
    ("vgg16", ("dropout_48_51", "normout_spatial_softmax", "normout_spatialmax",
               "normout_spatiotemporal_softmax", "normout_spatiotemporalmax", "normout_temporal_softmax",
               "normout_temporalmax")),
    ("resnet20", ("pushpull",)),  # replacements of the same convolutions: one option per model
    ("resnet20", ("pushpull_layer1",)),
    ("resnet20", ("pushpull_all",)),
]
#: the noise modules need activations >= 0 (after a ReLU): one per point when placed together
MOVED = {"up": "layer2", "cg": "layer4", "cp": "layer5"}


def test_every_reg_option_is_traced() -> None:
    traced = [o for _, options in REG_GROUPS for o in options]
    assert sorted(traced) == sorted(p.stem for p in (CONF / "reg").glob("*.yaml"))


def _lit_regs(model: str, overrides: tuple[str, ...], reg: dict | None = None):
    """A LitClassifier of ``model`` (digits data) in graph-safe mode, training; ``reg`` replaces the
    composed ``reg`` when given."""
    from omegaconf import OmegaConf

    from bioreg.errors import instantiate
    from bioreg.lit.module import LitClassifier

    cfg = compose([f"model={model}", "data=digits", *overrides])
    dm = instantiate(cfg.data)
    reg = OmegaConf.to_container(cfg.reg, resolve=True) if reg is None else reg
    net = instantiate(cfg.model)
    lit = LitClassifier(net, dm.mean, dm.std, dict(lr=0.1), reg=reg, input_shape=dm.input_shape)
    lit.state.graph_safe = True
    return lit.train()


def _group_lit(model: str, options: tuple[str, ...]):
    from omegaconf import OmegaConf

    if len(options) == 1:  # as composed (interpolations between entries resolved by Hydra)
        return _lit_regs(model, (f"reg={options[0]}",))
    reg = {}
    for option in options:
        entries = OmegaConf.to_container(OmegaConf.load(CONF / "reg" / f"{option}.yaml"), resolve=True) or {}
        for entry in entries.values():
            entry["at"] = MOVED.get(option, entry["at"])
        reg.update({f"{option}_{name}": entry for name, entry in entries.items()})
    return _lit_regs(model, (), reg)


def _graph_step(lit, x: torch.Tensor, epoch: int, fwd) -> torch.Tensor:
    """One training forward as the LitClassifier runs it in graph-safe mode (without a Trainer)."""
    lit.state.epoch, lit.state.max_epochs = epoch, 4  # DropBlock's schedule moves every epoch
    prepare_step(list(lit.model.modules()))
    plan = None
    if lit._mixer is not None:
        plan = lit.state.mix = lit._mixer.plan_mix(len(x)).with_tensors(x.device)
    try:
        out = fwd(x)
    finally:
        lit.state.mix = None
    if plan is not None:
        check_mix_applied(plan, len(lit._mixer.points))
    return out


@pytest.mark.parametrize("model,options", REG_GROUPS, ids=[f"{m}-{o[0]}" for m, o in REG_GROUPS])
def test_training_forward_is_one_graph_at_every_step(model: str, options: tuple[str, ...]) -> None:
    """``fullgraph=True`` fails on any graph break; the counting backend shows that the changing
    per-step values (Σ, the DropBlock schedule, mixup's λ and point) cause no recompilation."""
    from torch._dynamo.testing import CompileCounter

    lit = _group_lit(model, options)
    torch._dynamo.reset()
    counter = CompileCounter()
    fwd = torch.compile(lit.model, backend=counter, fullgraph=True)
    x = torch.rand(4, 3, 32, 32)
    for epoch in range(3):
        assert _graph_step(lit, x, epoch, fwd).shape == (4, 10)
    assert counter.frame_count == 1, f"{options}: recompiled {counter.frame_count - 1} times"
    torch._dynamo.reset()


def test_graph_safe_mixing_gives_the_eager_numbers() -> None:
    """In graph-safe mode every tap blends with torch.where: float32, the same tensor as the eager mix."""
    from bioreg.layers.base import MixPlan

    torch.manual_seed(0)
    a = torch.randn(6, 4, 5, 5)
    plan = MixPlan(lam=0.3141, perm=torch.randperm(6), point="layer2", index=2).with_tensors("cpu")
    assert torch.equal(plan.mix_at(a, 2), MixPlan(0.3141, plan.perm, "layer2").mix(a))
    assert torch.equal(plan.mix_at(a, 1), a)


@pytest.mark.parametrize("scale", [0.03, 3.0, 300.0])
def test_fixed_shape_poisson_quantile_equals_the_compacted_one(scale: float) -> None:
    """The compiled step's Poisson quantile (fixed shapes, masked search) gives the same integers;
    zeros, extreme normal scores and small rates (the ones that need the search) included."""
    g = torch.Generator().manual_seed(7)
    lam = torch.rand(20000, generator=g, dtype=torch.float64) * scale
    lam[::5] = 0.0
    x = torch.randn(20000, generator=g, dtype=torch.float64)  # marginally N(0, 1), as the copula draws
    x[:50] = torch.linspace(-8.2, 8.2, 50, dtype=torch.float64)
    z = x.clamp(-8.2, 8.2)
    k_fixed = _icdf_fixed_shapes(lam, z, torch.special.ndtr(z))
    assert torch.equal(k_fixed, poisson_icdf_from_normal(x, lam))


def test_fixed_shape_poisson_quantile_refuses_more_searches_than_its_capacity() -> None:
    lam = torch.full((4000,), 1e-3, dtype=torch.float64)
    z = torch.full((4000,), 6.0, dtype=torch.float64)  # every start off by more than one
    with pytest.raises(RuntimeError, match="capacity"):
        _icdf_fixed_shapes(lam, z, torch.special.ndtr(z))


def _two_steps(lit, fwd, seed: int) -> tuple[list[float], list[torch.Tensor]]:
    """Two SGD steps (forward through ``fwd``, backward, update) in graph-safe mode; losses and weights."""
    from bioreg.lit.module import mixed_loss

    params = [p for p in lit.model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(99)
    x, y = torch.rand(8, 3, 32, 32, generator=g), torch.randint(10, (8,), generator=g)
    torch.manual_seed(seed)
    losses = []
    for epoch in range(2):
        lit.state.epoch, lit.state.max_epochs = epoch + 1, 4
        prepare_step(list(lit.model.modules()))
        plan = lit.state.mix = lit._mixer.plan_mix(len(x)).with_tensors("cpu") if lit._mixer else None
        loss, _ = mixed_loss(fwd(x), y, plan)
        lit.state.mix = None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses, [p.detach().clone() for p in params]


@pytest.mark.slow  # compiles forward and backward (AOTAutograd) of two networks: ~1 min on the CPU
@pytest.mark.parametrize("model,regs", [
    ("allconvnet_small", ("reg=[cg,cp,allconv_dropout]", "reg.cp.at=layer4")),
    ("vgg11", ("reg=[corrdrop,dropblockrandom,manifold_mixup]", "reg.dropblockrandom.at=layer3")),
])
def test_fullgraph_training_steps_match_eager(model: str, regs: tuple[str, ...]) -> None:
    """Forward and backward compiled whole (``fullgraph=True``, AOTAutograd, backend ``aot_eager``:
    the graphs PyTorch's compilers see, run by eager kernels) train like the eager graph-safe code:
    the same random draws in the same order, so losses and weights agree to 1e-5 (relative)."""
    torch.manual_seed(0)
    eager = _lit_regs(model, regs)
    torch.manual_seed(0)
    compiled = _lit_regs(model, regs)
    torch._dynamo.reset()
    fwd = torch.compile(compiled.model, backend="aot_eager", fullgraph=True)
    loss_e, w_e = _two_steps(eager, eager.model, seed=5)
    loss_c, w_c = _two_steps(compiled, fwd, seed=5)
    torch._dynamo.reset()
    assert loss_c == pytest.approx(loss_e, rel=1e-5)
    for a, b in zip(w_c, w_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # two Lightning training steps of a compiled (aot_eager) network: ~1 min on the CPU
def test_lightning_trains_a_compiled_network_in_graph_safe_mode() -> None:
    """trainer.compile through the real path (configure_performance, the Trainer, the LitClassifier's
    prepare_step before every step): CG's Σ is refreshed once per step, DropBlock's p_now follows the
    schedule, manifold mixup blends by tensors; the loss is finite."""
    import lightning as L

    from bioreg.app.build import build
    from bioreg.lit.perf import configure_performance

    torch.manual_seed(0)
    dm, lit = build(compose(["model=allconvnet_small", "data=digits", "optim=adam",
                             "reg=[cg,dropblock,manifold_mixup]", "reg.dropblock.at=layer4"]))
    configure_performance(lit, compile="aot_eager")
    assert lit.state.graph_safe
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(lit, datamodule=dm)
    cg = next(m for m in lit.modules() if type(m).__name__ == "CorrelatedGaussian")
    drop = next(m for m in lit.modules() if type(m).__name__ == "DropBlock")
    assert cg.refreshes == cg.calls == 4  # prepare_step: one refresh per training step
    assert float(drop.p_now) == pytest.approx(drop.current_drop_prob()) and drop.current_drop_prob() > 0
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["train/loss"])))
