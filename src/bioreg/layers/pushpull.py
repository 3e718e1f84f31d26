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
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------- validation helpers
def _check_scale(scale: float) -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise RegularizerConfigError(f"push-pull scale must be a number > 0 (e.g. 1, 1.5, 2), got {scale!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise RegularizerConfigError(f"push-pull scale must be a finite number > 0 (e.g. 1, 1.5, 2), got {scale!r}")
    return s


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise RegularizerConfigError(f"push-pull alpha must be a number >= 0 (e.g. 0.5, 1), got {alpha!r}") from None
    if not math.isfinite(a) or a < 0:
        raise RegularizerConfigError(f"push-pull alpha (inhibition strength) must be a finite number >= 0, got {alpha!r}")
    return a


def pull_kernel_size(push_size: int, scale: float) -> int:
    """Side of the pull kernel: ``floor(scale * push_size)`` rounded up to odd (``scale == 1``: ``push_size``)."""
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


# --------------------------------------------------------------------------- the layer
class PushPull2d(nn.Module):
    """Push-pull convolution (Strisciuglio et al. 2020, §3, eq. 1): ``ReLU(k*I) − α·ReLU(−k↑h*I)``.

    Takes the arguments of :class:`torch.nn.Conv2d` plus

    Args:
        scale: ``h``, the pull kernel's support relative to the push kernel's (> 0; default 2).
        alpha: the inhibition strength α (≥ 0; default 1). With ``train_alpha`` the initial value
            of every channel's α.
        train_alpha: learn one α per output channel (paper Table 5).
        alpha_param: how a learned α is kept ≥ 0, one of :data:`ALPHA_PARAMS` (module docstring).

    The push kernel and bias are the parameters ``weight`` ``(C_out, C_in/groups, kh, kw)`` and
    ``bias`` (or ``None``), as in ``nn.Conv2d``; a learned α is ``alpha_raw`` ``(C_out,)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        scale: float = 2.0,
        alpha: float = 1.0,
        train_alpha: bool = False,
        alpha_param: str = "project",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.scale = _check_scale(scale)
        alpha = _check_alpha(alpha)
        if alpha_param not in ALPHA_PARAMS:
            raise RegularizerConfigError(
                f"push-pull alpha_param must be one of {', '.join(ALPHA_PARAMS)}, got {alpha_param!r}"
            )
        if padding_mode not in PADDING_MODES:
            raise RegularizerConfigError(
                f"push-pull padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}"
            )
        if in_channels % groups or out_channels % groups:
            raise RegularizerConfigError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = tuple(int(k) for k in _pair(kernel_size))
        self.stride = tuple(int(s) for s in _pair(stride))
        self.dilation = tuple(int(d) for d in _pair(dilation))
        if isinstance(padding, str) and padding == "same" and self.stride != (1, 1):
            raise RegularizerConfigError("padding='same' needs stride 1 (as in nn.Conv2d)")
        self.padding = padding if isinstance(padding, str) else tuple(int(p) for p in _pair(padding))
        self.padding_mode = padding_mode
        self.pull_size = tuple(pull_kernel_size(k, self.scale) for k in self.kernel_size)

        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **fk))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **fk))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

        # push pads (top, bottom, left, right) and pull pads: centred windows, same output size
        self._push_pads = _side_pads(self.padding, self.kernel_size, self.dilation)
        pull = []
        for i, (k, kp, d) in enumerate(zip(self.kernel_size, self.pull_size, self.dilation, strict=True)):
            extra = d * (kp - k)  # difference of the dilated supports
            pull += [self._push_pads[2 * i] + extra // 2, self._push_pads[2 * i + 1] + extra - extra // 2]
        self._pull_pads = tuple(pull)

        self.train_alpha = bool(train_alpha)
        self.alpha_param = alpha_param
        if self.train_alpha:
            if alpha_param == "softplus":
                if alpha <= 0:
                    raise RegularizerConfigError(
                        "push-pull alpha_param='softplus' needs an initial alpha > 0 (softplus is never 0); "
                        f"got alpha={alpha!r}; use alpha_param='project' or 'relu' to start at 0"
                    )
                raw = math.log(math.expm1(alpha)) if alpha < 20 else alpha
            else:
                raw = alpha
            self.alpha_raw = nn.Parameter(torch.full((out_channels,), float(raw), **fk))
            self.alpha = None
        else:
            self.register_parameter("alpha_raw", None)
            self.alpha = alpha

    # ----------------------------------------------------------------- construction
    def reset_parameters(self) -> None:
        """Same initialisation as ``nn.Conv2d``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

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
    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, pads: tuple[int, ...]) -> torch.Tensor:
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
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}, pull_size={self.pull_size}, scale={self.scale}")
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
        raise RegularizerConfigError("this module is already a PushPull2d; remove the duplicate push-pull entry")
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
