"""CIFAR ResNets of He et al. (2016), §4.2: ResNet-14/20/32/44/56 (depth 6n+2).

``conv1`` (3x3, 16) → three stages of ``n = (depth - 2) / 6`` basic blocks with
16 / 32 / 64 channels (stride 2 at the start of stages 2 and 3) → global average
pool → linear. Where a block changes shape, the shortcut is a 1x1 convolution
with BatchNorm ("option B"), as in the public push-pull code
(Strisciuglio et al. 2020), so results are comparable with that paper.

Insertion points: ``input``, ``conv1`` (after the ReLU of the stem; its block is
the stem convolution, which ``mode: replace`` swaps, e.g. for a push-pull
layer), ``layer1`` … ``layer3`` (after each stage; the block is the stage).
"""

from __future__ import annotations

from torch import nn

from bioreg.models.points import Point

__all__ = ["CifarResNet", "BasicBlock", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, widths=(16, 32, 64)):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.blocks_per_stage = n
        self.input = nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=False)
        cin = widths[0]
        for s, w in enumerate(widths, start=1):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, w, stride=2 if (s > 1 and b == 0) else 1))
                cin = w
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def points(self) -> dict[str, Point]:
        n = self.blocks_per_stage
        pts = {
            "input": Point(tap="input", doc="the (normalised) input image"),
            "conv1": Point(tap="relu", producer="conv1", block="conv1",
                           doc="after the stem conv, BN and ReLU"),
        }
        for s in (1, 2, 3):
            pts[f"layer{s}"] = Point(tap=f"layer{s}", producer=f"layer{s}.{n - 1}.conv2", block=f"layer{s}",
                                     doc=f"after residual stage {s}")
        return pts

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(self.input(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


def resnet14(num_classes: int = 10, in_channels: int = 3, widths=(16, 32, 64)) -> CifarResNet:
    """n = 2: the network of the push-pull paper's sensitivity study (Strisciuglio et al. 2020, §4.3, Table
    4)."""
    return CifarResNet(14, num_classes=num_classes, in_channels=in_channels, widths=widths)


def resnet20(num_classes: int = 10, in_channels: int = 3, widths=(16, 32, 64)) -> CifarResNet:
    return CifarResNet(20, num_classes=num_classes, in_channels=in_channels, widths=widths)


def resnet32(num_classes: int = 10, in_channels: int = 3, widths=(16, 32, 64)) -> CifarResNet:
    return CifarResNet(32, num_classes=num_classes, in_channels=in_channels, widths=widths)


def resnet44(num_classes: int = 10, in_channels: int = 3, widths=(16, 32, 64)) -> CifarResNet:
    return CifarResNet(44, num_classes=num_classes, in_channels=in_channels, widths=widths)


def resnet56(num_classes: int = 10, in_channels: int = 3, widths=(16, 32, 64)) -> CifarResNet:
    return CifarResNet(56, num_classes=num_classes, in_channels=in_channels, widths=widths)
