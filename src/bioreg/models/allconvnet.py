"""All-CNN-C of Springenberg et al. (2015) as modified in Dutta (2019), Table 2.2.

Table 2.2 of the thesis prints "Layer 7: 3x3 conv. 192 filters, ReLU" twice. We
read the duplicate as a typo: All-CNN-C (Springenberg et al., Table 2, model C)
has exactly one 3x3 convolution between the second stride-2 layer and the two
1x1 convolutions, and it is *unpadded* ("valid"), which is what turns the 8x8
maps into the 6x6 maps that the thesis's layer 10 averages over. A second
padded 3x3 layer would keep 8x8 and contradict "global averaging over 6x6".
So the network has nine convolutions, numbered layer1..layer9 as in the thesis;
layer 10 is the global average. See docs/decisions.md.

Other choices, taken from the text: layer 1 has ``layer1_width`` (default 10)
filters instead of 96 (for tractable correlated noise); layers 3 and 6 have
stride 2 and replace pooling; every convolution, layer 9 included, is followed
by a ReLU (as printed in Table 2.2 and in Springenberg et al.); no BatchNorm.
"""

from __future__ import annotations

from torch import nn

from bioreg.models.points import Point

__all__ = ["AllConvNet"]


class ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding)
        self.relu = nn.ReLU(inplace=False) if relu else nn.Identity()


class AllConvNet(nn.Module):
    """All-CNN-C with a narrow first layer (Dutta 2019, Table 2.2).

    Insertion points: ``input`` (the image) and ``layer1`` … ``layer9`` (after the
    ReLU of each convolution, thesis numbering).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        layer1_width: int = 10,
        width: int = 96,
        width2: int = 192,
        final_relu: bool = True,
    ):
        super().__init__()
        if min(layer1_width, width, width2) < 1:
            raise ValueError("layer widths must be positive")
        self.input = nn.Identity()
        self.layer1 = ConvReLU(in_channels, layer1_width, 3, padding=1)
        self.layer2 = ConvReLU(layer1_width, width, 3, padding=1)
        self.layer3 = ConvReLU(width, width, 3, stride=2, padding=1)
        self.layer4 = ConvReLU(width, width2, 3, padding=1)
        self.layer5 = ConvReLU(width2, width2, 3, padding=1)
        self.layer6 = ConvReLU(width2, width2, 3, stride=2, padding=1)
        self.layer7 = ConvReLU(width2, width2, 3, padding=0)  # 8x8 -> 6x6
        self.layer8 = ConvReLU(width2, width2, 1)
        self.layer9 = ConvReLU(width2, num_classes, 1, relu=final_relu)
        self.pool = nn.AdaptiveAvgPool2d(1)  # "layer 10": global average over 6x6
        self.flatten = nn.Flatten()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @staticmethod
    def points() -> dict[str, Point]:
        pts = {"input": Point(tap="input", doc="the (normalised) input image")}
        for i in range(1, 10):
            tap = f"layer{i}.relu"
            pts[f"layer{i}"] = Point(tap=tap, producer=f"layer{i}.conv", block=f"layer{i}.conv",
                                     doc=f"after the ReLU of layer {i}")
        return pts

    def forward(self, x):
        x = self.input(x)
        for i in range(1, 10):
            x = getattr(self, f"layer{i}")(x)
        return self.flatten(self.pool(x))
