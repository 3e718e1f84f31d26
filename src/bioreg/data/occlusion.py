"""The six occlusions of Dutta (2019), §2.4.3 / Fig. 2.4 (Table 2.3; docs/references.md).

The thesis only names the occlusions (central occlusion, checker board, horizontal bars,
vertical bars, horizontal half, vertical half; Table 2.3) and shows them in Fig. 2.4, which is
missing from the text. The geometry below is our definition; every size is a parameter of
:class:`OcclusionParams` (see ``docs/data.md`` and ``docs/decisions/data.md``). Sizes are given in
pixels of a ``reference_size`` (32) image and scaled to the actual height/width.

Every function is pure and deterministic: ``x`` is a float tensor ``(C, H, W)`` or
``(N, C, H, W)`` in [0, 1]; the occluded pixels (all channels) are set to ``fill``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["OCCLUSION_KINDS", "OccludedDataset", "OcclusionParams", "occlude", "occlusion_mask"]

OCCLUSION_KINDS: tuple[str, ...] = (
    "central",
    "checkerboard",
    "horizontal_bars",
    "vertical_bars",
    "horizontal_half",
    "vertical_half",
)


@dataclass(frozen=True)
class OcclusionParams:
    """Geometry of the occlusions (pixel sizes refer to a ``reference_size`` x ``reference_size`` image).

    Attributes:
        fill: value of the occluder in [0, 1] (0 = black), written to every channel.
        central_size: side of the centred occluded square (16 of 32 px: a quarter of the area).
        checker_cell: side of a checkerboard cell (8 px: a 4x4 board on 32 px); half the cells
            are occluded.
        checker_phase: 0 occludes the cells with even ``row_cell + col_cell`` (the top-left cell is
            occluded), 1 the odd ones.
        bar_width: thickness of each bar (4 px).
        bar_period: distance between the starts of two bars (8 px), so 4-px bars every 8 px
            cover half the image.
        bar_offset: row/column where the first bar starts (0).
        horizontal_half: which half the ``horizontal_half`` occlusion covers: ``bottom`` or ``top``
            (the dividing line is horizontal).
        vertical_half: which half ``vertical_half`` covers: ``right`` or ``left`` (vertical line).
        reference_size: image size the pixel sizes refer to; for an ``H x W`` image a vertical size
            ``s`` becomes ``round(s * H / reference_size)`` (at least 1), likewise horizontally.
    """

    fill: float = 0.0
    central_size: int = 16
    checker_cell: int = 8
    checker_phase: int = 0
    bar_width: int = 4
    bar_period: int = 8
    bar_offset: int = 0
    horizontal_half: str = "bottom"
    vertical_half: str = "right"
    reference_size: int = 32

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.fill) <= 1.0:
            raise ValueError(f"occlusion.fill={self.fill!r} is invalid; valid range: [0, 1]")
        for name in ("central_size", "checker_cell", "bar_width", "bar_period", "reference_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"occlusion.{name}={v!r} is invalid; valid values: integers >= 1")
        if self.central_size > self.reference_size:
            raise ValueError(
                f"occlusion.central_size={self.central_size} is invalid; valid range: 1..reference_size "
                f"({self.reference_size})"
            )
        if self.bar_width > self.bar_period:
            raise ValueError(
                f"occlusion.bar_width={self.bar_width} is invalid; valid range: 1..bar_period "
                f"({self.bar_period})"
            )
        if self.checker_phase not in (0, 1):
            raise ValueError(
                f"occlusion.checker_phase={self.checker_phase!r} is invalid; valid choices: 0, 1"
            )
        if not isinstance(self.bar_offset, int) or self.bar_offset < 0:
            raise ValueError(
                f"occlusion.bar_offset={self.bar_offset!r} is invalid; valid values: integers >= 0"
            )
        if self.horizontal_half not in ("bottom", "top"):
            raise ValueError(
                f"occlusion.horizontal_half={self.horizontal_half!r} is invalid; valid choices: bottom, top"
            )
        if self.vertical_half not in ("right", "left"):
            raise ValueError(
                f"occlusion.vertical_half={self.vertical_half!r} is invalid; valid choices: right, left"
            )

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | OcclusionParams | None) -> OcclusionParams:
        """Build from a (config) mapping; unknown keys raise a ``ValueError`` listing the valid ones."""
        if params is None:
            return cls()
        if isinstance(params, OcclusionParams):
            return params
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown occlusion parameter(s) {unknown}; valid parameters: {', '.join(valid)}"
            )
        return cls(**dict(params))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_kind(kind: str) -> None:
    if kind not in OCCLUSION_KINDS:
        raise ValueError(f"unknown occlusion kind {kind!r}; valid kinds: {', '.join(OCCLUSION_KINDS)}")


def _scale(size: int, actual: int, reference: int) -> int:
    return max(1, int(round(size * actual / reference)))


def _bars(n: int, p: OcclusionParams) -> torch.Tensor:
    """Boolean (n,) — positions covered by bars along one axis of length ``n``."""
    width = _scale(p.bar_width, n, p.reference_size)
    period = max(width, _scale(p.bar_period, n, p.reference_size))
    offset = int(round(p.bar_offset * n / p.reference_size))
    pos = torch.arange(n)
    return (pos >= offset) & ((pos - offset) % period < width)


def occlusion_mask(kind: str, height: int, width: int, params: OcclusionParams | None = None) -> torch.Tensor:
    """Boolean ``(height, width)`` mask, ``True`` where ``kind`` occludes the image."""
    _check_kind(kind)
    p = params or OcclusionParams()
    h, w = int(height), int(width)
    mask = torch.zeros(h, w, dtype=torch.bool)
    if kind == "central":
        sh, sw = _scale(p.central_size, h, p.reference_size), _scale(p.central_size, w, p.reference_size)
        sh, sw = min(sh, h), min(sw, w)
        top, left = (h - sh) // 2, (w - sw) // 2
        mask[top : top + sh, left : left + sw] = True
    elif kind == "checkerboard":
        ch, cw = _scale(p.checker_cell, h, p.reference_size), _scale(p.checker_cell, w, p.reference_size)
        rows = torch.arange(h).div(ch, rounding_mode="floor")
        cols = torch.arange(w).div(cw, rounding_mode="floor")
        mask = (rows[:, None] + cols[None, :]) % 2 == p.checker_phase
    elif kind == "horizontal_bars":  # bars run horizontally: whole rows are occluded
        mask[_bars(h, p), :] = True
    elif kind == "vertical_bars":  # bars run vertically: whole columns are occluded
        mask[:, _bars(w, p)] = True
    elif kind == "horizontal_half":
        if p.horizontal_half == "bottom":
            mask[h - h // 2 :, :] = True
        else:
            mask[: h // 2, :] = True
    elif kind == "vertical_half":
        if p.vertical_half == "right":
            mask[:, w - w // 2 :] = True
        else:
            mask[:, : w // 2] = True
    return mask


def occlude(x: torch.Tensor, kind: str, params: OcclusionParams | None = None) -> torch.Tensor:
    """Return a copy of ``x`` (``(C, H, W)`` or ``(N, C, H, W)``) with the ``kind`` occlusion applied."""
    _check_kind(kind)
    if x.dim() not in (3, 4):
        raise ValueError(f"occlude expects a (C, H, W) or (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    p = params or OcclusionParams()
    mask = occlusion_mask(kind, x.shape[-2], x.shape[-1], p).to(x.device)
    return torch.where(mask, torch.as_tensor(p.fill, dtype=x.dtype, device=x.device), x)


class OccludedDataset(Dataset):
    """``base`` (items ``(x, y)``) with occlusion ``kind`` applied to every image; the mask is cached."""

    def __init__(self, base: Dataset, kind: str, params: OcclusionParams | Mapping[str, Any] | None = None):
        _check_kind(kind)
        self.base = base
        self.kind = kind
        self.params = OcclusionParams.from_dict(params)
        self._masks: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        x, y = self.base[index]
        key = (int(x.shape[-2]), int(x.shape[-1]))
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = occlusion_mask(self.kind, key[0], key[1], self.params)
        return torch.where(mask, torch.as_tensor(self.params.fill, dtype=x.dtype), x), y

    def __repr__(self) -> str:
        return f"OccludedDataset(kind={self.kind!r}, n={len(self)})"
