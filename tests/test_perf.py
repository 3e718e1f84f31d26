"""bioreg.lit.perf: channels_last and compile leave the network's function and checkpoint keys unchanged."""

from __future__ import annotations

import pytest
import torch

from bioreg.lit.module import Classifier, place_regularizers
from bioreg.lit.perf import configure_performance
from bioreg.models.allconvnet import AllConvNet


def small_model() -> Classifier:
    torch.manual_seed(0)
    net = AllConvNet(num_classes=10, width=8, width2=8, layer1_width=4)
    place_regularizers(net, {"no": {"at": "layer2", "_target_": "bioreg.layers.normout.NormOut"}},
                       (3, 16, 16))
    return Classifier(net, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.slow  # TorchDynamo's graph capture takes tens of seconds on the shared CPU
def test_channels_last_and_compile_keep_outputs_and_state_dict_keys():
    ref = small_model().eval()
    model = small_model().eval()
    keys = list(model.state_dict())
    configure_performance(model, channels_last=True, compile="eager")  # graph capture, no code generation
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == keys  # in-place compile: no `_orig_mod.` prefix in checkpoints
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5, rtol=1e-5)


def test_defaults_change_nothing():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    configure_performance(model)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous() and all(torch.equal(before[k], v)
                                               for k, v in model.state_dict().items())


@pytest.mark.parametrize("value,expected", [(False, False), ("false", False), (True, True), ("true", True),
                                            ("reduce-overhead", "reduce-overhead"), ("eager", "eager"),
                                            ("aot_eager", "aot_eager"), (None, False)])
def test_compile_values(value, expected):
    from bioreg.lit.perf import check_compile

    assert check_compile(value) == expected


@pytest.mark.parametrize("bad", ["reduce_overhead", "cudagraphs-please", 3])
def test_a_bad_compile_value_is_one_error_naming_the_choices(bad):
    from bioreg.errors import UserError
    from bioreg.lit.perf import check_compile

    with pytest.raises(UserError, match=r"trainer.compile must be false, true, an Inductor mode \(default, "
                                        r"reduce-overhead, max-autotune.*aot_eager.*got"):
        check_compile(bad)


def test_compiling_switches_the_model_to_graph_safe_mode_and_keeps_plain_optimizers_off_the_gpu():
    from bioreg.layers.base import TrainingState
    from bioreg.lit.perf import fused_if_possible

    model = small_model()
    model.state = TrainingState()
    configure_performance(model, compile="eager")
    assert model.state.graph_safe
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert fused_if_possible(opt) is opt  # CPU parameters: PyTorch's fused SGD is for GPUs
