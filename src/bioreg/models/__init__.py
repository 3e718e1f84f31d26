"""Models with named insertion points (thesis layer numbering); see :mod:`bioreg.models.points`."""

from bioreg.models.allconvnet import AllConvNet
from bioreg.models.points import InsertionError, Point, describe_points, insert, replace
from bioreg.models.resnet import CifarResNet, resnet14, resnet20, resnet32, resnet44, resnet56
from bioreg.models.vgg import VGG11, VGG16

__all__ = [
    "AllConvNet", "VGG11", "VGG16", "CifarResNet", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56",
    "Point", "InsertionError", "insert", "replace", "describe_points",
]
