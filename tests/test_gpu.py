"""GPU-only checks (``pytest -m gpu``; skipped without CUDA), run by ``make gpu-check`` on a GPU node.

Only core dependencies are imported here (no scipy, no scikit-learn), so that the check runs on a
node that has just PyTorch and the wheelhouse.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REG = {
    "cg": {"at": "layer1", "_target_": "bioreg.layers.noise.CorrelatedGaussian", "ncm_method": "spectral"},
    "cp": {"at": "layer4", "_target_": "bioreg.layers.noise.CorrelatedPoisson", "ncm_method": "spectral"},
    "corrdrop": {"at": "layer2", "_target_": "bioreg.layers.dropout.CorrDrop"},
    "sdm": {"at": "layer5", "_target_": "bioreg.layers.dropout.SpatialDropoutMod", "p": 0.3},
    "mix": {"at": "all", "_target_": "bioreg.layers.mixup.ManifoldMixup"},
}


def _lit(compile_mode: bool | str = False):
    from bioreg.lit.module import LitClassifier
    from bioreg.lit.perf import configure_performance
    from bioreg.models import AllConvNet

    torch.manual_seed(0)
    net = AllConvNet(num_classes=10, width=32, width2=48, layer1_width=16)
    lit = LitClassifier(net, (0.5,) * 3, (0.25,) * 3, {"name": "sgd", "lr": 0.01, "momentum": 0.9}, reg=REG)
    lit.state.epoch, lit.state.max_epochs = 2, 4
    lit = lit.cuda().train()
    configure_performance(lit, channels_last=True, compile=compile_mode)
    lit.state.graph_safe = True
    return lit


def _step(lit, opt, x, y):
    from bioreg.lit.module import check_mix_applied, mixed_loss

    plan = lit.state.mix = lit._mixer.plan_mix(len(y), y.device).with_tensors(y.device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = mixed_loss(lit.model(x), y, plan)
    lit.state.mix = None
    check_mix_applied(plan, len(lit._mixer.points))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def test_graph_safe_regularizer_steps_do_not_sync_with_the_host():
    """CG, CP, CorrDrop, SpatialDropoutMod and manifold mixup in graph-safe mode: forward, backward and
    the optimizer step read nothing back (the Σ refresh, prepare_step, runs before, outside the check)."""
    from bioreg.layers.base import prepare_step
    from bioreg.lit.perf import fused_if_possible

    lit = _lit()
    opt = fused_if_possible(torch.optim.SGD(lit.model.parameters(), lr=0.01, momentum=0.9))
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(64, 3, 32, 32, device="cuda", generator=g)
    y = torch.randint(0, 10, (64,), device="cuda", generator=g)
    prepare_step(list(lit.model.modules()))
    _step(lit, opt, x, y)  # warm-up: lazy CUDA initialisation, cuDNN
    torch.cuda.synchronize()
    for _ in range(3):
        prepare_step(list(lit.model.modules()))  # host work of the step (eigendecomposition of T)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            _step(lit, opt, x, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_reduce_overhead_steps_replay_cuda_graphs():
    """trainer.compile=reduce-overhead: the whole forward and backward of the regularized network compile
    without a graph break and are replayed as CUDA graphs (no skipped graph), the loss stays finite."""
    from torch._dynamo.utils import counters

    from bioreg.layers.base import prepare_step

    counters.clear()
    lit = _lit("reduce-overhead")
    opt = torch.optim.SGD(lit.model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(64, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    losses = []
    for _ in range(5):
        prepare_step(list(lit.model.modules()))
        loss = _step(lit, opt, x, y)
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not counters["inductor"].get("cudagraph_skips"), dict(counters["inductor"])
    assert counters["stats"]["unique_graphs"] >= 1
    assert not counters["graph_break"], dict(counters["graph_break"])
