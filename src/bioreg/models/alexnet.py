"""CIFAR AlexNet: the reference network of the push-pull paper's mCE / rCE (Strisciuglio et al. 2020, App. 2).

The paper normalises corruption errors by an AlexNet trained on CIFAR-10 but
does not print its layers. We rebuild the AlexNet-for-CIFAR that circulates in
public PyTorch CIFAR code (the layout of torchvision's AlexNet with every kernel
3x3 and the 11x11/4 stem replaced by a 3x3 convolution with stride 2, so that a
32x32 image ends as 256 maps of 2x2):

====== ========================================== ============
point  layer                                      output
====== ========================================== ============
conv1  3x3 conv, 64, stride 2, pad 1, ReLU        64 x 16 x 16
pool1  2x2 max-pool                               64 x 8 x 8
conv2  3x3 conv, 192, pad 1, ReLU                 192 x 8 x 8
pool2  2x2 max-pool                               192 x 4 x 4
conv3  3x3 conv, 384, pad 1, ReLU                 384 x 4 x 4
conv4  3x3 conv, 256, pad 1, ReLU                 256 x 4 x 4
conv5  3x3 conv, 256, pad 1, ReLU                 256 x 4 x 4
pool3  2x2 max-pool, flatten                      1024
fc1    dropout 0.5, linear 1024 → 4096, ReLU      4096
fc2    dropout 0.5, linear 4096 → 4096, ReLU      4096
(fc3)  linear 4096 → 10                           10
====== ========================================== ============

"1024-wide first FC layer" is read as the 256·2·2 = 1024 features entering the
first fully connected layer; ``fc_width`` sets its output (4096 in the public
definition; ``fc_width=1024`` gives the other reading). Biases everywhere, no
BatchNorm, PyTorch's default initialisation. See ``docs/decisions/pushpull.md``.

Insertion points: ``input``, ``conv1`` … ``conv5`` (after the ReLU; their block is
the convolution, so ``mode: replace`` swaps e.g. ``conv1`` for a push-pull layer),
``pool1`` … ``pool3``, ``fc1``, ``fc2`` (after the ReLU; block = the linear layer).
"""

from __future__ import annotations

from torch import nn

from bioreg.models.points import Point

__all__ = ["AlexNetCifar", "alexnet_cifar"]


class _ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.relu = nn.ReLU(inplace=False)


class _FC(nn.Sequential):
    def __init__(self, fin: int, fout: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(fin, fout)
        self.relu = nn.ReLU(inplace=False)


class AlexNetCifar(nn.Module):
    """AlexNet for 32x32 inputs (module docstring); ``fc_width`` = width of fc1 and fc2."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, fc_width: int = 4096,
                 dropout: float = 0.5):
        super().__init__()
        if fc_width < 1 or num_classes < 1:
            raise ValueError(f"fc_width and num_classes must be positive, got {fc_width}, {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input = nn.Identity()
        self.conv1 = _ConvReLU(in_channels, 64, stride=2)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = _ConvReLU(64, 192)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = _ConvReLU(192, 384)
        self.conv4 = _ConvReLU(384, 256)
        self.conv5 = _ConvReLU(256, 256)
        self.pool3 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
        self.fc1 = _FC(256 * 2 * 2, fc_width, dropout)
        self.fc2 = _FC(fc_width, fc_width, dropout)
        self.fc3 = nn.Linear(fc_width, num_classes)

    @staticmethod
    def points() -> dict[str, Point]:
        pts = {"input": Point(tap="input", doc="the (normalised) input image")}
        last = None
        for name in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool3"):
            if name.startswith("conv"):
                last = f"{name}.conv"
                pts[name] = Point(tap=f"{name}.relu", producer=last, block=last,
                                  doc=f"after the ReLU of {name}")
            else:
                pts[name] = Point(tap=name, producer=last, doc=f"after max-pool {name[-1]}")
        for name in ("fc1", "fc2"):
            pts[name] = Point(tap=f"{name}.relu", producer=f"{name}.linear", block=f"{name}.linear",
                              doc=f"after the ReLU of {name}")
        return pts

    def forward(self, x):
        x = self.pool1(self.conv1(self.input(x)))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv5(self.conv4(self.conv3(x))))
        return self.fc3(self.fc2(self.fc1(x)))


def alexnet_cifar(**kw) -> AlexNetCifar:
    return AlexNetCifar(**kw)
