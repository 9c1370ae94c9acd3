"""CLSA's RandAugment: 5 ops drawn with replacement from a 14-op pool, each applied with p=0.5.

Paper: Wang & Qi, "Contrastive Learning with Stronger Augmentations", arXiv 2104.07713
(model_cards/clsa.md). The pool and the magnitude formulas follow the official code
(``data_processing/RandAugment.py``, itself FixMatch's pool); for each drawn op the magnitude
is an integer ``v`` uniform in ``{1..9}``:

================  =====================================================================
op                what ``v`` does
================  =====================================================================
AutoContrast      (no magnitude) stretch each channel to 0..255
Brightness        factor ``0.09 v + 0.05`` (the factor itself: 0.14 .. 0.86, always darker)
Color             saturation factor ``0.09 v + 0.05``
Contrast          contrast factor ``0.09 v + 0.05``
Equalize          (no magnitude) histogram equalisation per channel
Identity          (no magnitude) nothing; ``pool="paper"`` has Invert here instead
Posterize         keep ``int(4 v / 10) + 4`` bits (4 .. 7)
Rotate            ``3 v`` degrees, random sign, about the centre
Sharpness         sharpness factor ``0.09 v + 0.05`` (a blur, as the factor is < 1)
ShearX / ShearY   shear factor ``0.03 v``, random sign, about the top-left corner as PIL does
Solarize          invert pixels ``>= 256 - int(25.6 v)``
TranslateX / Y    ``int(0.03 v * side)`` pixels, random sign (truncated like the official code,
                  so a 32 px image is not moved at ``v = 1``)
================  =====================================================================

Geometric ops use nearest-neighbour sampling and fill with black, as PIL's ``rotate`` and
``transform`` do by default. Every op is a ``torchvision.transforms.v2.functional`` call on a
``uint8 [..., 3, H, W]`` tensor and keeps its size and dtype. Randomness comes from torch's RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.transforms.v2 import functional as F

# The official code's PARAMETER_MAX: magnitudes are v / 10 of each op's maximum.
_PARAMETER_MAX = 10
_FILL = [0.0]  # black, as PIL's affine transforms fill by default


def enhance_factor(v: int) -> float:
    """Brightness / Color / Contrast / Sharpness factor: ``0.09 v + 0.05`` (official: v*0.9/10 + 0.05)."""
    return v * 0.9 / _PARAMETER_MAX + 0.05


def posterize_bits(v: int) -> int:
    """Bits kept by Posterize: ``int(4 v / 10) + 4``."""
    return int(v * 4 / _PARAMETER_MAX) + 4


def rotate_degrees(v: int) -> float:
    """Rotation angle before the sign: ``3 v`` degrees (official: int(v*30/10))."""
    return float(int(v * 30 / _PARAMETER_MAX))


def shear_factor(v: int) -> float:
    """Shear factor (tangent of the shear angle) before the sign: ``0.03 v``."""
    return v * 0.3 / _PARAMETER_MAX


def translate_pixels(v: int, side: int, sign: int) -> int:
    """Signed translation in pixels: ``int(sign * 0.03 v * side)`` (truncated toward zero)."""
    return int(sign * (v * 0.3 / _PARAMETER_MAX) * side)


def solarize_threshold(v: int) -> int:
    """Solarize threshold: ``256 - int(25.6 v)``; pixels at or above it are inverted."""
    return 256 - int(v * 256 / _PARAMETER_MAX)


# Each op: (uint8 image [..., 3, H, W], magnitude v in 1..9, sign +1/-1) -> image of same size.
# Unsigned ops ignore ``sign``; magnitude-free ops ignore ``v``.


def auto_contrast(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.autocontrast(img)


def brightness(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.adjust_brightness(img, enhance_factor(v))


def color(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.adjust_saturation(img, enhance_factor(v))


def contrast(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.adjust_contrast(img, enhance_factor(v))


def equalize(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.equalize(img)


def identity(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return img


def invert(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.invert(img)


def posterize(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.posterize(img, posterize_bits(v))


def rotate(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.rotate(img, sign * rotate_degrees(v), fill=_FILL)


def sharpness(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return F.adjust_sharpness(img, enhance_factor(v))


def _shear(img: torch.Tensor, shear_x: float, shear_y: float) -> torch.Tensor:
    # torchvision takes shear angles in degrees about a centre; PIL's (1, s, 0, 0, 1, 0) is a
    # factor s about the origin, hence atan and center=[0, 0] (as torchvision's own RandAugment).
    return F.affine(
        img,
        angle=0.0,
        translate=[0.0, 0.0],
        scale=1.0,
        shear=[math.degrees(math.atan(shear_x)), math.degrees(math.atan(shear_y))],
        fill=_FILL,
        center=[0.0, 0.0],
    )


def shear_x(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return _shear(img, sign * shear_factor(v), 0.0)


def shear_y(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    return _shear(img, 0.0, sign * shear_factor(v))


def solarize(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    threshold = solarize_threshold(v)
    # v = 0 gives 256: no uint8 pixel reaches it (PIL's behaviour), but torchvision refuses it.
    return img if threshold > 255 else F.solarize(img, threshold)


def translate_x(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    dx = translate_pixels(v, img.shape[-1], sign)
    return F.affine(img, angle=0.0, translate=[float(dx), 0.0], scale=1.0, shear=[0.0, 0.0], fill=_FILL)


def translate_y(img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    dy = translate_pixels(v, img.shape[-2], sign)
    return F.affine(img, angle=0.0, translate=[0.0, float(dy)], scale=1.0, shear=[0.0, 0.0], fill=_FILL)


RANDAUGMENT_OPS: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "AutoContrast": auto_contrast,
    "Brightness": brightness,
    "Color": color,
    "Contrast": contrast,
    "Equalize": equalize,
    "Identity": identity,
    "Invert": invert,
    "Posterize": posterize,
    "Rotate": rotate,
    "Sharpness": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "Solarize": solarize,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
}

# Ops that take a random sign (the others ignore it).
SIGNED_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})

_OFFICIAL_POOL = (
    "AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
    "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY",
)  # fmt: skip
RANDAUGMENT_POOLS: dict[str, tuple[str, ...]] = {
    # The official CLSA code (the default).
    "official": _OFFICIAL_POOL,
    # The paper's list: Invert instead of Identity.
    "paper": tuple("Invert" if name == "Identity" else name for name in _OFFICIAL_POOL),
}


@dataclass(frozen=True)
class OpDraw:
    """One draw of the sampler.

    Attributes:
        name: the op's name (a key of :data:`RANDAUGMENT_OPS`).
        magnitude: the integer magnitude ``v``.
        sign: +1 or -1 (only used by :data:`SIGNED_OPS`).
        applied: whether the op's coin flip (p = ``apply_p``) came up.
    """

    name: str
    magnitude: int
    sign: int
    applied: bool

    def __str__(self) -> str:
        signed = f"{'+' if self.sign > 0 else '-'}" if self.name in SIGNED_OPS else ""
        return f"{self.name}({signed}{self.magnitude})"


class RandAugment:
    """CLSA's RandAugment on ``uint8`` images.

    Input: ``uint8`` tensor ``[..., 3, H, W]``. Output: ``uint8`` tensor of the same shape.

    ``num_ops`` ops are drawn from the pool **with replacement** (the same op may come twice);
    each gets a magnitude uniform in ``magnitude_range`` (inclusive) and a random sign, and is
    applied with probability ``apply_p``, in the order drawn.

    Args:
        num_ops: ops drawn per image (CLSA: 5).
        apply_p: probability of applying each drawn op (CLSA: 0.5).
        magnitude_range: inclusive integer range of ``v`` (CLSA: 1..9, ``np.random.randint(1, 10)``).
        pool: ``"official"`` (with Identity, the default) or ``"paper"`` (with Invert), or an
            explicit sequence of op names from :data:`RANDAUGMENT_OPS`.
    """

    def __init__(self, num_ops: int = 5, apply_p: float = 0.5, magnitude_range: tuple[int, int] = (1, 9), pool="official"):
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}")
        if not 0 <= apply_p <= 1:
            raise ValueError(f"apply_p is a probability and must lie in [0, 1], got {apply_p}")
        low, high = magnitude_range
        if not (int(low) == low and int(high) == high and 0 <= low <= high <= _PARAMETER_MAX):
            raise ValueError(f"magnitude_range must be integers with 0 <= min <= max <= {_PARAMETER_MAX}, got {tuple(magnitude_range)}")
        if isinstance(pool, str):
            if pool not in RANDAUGMENT_POOLS:
                raise ValueError(f"unknown RandAugment pool {pool!r}; choose one of {sorted(RANDAUGMENT_POOLS)} or pass op names")
            names = RANDAUGMENT_POOLS[pool]
        else:
            names = tuple(pool)
            unknown = [name for name in names if name not in RANDAUGMENT_OPS]
            if unknown or not names:
                raise ValueError(f"pool must be a non-empty list of ops from {sorted(RANDAUGMENT_OPS)}, got unknown {unknown or 'empty pool'}")
        self.num_ops = int(num_ops)
        self.apply_p = float(apply_p)
        self.magnitude_range = (int(low), int(high))
        self.pool = names

    def sample(self) -> list[OpDraw]:
        """Draw ``num_ops`` ops (with replacement), magnitudes, signs and coin flips."""
        n = self.num_ops
        index = torch.randint(len(self.pool), (n,)).tolist()
        magnitude = torch.randint(self.magnitude_range[0], self.magnitude_range[1] + 1, (n,)).tolist()
        sign = (torch.randint(2, (n,)) * 2 - 1).tolist()
        applied = (torch.rand(n) < self.apply_p).tolist()
        return [OpDraw(self.pool[i], m, s, a) for i, m, s, a in zip(index, magnitude, sign, applied)]

    @staticmethod
    def apply(img: torch.Tensor, draws: list[OpDraw]) -> torch.Tensor:
        """Apply the draws whose coin came up, in order."""
        if img.dtype != torch.uint8:
            raise ValueError(f"RandAugment works on uint8 images (values 0..255), got dtype {img.dtype}")
        for draw in draws:
            if draw.applied:
                img = RANDAUGMENT_OPS[draw.name](img, draw.magnitude, draw.sign)
        return img

    def augment(self, img: torch.Tensor) -> tuple[torch.Tensor, list[OpDraw]]:
        """Augment ``img``; also return the ops actually applied (for visualisation)."""
        draws = self.sample()
        return self.apply(img, draws), [draw for draw in draws if draw.applied]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.apply(img, self.sample())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_ops={self.num_ops}, apply_p={self.apply_p}, magnitude_range={self.magnitude_range}, pool={self.pool})"
