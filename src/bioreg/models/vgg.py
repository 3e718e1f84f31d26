"""VGG networks of the two theses.

* :class:`VGG11` — Table 3.1 of Dutta (2019): eight 3x3 conv layers with
  BatchNorm and ReLU, five 2x2 max-pools and a single 512x10 linear head, with
  the thesis's *layer numbering that counts pooling layers*: conv layers are
  1, 3, 5, 6, 8, 9, 11, 12 and pools are 2, 4, 7, 10, 13; layer 14 is the head.
* :class:`VGG16` — Singh (2023) §2.3.1: torchvision's ``vgg16_bn`` with the
  25088→4096→4096→10 classifier, laid out as one flat ``nn.Sequential``
  (``layers``) so that its indices are exactly the "layer indices" the thesis
  prints: 0–43 ``features``, 44 ``avgpool``, 45 ``Flatten``, 46 Linear, 47 ReLU,
  **48** dropout slot, 49 Linear, 50 ReLU, **51** dropout slot, 52 Linear.
  The slots are ``nn.Identity`` (the thesis's baseline has no dropout); the
  Dropout/NormOut experiments insert their module at points ``48``/``51``.
  Every index ``i`` is an insertion point ``"i"`` ("after module i"); the
  indices inside ``features`` are also reachable as ``features.i``.
  The thesis swaps ReLU and Dropout in its baseline "to log sparsity" but prints
  ReLU at 47 and Dropout at 48; we follow the printed indices, so modules at 48
  and 51 see post-ReLU activations (docs/decisions.md).
  ``init``: ``torchvision`` (default) keeps ``vgg16_bn``'s initialisation (Kaiming-normal
  fan-out convolutions with zero bias, N(0, 0.01) linear layers, BatchNorm 1/0); ``default``
  resets every layer to PyTorch's own (``reset_parameters``), which is what the Singh authors'
  model had: it builds ``nn.Conv2d``/``nn.Linear``/``nn.BatchNorm2d`` directly
  (docs/decisions/protocols.md).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg16_bn

from bioreg.errors import ConfigError
from bioreg.models.points import Point

__all__ = ["VGG11", "VGG16", "VGG16_INITS"]

#: initialisations of :class:`VGG16`
VGG16_INITS = ("torchvision", "default")

_VGG11_PLAN: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=False)


class VGG11(nn.Module):
    """VGG-11 of Dutta (2019) Table 3.1. Points: ``input``, ``layer1`` … ``layer13``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.input = nn.Identity()
        cin = in_channels
        self._kinds: dict[int, str] = {}
        for i, v in enumerate(_VGG11_PLAN, start=1):
            if v == "M":
                setattr(self, f"layer{i}", nn.MaxPool2d(2, 2))
                self._kinds[i] = "pool"
            else:
                setattr(self, f"layer{i}", ConvBNReLU(cin, int(v)))
                self._kinds[i] = "conv"
                cin = int(v)
        self.flatten = nn.Flatten()
        self.layer14 = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @staticmethod
    def points() -> dict[str, Point]:
        pts = {"input": Point(tap="input", doc="the (normalised) input image")}
        last_conv = None
        for i, v in enumerate(_VGG11_PLAN, start=1):
            if v == "M":
                pts[f"layer{i}"] = Point(tap=f"layer{i}", producer=last_conv, doc=f"after max-pool layer {i}")
            else:
                last_conv = f"layer{i}.conv"
                pts[f"layer{i}"] = Point(tap=f"layer{i}.relu", producer=last_conv, block=last_conv,
                                         doc=f"after the ReLU of conv layer {i}")
        return pts

    def forward(self, x):
        x = self.input(x)
        for i in range(1, 14):
            x = getattr(self, f"layer{i}")(x)
        return self.layer14(self.flatten(x))


class VGG16(nn.Module):
    """VGG-16-BN of Singh (2023) as one flat ``nn.Sequential`` with the thesis's indices."""

    DROPOUT_SLOTS = (48, 51)

    def __init__(self, num_classes: int = 10, in_channels: int = 3, init: str = "torchvision"):
        super().__init__()
        if init not in VGG16_INITS:
            raise ConfigError(f"model.init={init!r} is invalid; valid: {', '.join(VGG16_INITS)}")
        self.init = init
        tv = vgg16_bn(weights=None, num_classes=num_classes)
        feats = list(tv.features)
        if in_channels != 3:
            feats[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        lin1, _, _, lin2, _, _, head = list(tv.classifier)
        self.input = nn.Identity()
        self.layers = nn.Sequential(
            *feats,  # 0..43
            tv.avgpool,  # 44 (7x7 adaptive average: 512x1x1 -> 512x7x7 for 32x32 inputs)
            nn.Flatten(),  # 45
            lin1, nn.ReLU(inplace=False), nn.Identity(),  # 46, 47, 48
            lin2, nn.ReLU(inplace=False), nn.Identity(),  # 49, 50, 51
            head,  # 52
        )
        assert len(self.layers) == 53 and isinstance(self.layers[48], nn.Identity)
        if init == "default":
            for m in self.layers:
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                    m.reset_parameters()  # PyTorch's own initialisation, as a freshly built layer has

    @classmethod
    def points(cls) -> dict[str, Point]:
        # the module list is fixed; derive producers from a skeleton once
        pts: dict[str, Point] = {"input": Point(tap="input", doc="the (normalised) input image")}
        kinds = _vgg16_kinds()
        producer = None
        for i, kind in enumerate(kinds):
            if kind in ("Conv2d", "Linear"):
                producer = f"layers.{i}"
            # a BatchNorm is replaceable too: the authors' `--replace-layers 1 4` replaced the first two
            block = f"layers.{i}" if kind in ("Conv2d", "Linear", "BatchNorm2d") else None
            p = Point(tap=f"layers.{i}", producer=producer, block=block, doc=f"after module {i} ({kind})")
            pts[str(i)] = p
            if i < 44:
                pts[f"features.{i}"] = p
        return pts

    def forward(self, x):
        return self.layers(self.input(x))


_VGG16_PLAN: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512,
                                512, "M"]


def _vgg16_kinds() -> list[str]:
    """Module types of the flat layout, index by index (torchvision's ``cfg D`` with BatchNorm)."""
    feats: list[str] = []
    for v in _VGG16_PLAN:
        feats += ["MaxPool2d"] if v == "M" else ["Conv2d", "BatchNorm2d", "ReLU"]
    return feats + ["AdaptiveAvgPool2d", "Flatten", "Linear", "ReLU", "Identity",
                    "Linear", "ReLU", "Identity", "Linear"]
