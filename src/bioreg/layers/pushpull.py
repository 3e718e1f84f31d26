"""Push-pull inhibition layer of Strisciuglio, Lopez-Antequera & Petkov (2020).

*Enhanced robustness of convolutional networks with a push–pull inhibition
layer*, Neural Computing and Applications 32, doi 10.1007/s00521-020-04751-8
(and Mansoor's 2020 slides on it, "Implementation"; full entries in docs/references.md):

.. math::

    P(I) = \\theta(k * I) - \\alpha\\, \\theta(-k_{\\uparrow h} * I)

with :math:`\\theta` the ReLU, ``k`` the learned *push* kernel and the *pull*
kernel :math:`-k_{\\uparrow h}`: the push kernel upsampled bilinearly (corners
aligned) to a support ``h`` times larger and negated. The pull response
inhibits the push response, so that e.g. noise, to which both respond, is
suppressed while a clean edge, to which only the push kernel responds, is kept.

Details (see ``docs/decisions/pushpull.md``):

* pull size per spatial dimension: ``floor(h * s)`` rounded up to odd (``s`` the
  push size), except ``h == 1`` where the pull kernel *is* the push kernel (as in
  the public code); the pull convolution is padded so that its output has the
  size of the push output and its windows are centred on the same pixels
  (dilation is taken into account; an odd difference of supports is padded one
  pixel more at the bottom/right);
* a push bias ``b`` enters the pull path negated: pull = θ(−(k↑h * I + b));
* α is a fixed hyper-parameter (a float ≥ 0) or, with ``train_alpha=True``, a
  learned per-channel vector kept ≥ 0 by one of three parametrisations
  (:data:`ALPHA_PARAMS`): ``project`` (default; α is the raw parameter, projected
  onto α ≥ 0 in place before each forward pass — projected gradient descent,
  so a channel whose α reaches 0 still gets gradients and can recover),
  ``softplus`` (α = softplus(ρ), ρ initialised to softplus⁻¹(α₀); needs α₀ > 0)
  or ``relu`` (α = max(ρ, 0), the public code's choice; a channel whose ρ
  becomes negative stops learning α);
* the layer returns ``push − α·pull`` *before* the network's own BatchNorm and
  ReLU: in the public ResNet code the push-pull layer replaces ``conv1`` and is
  followed, unchanged, by ``bn1`` and ``relu`` — so its own two ReLUs come
  first, BN+ReLU after.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from bioreg.layers.base import RegularizerConfigError

__all__ = ["PushPull2d", "to_push_pull", "pull_kernel_size", "ALPHA_PARAMS", "PADDING_MODES"]

ALPHA_PARAMS = ("project", "softplus", "relu")
#: the padding modes of the push convolution (nn.Conv2d's; its constructor checks them)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------- validation helpers
def _check_scale(scale: float) -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise RegularizerConfigError(f"push-pull scale must be a number > 0 (e.g. 1, 1.5, 2), "
                                     f"got {scale!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise RegularizerConfigError(f"push-pull scale must be a finite number > 0 (e.g. 1, 1.5, 2), "
                                     f"got {scale!r}")
    return s


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise RegularizerConfigError(f"push-pull alpha must be a number >= 0 (e.g. 0.5, 1), "
                                     f"got {alpha!r}") from None
    if not math.isfinite(a) or a < 0:
        raise RegularizerConfigError(f"push-pull alpha (inhibition strength) must be a finite number >= 0, "
                                     f"got {alpha!r}")
    return a


def pull_kernel_size(push_size: int, scale: float) -> int:
    """Side of the pull kernel: ``floor(scale * push_size)`` rounded up to odd (``scale == 1``:
    ``push_size``)."""
    scale = _check_scale(scale)
    if scale == 1.0:
        return int(push_size)
    n = max(int(math.floor(scale * push_size + 1e-9)), 1)
    return n if n % 2 == 1 else n + 1


def _side_pads(padding, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """Conv2d ``padding`` (int, pair, 'valid', 'same') as per-side pads ``(top, bottom, left, right)``."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            out = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]  # what torch does for padding='same'
            return tuple(out)  # type: ignore[return-value]
        raise RegularizerConfigError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(padding)
    return (int(ph), int(ph), int(pw), int(pw))


def _pad(x: torch.Tensor, pads: Sequence[int], mode: str) -> torch.Tensor:
    """Pad (or, for negative entries, crop) the last two dims; ``pads = (top, bottom, left, right)``."""
    top, bottom, left, right = (int(p) for p in pads)
    h, w = x.shape[-2:]
    x = x[..., max(-top, 0): h - max(-bottom, 0), max(-left, 0): w - max(-right, 0)]
    pos = (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0))
    if not any(pos):
        return x
    return F.pad(x, pos, mode="constant" if mode == "zeros" else mode)


def _path_pads(padding, kernel: tuple[int, int], pull: tuple[int, int],
               dilation: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-side pads ``(top, bottom, left, right)`` of the push path (the convolution's own) and of the
    pull path: its windows centred on the push windows, so that both outputs have the same size."""
    push = _side_pads(padding, kernel, dilation)
    pulls = []
    for i, (k, kp, d) in enumerate(zip(kernel, pull, dilation, strict=True)):
        extra = d * (kp - k)  # difference of the dilated supports
        pulls += [push[2 * i] + extra // 2, push[2 * i + 1] + extra - extra // 2]
    return push, tuple(pulls)


def _check_alpha_param(alpha_param: str) -> str:
    if alpha_param not in ALPHA_PARAMS:
        raise RegularizerConfigError(
            f"push-pull alpha_param must be one of {', '.join(ALPHA_PARAMS)}, got {alpha_param!r}"
        )
    return alpha_param


def _raw_alpha(alpha: float, alpha_param: str) -> float:
    """The initial value of the learned parameter ``alpha_raw`` that gives ``alpha`` under ``alpha_param``."""
    if alpha_param != "softplus":
        return alpha
    if alpha <= 0:
        raise RegularizerConfigError(
            "push-pull alpha_param='softplus' needs an initial alpha > 0 (softplus is never 0); "
            f"got alpha={alpha!r}; use alpha_param='project' or 'relu' to start at 0"
        )
    return math.log(math.expm1(alpha)) if alpha < 20 else alpha


#: what PushPull2d keeps of the push convolution besides its parameters (as nn.Conv2d's constructor set them)
_CONV_ATTRS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
               "padding_mode")


def _push_conv(args: tuple, kwargs: dict) -> nn.Conv2d:
    """``nn.Conv2d(*args, **kwargs)``: its own constructor checks the arguments and initialises the kernel
    and bias; a value it refuses becomes one :class:`RegularizerConfigError` line."""
    try:
        return nn.Conv2d(*args, **kwargs)
    except ValueError as e:
        raise RegularizerConfigError(f"push-pull convolution: {e}") from None


# --------------------------------------------------------------------------- the layer
class PushPull2d(nn.Module):
    """Push-pull convolution (Strisciuglio et al. 2020, §3, eq. 1): ``ReLU(k*I) − α·ReLU(−k↑h*I)``.

    Takes the arguments of :class:`torch.nn.Conv2d` (positional or by name; they are passed to its
    constructor, which checks them and initialises the push kernel) plus, by name only,

    Args:
        scale: ``h``, the pull kernel's support relative to the push kernel's (> 0; default 2).
        alpha: the inhibition strength α (≥ 0; default 1). With ``train_alpha`` the initial value
            of every channel's α.
        train_alpha: learn one α per output channel (paper Table 5).
        alpha_param: how a learned α is kept ≥ 0, one of :data:`ALPHA_PARAMS` (module docstring).

    The push kernel and bias are the parameters ``weight`` ``(C_out, C_in/groups, kh, kw)`` and
    ``bias`` (or ``None``) of that ``nn.Conv2d``, registered on this module (so the state-dict keys
    are ``weight``, ``bias``, and ``alpha_raw`` when α is learned, ``(C_out,)``); the convolution's
    ``in_channels`` ... ``padding_mode`` are attributes of this module as on ``nn.Conv2d``.
    """

    def __init__(self, *conv_args, scale: float = 2.0, alpha: float = 1.0, train_alpha: bool = False,
                 alpha_param: str = "project", **conv_kwargs) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        alpha = _check_alpha(alpha)
        self.alpha_param = _check_alpha_param(alpha_param)
        conv = _push_conv(conv_args, conv_kwargs)
        for name in _CONV_ATTRS:
            setattr(self, name, getattr(conv, name))
        self.register_parameter("weight", conv.weight)  # weight, bias, alpha_raw: the state-dict order
        self.register_parameter("bias", conv.bias)
        self.pull_size = tuple(pull_kernel_size(k, self.scale) for k in self.kernel_size)
        self._push_pads, self._pull_pads = _path_pads(self.padding, self.kernel_size, self.pull_size,
                                                      self.dilation)
        self.train_alpha = bool(train_alpha)
        if self.train_alpha:
            raw = _raw_alpha(alpha, alpha_param)
            self.alpha_raw = nn.Parameter(torch.full((self.out_channels,), float(raw),
                                                     device=conv.weight.device, dtype=conv.weight.dtype))
            self.alpha = None
        else:
            self.register_parameter("alpha_raw", None)
            self.alpha = alpha

    # ----------------------------------------------------------------- construction
    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s own initialisation of the push kernel and bias."""
        nn.Conv2d.reset_parameters(self)  # type: ignore[arg-type]

    @classmethod
    def from_conv(
        cls,
        conv: nn.Module,
        scale: float = 2.0,
        alpha: float = 1.0,
        train_alpha: bool = False,
        alpha_param: str = "project",
    ) -> PushPull2d:
        """A push-pull layer whose push kernel (and bias) is a copy of ``conv``'s (e.g. a trained one)."""
        if not isinstance(conv, nn.Conv2d):
            raise RegularizerConfigError(
                f"push-pull replaces an nn.Conv2d, got {type(conv).__name__}; valid targets: an nn.Conv2d "
                "(e.g. ResNet point conv1) or a block containing Conv2d layers (e.g. ResNet point layer1)"
            )
        pp = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, scale=scale, alpha=alpha, train_alpha=train_alpha,
            alpha_param=alpha_param, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            pp.weight.copy_(conv.weight)
            if conv.bias is not None:
                pp.bias.copy_(conv.bias)
        pp.train(conv.training)
        return pp

    # ----------------------------------------------------------------- kernels and alpha
    @property
    def pull_kernel(self) -> torch.Tensor:
        """The kernel the pull path convolves with: ``−k↑h`` (bilinear, ``align_corners=True``)."""
        w = self.weight
        if self.pull_size != self.kernel_size:
            w = F.interpolate(w, size=self.pull_size, mode="bilinear", align_corners=True)
        return -w

    def alpha_value(self) -> torch.Tensor | float:
        """The inhibition strength in use: a float, or a ``(C_out,)`` tensor (≥ 0) when learned."""
        if not self.train_alpha:
            return self.alpha
        if self.alpha_param == "softplus":
            return F.softplus(self.alpha_raw)
        if self.alpha_param == "relu":
            return F.relu(self.alpha_raw)
        return self.alpha_raw.clamp_min(0)  # 'project': equal to alpha_raw after the projection in forward

    def _alpha_for_forward(self) -> torch.Tensor | float:
        if self.train_alpha and self.alpha_param == "project":
            with torch.no_grad():
                self.alpha_raw.clamp_(min=0)  # projection onto alpha >= 0; gradients still reach alpha_raw
            return self.alpha_raw
        return self.alpha_value()

    # ----------------------------------------------------------------- responses
    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
              pads: tuple[int, ...]) -> torch.Tensor:
        t, bo, le, r = pads
        if self.padding_mode == "zeros" and t == bo and le == r and min(pads) >= 0:
            return F.conv2d(x, w, b, self.stride, (t, le), self.dilation, self.groups)
        return F.conv2d(_pad(x, pads, self.padding_mode), w, b, self.stride, 0, self.dilation, self.groups)

    def push_response(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(k * I + b)`` — equal to the replaced convolution followed by a ReLU."""
        return F.relu(self._conv(x, self.weight, self.bias, self._push_pads))

    def pull_response(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(−k↑h * I − b)`` (before the factor α)."""
        b = None if self.bias is None else -self.bias
        return F.relu(self._conv(x, self.pull_kernel, b, self._pull_pads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self._alpha_for_forward()
        push = self.push_response(x)
        if isinstance(alpha, float) and alpha == 0.0:
            return push
        pull = self.pull_response(x)
        if isinstance(alpha, torch.Tensor):
            alpha = alpha.view(1, -1, 1, 1)
        return push - alpha * pull

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}, pull_size={self.pull_size}, scale={self.scale}")
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        s += f", alpha=learned({self.alpha_param})" if self.train_alpha else f", alpha={self.alpha}"
        return s


# --------------------------------------------------------------------------- config factory
def to_push_pull(
    module: nn.Module,
    scale: float = 2.0,
    alpha: float = 1.0,
    train_alpha: bool = False,
    alpha_param: str = "project",
    skip_pointwise: bool = True,
) -> nn.Module:
    """Factory for ``mode: replace`` entries: push-pull versions of the convolutions in ``module``.

    * ``module`` an ``nn.Conv2d`` (e.g. ResNet point ``conv1``): returns
      :meth:`PushPull2d.from_conv` of it (kernel and bias copied — a trained
      convolution stays trained, which is how fine-tuning works).
    * ``module`` a container (e.g. a whole ResNet stage, point ``layer1``): every
      ``nn.Conv2d`` inside is replaced in place, except 1x1 convolutions (the
      projection shortcuts) when ``skip_pointwise`` — the public code keeps those
      plain. Returns ``module``.

    Raises :class:`RegularizerConfigError` for bad parameters or when ``module``
    holds no convolution to replace.
    """
    _check_scale(scale)
    _check_alpha(alpha)
    kw = {"scale": scale, "alpha": alpha, "train_alpha": train_alpha, "alpha_param": alpha_param}
    if isinstance(module, PushPull2d):
        raise RegularizerConfigError("this module is already a PushPull2d; remove the duplicate push-pull "
                                     "entry")
    if isinstance(module, nn.Conv2d):
        return PushPull2d.from_conv(module, **kw)
    targets = [
        name for name, m in module.named_modules()
        if name and isinstance(m, nn.Conv2d) and not (skip_pointwise and tuple(m.kernel_size) == (1, 1))
    ]
    if not targets:
        raise RegularizerConfigError(
            f"push-pull replaces convolutions, but the module at this point is a {type(module).__name__} "
            f"without {'non-1x1 ' if skip_pointwise else ''}nn.Conv2d layers; valid targets: an nn.Conv2d "
            "(ResNet point conv1, AlexNet points conv1..conv5) or a block containing Conv2d layers "
            "(ResNet points layer1..layer3)"
        )
    for name in targets:
        module.set_submodule(name, PushPull2d.from_conv(module.get_submodule(name), **kw))
    return module
