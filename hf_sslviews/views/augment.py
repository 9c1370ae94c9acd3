"""One parameterised view: random resized crop, flip, colour jitter, grayscale, blur, solarize.

Every view family of the library (the BYOL / MoCo v3 pair, APS's crops, MULAN's global, local
and cutout views, CLSA's weak views) is this one class with other arguments. Named settings (``VIEW_SETTINGS``)
give the papers' choices; keyword arguments override them. (A "preset", in this library, is a
method's recipe: config, views and training flags; see ``hf_sslviews.methods``.)

The work is done on ``uint8`` tensors with ``torchvision.transforms.v2.functional``: one
PIL -> tensor conversion per image, then cheap tensor ops, and the crop is resized before the
photometric ops so they touch only ``size x size`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from .base import IMAGENET_MEAN, IMAGENET_STD
from .worker_memory import view_output


@dataclass(frozen=True)
class CropBox:
    """Where a view came from, in source-image pixels.

    Attributes:
        top, left, height, width: the crop rectangle in the source image.
        flipped: whether the crop was mirrored horizontally after resizing.
    """

    top: int
    left: int
    height: int
    width: int
    flipped: bool

    def as_tensor(self) -> torch.Tensor:
        """``float32 [5]``: top, left, height, width, flipped (0 or 1)."""
        return torch.tensor([self.top, self.left, self.height, self.width, float(self.flipped)], dtype=torch.float32)


def sample_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """Draw a RandomResizedCrop rectangle ``(top, left, h, w)`` with torch's RNG.

    Same distribution as torchvision's RandomResizedCrop (area uniform in ``scale``, log-uniform
    aspect ratio, ten tries, then a centre crop clamped to ``ratio``); written out because the
    crop box itself is needed (APS maps patches between views through it).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)).item())
            left = int(torch.randint(0, width - w + 1, (1,)).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    h, w = max(1, min(h, height)), max(1, min(w, width))
    return (height - h) // 2, (width - w) // 2, h, w


# A JPEG may be decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's scaled IDCT, through PIL's
# draft) only when every crop of the image keeps at least twice its output side at that scale:
# Pillow's own reducing_gap for thumbnails, at which its documentation calls the result
# indistinguishable from resampling the full-size image. (At 1/2, decode.load_uint8_tensor
# decodes whole instead: libjpeg-turbo's whole decode is as fast, and exact.)
REDUCED_DECODE_GAP = 2.0


def decode_reduction(boxes: Sequence[CropBox], sizes: Sequence[int], gap: float = REDUCED_DECODE_GAP) -> int:
    """The largest of 8, 4, 2 at which every crop box still spans ``gap`` x its output side; else 1.

    Args:
        boxes: the crop boxes of all views of one image, in its full-size pixels.
        sizes: each view's output side in pixels.
    """
    for factor in (8, 4, 2):
        if all(min(box.height, box.width) >= gap * factor * size for box, size in zip(boxes, sizes)):
            return factor
    return 1


# Per-crop work in ``photometric_normalize_batch`` is memory-bound past a few dozen 32 px
# crops; chunks of at most 64 crops and 100 k pixels (two 224 px crops, ten at 96 px, 0.4 MB of
# float32 a crop-sized intermediate) keep the intermediates in cache and a DataLoader worker's
# memory flat. Bigger chunks gain nothing at 224 px, where the costly ops (jitter, blur) work
# crop by crop anyway, and each 224 px crop in a chunk adds 0.6 MB to every intermediate.
PHOTOMETRIC_CHUNK = 64
PHOTOMETRIC_CHUNK_PIXELS = 2 * 224 * 224
# The batched float32 path beats the per-crop uint8 one at every size: small crops are
# overhead-bound (32 px: ~2.4x), large ones gain from the separable blur and the crop-by-crop
# jitter (224 px, one core: 4.4 vs 5.2 ms a crop with blur p=1, 2.2 vs 2.3 with p=0.1).


def _blur_kernel_size(size: int) -> int:
    # BYOL / MoCo use a kernel of about 10% of the crop side (23 px at 224); it must be odd.
    return max(3, int(0.1 * size) // 2 * 2 + 1)


# The papers' view settings. Keys are ViewAugmentation arguments.
VIEW_SETTINGS: dict[str, dict] = {
    # BYOL / MoCo v3 / PatchMix / MULAN asymmetric pair (model_cards/patchmix.md and model_cards/mulan.md).
    "byol_view1": dict(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0, solarize_p=0.0),
    "byol_view2": dict(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2),
    # MULAN / DINO local crops.
    "local": dict(size=96, scale=(0.05, 0.35), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.5, solarize_p=0.0),
    # MoCo v2 / CLSA weak view.
    "mocov2": dict(jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.5, solarize_p=0.0, scale=(0.2, 1.0)),
    # APS crops: no blur, no solarize (the asymmetry comes from patch sampling).
    "aps": dict(jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.0, solarize_p=0.0, scale=(0.15, 1.0)),
}


class ViewAugmentation:
    """One random view of an image.

    Input: ``uint8`` tensor ``[3, H, W]`` (any H, W >= 1).
    Output: ``float32`` tensor ``[3, size, size]``, normalised with ``mean`` / ``std``.

    Augmentations, in order: RandomResizedCrop(size, scale, ratio) -> horizontal flip(p) ->
    colour jitter (brightness, contrast, saturation, hue in random order, with probability
    ``jitter_p``) -> grayscale(p) -> Gaussian blur(p, sigma) -> solarize(p, threshold 128) ->
    normalise. Set a probability to 0 to drop an op.

    Args:
        size: output side in pixels.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio.
        flip_p: probability of a horizontal flip.
        jitter: (brightness, contrast, saturation, hue) strengths of the colour jitter.
        jitter_p: probability of applying the colour jitter.
        grayscale_p: probability of converting to grayscale (kept as 3 channels).
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's sigma in pixels.
        solarize_p: probability of solarizing (pixels >= 128 inverted).
        mean, std: normalisation statistics (ImageNet's by default).
        interpolation: "bicubic" (the papers' choice) or "bilinear".
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_p: float = 0.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        interpolation: str = "bicubic",
    ):
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        for name, pair in (("scale", scale), ("ratio", ratio)):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"{name} must be a (min, max) pair, e.g. {name}=(0.2, 1.0); got {pair!r}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1 (fractions of the image area), got {tuple(scale)}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("grayscale_p", grayscale_p), ("blur_p", blur_p), ("solarize_p", solarize_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability and must lie in [0, 1], got {p}")
        if interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', got {interpolation!r}")
        self.size = int(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip_p = flip_p
        self.jitter = tuple(jitter)
        self.jitter_p = jitter_p
        self.grayscale_p = grayscale_p
        self.blur_p = blur_p
        self.blur_sigma = tuple(blur_sigma)
        self.solarize_p = solarize_p
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = InterpolationMode.BICUBIC if interpolation == "bicubic" else InterpolationMode.BILINEAR
        self.blur_kernel = _blur_kernel_size(self.size)

    @classmethod
    def from_settings(cls, name: str, **overrides) -> "ViewAugmentation":
        """A view with the settings of ``VIEW_SETTINGS[name]``, then ``overrides``."""
        if name not in VIEW_SETTINGS:
            raise ValueError(f"unknown view settings {name!r}; choose one of {sorted(VIEW_SETTINGS)}")
        return cls(**{**VIEW_SETTINGS[name], **overrides})

    def geometric(self, image: torch.Tensor) -> tuple[torch.Tensor, CropBox]:
        """Random resized crop and flip of a ``uint8 [3, H, W]`` image; returns the crop box too."""
        box = self.draw_geometry(*image.shape[-2:])
        return self.crop(image, box), box

    def draw_geometry(self, height: int, width: int) -> CropBox:
        """The random crop box and flip of a view of a ``height x width`` image, before any pixel is touched."""
        top, left, h, w = sample_crop_box(height, width, self.scale, self.ratio)
        return CropBox(top, left, h, w, bool(torch.rand(()) < self.flip_p))

    def crop(self, image: torch.Tensor, box: CropBox, scale: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
        """The ``uint8 [3, size, size]`` view of ``box`` (source pixels), resized and flipped.

        ``image`` may be the source decoded at a reduced size (:func:`decode_reduction`); ``scale``
        is then (its height / the source's, its width / the source's) and the box is mapped onto it
        (to the nearest reduced pixel: at most half a reduced pixel off, under the output's
        resolution whenever the crop keeps twice the output's side).
        """
        top, left, h, w = box.top, box.left, box.height, box.width
        if scale != (1.0, 1.0):
            height, width = image.shape[-2:]
            top, left = min(round(top * scale[0]), height - 1), min(round(left * scale[1]), width - 1)
            h, w = max(1, min(round(h * scale[0]), height - top)), max(1, min(round(w * scale[1]), width - left))
        crop = F.resized_crop(image, top, left, h, w, [self.size, self.size], interpolation=self.interpolation, antialias=True)
        return F.horizontal_flip(crop) if box.flipped else crop

    def photometric(self, crop: torch.Tensor) -> torch.Tensor:
        """Colour jitter, grayscale, blur and solarize on a ``uint8`` crop (returns ``uint8``)."""
        if self.jitter_p > 0 and torch.rand(()) < self.jitter_p:
            crop = self._color_jitter(crop)
        if self.grayscale_p > 0 and torch.rand(()) < self.grayscale_p:
            crop = F.rgb_to_grayscale(crop, num_output_channels=3)
        if self.blur_p > 0 and torch.rand(()) < self.blur_p:
            sigma = torch.empty(1).uniform_(*self.blur_sigma).item()
            crop = gaussian_blur_uint8(crop, sigma, self.blur_kernel)
        if self.solarize_p > 0 and torch.rand(()) < self.solarize_p:
            crop = F.solarize(crop, threshold=128)
        return crop

    def normalize(self, crop: torch.Tensor) -> torch.Tensor:
        """``uint8 [3, s, s]`` -> normalised ``float32``."""
        return F.normalize(F.to_dtype(crop, torch.float32, scale=True), self.mean, self.std)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        crop, _ = self.geometric(image)
        return self.normalize(self.photometric(crop))

    def photometric_normalize_batch(self, crops: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`photometric` then :meth:`normalize` on a batch of crops, each with its own draws.

        The same ops, order randomisation, probabilities and factor ranges as :meth:`photometric`,
        drawn independently per crop, but computed on ``float32`` for the whole batch at once:
        at 32 px the per-op overhead of 10 to 20 small tensor ops per crop costs more than the
        arithmetic, and one batched op costs about as much as one per-crop op. The results equal
        ``normalize(photometric(crop))`` up to the 8-bit truncation that the ``uint8`` path
        applies after each op (about -0.5 level of 1/255 per op there, none here); the random
        numbers are drawn in another order, so a seed gives other views than the per-crop path.

        Args:
            crops: ``uint8`` tensor ``[N, 3, size, size]`` (e.g. stacked :meth:`geometric` crops).
            out: a ``float32`` tensor of the same shape to write the result into (allocated when not given).

        Returns:
            ``float32`` tensor ``[N, 3, size, size]``, normalised with ``mean`` / ``std``.
        """
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be a uint8 tensor [N, 3, H, W], got shape {tuple(crops.shape)}")
        n, device = crops.shape[0], crops.device
        x = crops.to(torch.float32).mul_(1.0 / 255.0)
        if n == 0:
            return x if out is None else out
        # Large crops on a CPU: the ops that touch a few crops work on each crop's slice in place;
        # gathering those crops and scattering them back would copy each twice.
        per_crop = device.type == "cpu" and crops.shape[-2] * crops.shape[-1] > PER_CROP_JITTER_MIN_PIXELS
        # Draws come from torch's CPU generator whatever the device: a seed gives the same views on
        # CPU and GPU, and the few numbers per crop cost nothing to move.
        if self.jitter_p > 0:
            apply = torch.rand(n) < self.jitter_p
            order = torch.rand(n, 4).argsort(dim=1)
            low, high = _jitter_ranges(self.jitter)
            factors = low + (high - low) * torch.rand(n, 4)
            # apply and order steer Python control flow: they stay on the CPU (no device syncs).
            x = color_jitter_float(x, apply, order, factors.to(device), enabled=tuple(j > 0 for j in self.jitter), in_place=True)
        if self.grayscale_p > 0:
            gray = (torch.rand(n) < self.grayscale_p).nonzero().squeeze(1)
            if per_crop:
                for index in gray.tolist():
                    part = x[index : index + 1]
                    part.copy_(_grayscale_float(part).expand_as(part))
            elif gray.numel():
                gray = gray.to(device)
                x[gray] = _grayscale_float(x[gray]).expand(-1, 3, -1, -1)
        if self.blur_p > 0:
            blur = (torch.rand(n) < self.blur_p).nonzero().squeeze(1)
            sigmas = torch.empty(n).uniform_(*self.blur_sigma)
            if per_crop:
                for index in blur.tolist():
                    part = x[index : index + 1]
                    gaussian_blur_float(part, sigmas[index : index + 1], self.blur_kernel, out=part)
            elif blur.numel():
                x[blur.to(device)] = gaussian_blur_float(x[blur.to(device)], sigmas[blur], self.blur_kernel)
        if self.solarize_p > 0:
            solarize = (torch.rand(n) < self.solarize_p).nonzero().squeeze(1)
            if per_crop:
                for index in solarize.tolist():
                    part = x[index : index + 1]
                    part.copy_(solarize_float(part))
            elif solarize.numel():
                solarize = solarize.to(device)
                x[solarize] = solarize_float(x[solarize])
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        if out is None:
            return x.sub_(mean).div_(std)
        return torch.sub(x, mean, out=out).div_(std)

    def batch_views(self, images: Sequence[torch.Tensor], out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One view of each image of a list: ``uint8 [3, H_i, W_i]`` images -> ``float32 [N, 3, size, size]``.

        The same distribution as calling the view on each image. The crops are drawn per image;
        the photometric ops then run batched across them (:meth:`photometric_normalize_crops`).
        ``out``: a ``float32 [N, 3, size, size]`` tensor (e.g. one view's slice of a multi-view
        batch) to write into instead of allocating.
        """
        return self.photometric_normalize_crops(self.crops_of(images), out=out)

    def crops_of(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """The geometric half of one view of each image: ``uint8 [N, 3, size, size]`` crops."""
        if not images:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return torch.stack([self.geometric(image)[0] for image in images])

    def photometric_normalize_crops(self, crops: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`photometric` and :meth:`normalize` of ``uint8 [N, 3, s, s]`` crops, batched across the crops.

        Batched (:meth:`photometric_normalize_batch`) in chunks of at most 64 crops and 100 k pixels,
        each written into ``out`` (allocated when not given: in shared memory inside a DataLoader
        worker, where the result goes into the batch), so no second copy of the batch is made.
        """
        if out is None:
            out = view_output(crops.shape, torch.float32) if crops.device.type == "cpu" else torch.empty(crops.shape, dtype=torch.float32, device=crops.device)
        chunk = max(1, min(PHOTOMETRIC_CHUNK, PHOTOMETRIC_CHUNK_PIXELS // (crops.shape[-1] * crops.shape[-2])))
        for start in range(0, crops.shape[0], chunk):
            self.photometric_normalize_batch(crops[start : start + chunk], out=out[start : start + chunk])
        return out

    def _color_jitter(self, crop: torch.Tensor) -> torch.Tensor:
        brightness, contrast, saturation, hue = self.jitter
        # Same op order randomisation and factor ranges as torchvision's ColorJitter.
        for op in torch.randperm(4).tolist():
            if op == 0 and brightness > 0:
                crop = F.adjust_brightness(crop, torch.empty(1).uniform_(max(0.0, 1 - brightness), 1 + brightness).item())
            elif op == 1 and contrast > 0:
                crop = F.adjust_contrast(crop, torch.empty(1).uniform_(max(0.0, 1 - contrast), 1 + contrast).item())
            elif op == 2 and saturation > 0:
                crop = F.adjust_saturation(crop, torch.empty(1).uniform_(max(0.0, 1 - saturation), 1 + saturation).item())
            elif op == 3 and hue > 0:
                crop = adjust_hue_uint8(crop, torch.empty(1).uniform_(-hue, hue).item())
        return crop

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, flip_p={self.flip_p}, jitter={self.jitter}, "
            f"jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, blur_p={self.blur_p}, solarize_p={self.solarize_p})"
        )


# Above this many pixels per crop (64 x 64), the batched colour jitter works crop by crop in place.
PER_CROP_JITTER_MIN_PIXELS = 64 * 64
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
# hsv -> rgb: channel c is V - C * clamp(min(k, 4 - k), 0, 1) with k = (n_c + 6 h) mod 6.
_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)


def _jitter_ranges(jitter: tuple[float, float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor ranges of torchvision's ColorJitter: [max(0, 1-s), 1+s] for B, C, S; [-h, h] for hue."""
    brightness, contrast, saturation, hue = jitter
    low = torch.tensor([max(0.0, 1 - brightness), max(0.0, 1 - contrast), max(0.0, 1 - saturation), -hue])
    high = torch.tensor([1 + brightness, 1 + contrast, 1 + saturation, hue])
    return low, high


def _grayscale_float(x: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, 1, H, W]`` luma."""
    r, g, b = x.unbind(dim=1)
    return r.mul(_GRAY_WEIGHTS[0]).add_(g, alpha=_GRAY_WEIGHTS[1]).add_(b, alpha=_GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend_float(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (x * factor).add_(other * (1.0 - factor)).clamp_(0.0, 1.0)


def gaussian_blur_float(x: torch.Tensor, sigmas: torch.Tensor, kernel_size: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gaussian blur of ``float [N, C, H, W]`` images, each with its own ``sigmas [N]``.

    torchvision's ``gaussian_blur`` (the same kernel samples and reflect padding), computed as two
    1-d passes, and with each image's kernel cut at 4 sigma (odd sizes): the weights beyond hold
    under 1e-4 of the kernel's mass (under 0.03 grey levels), while a kernel of 23 for sigma 0.1
    costs 23 multiply-adds a pixel for nothing. ``out`` (same shape; may be ``x`` itself) receives
    the result; a new tensor otherwise.

    On a CPU each image's taps are summed as shifted slices scaled by a Python float, image by
    image: one fused pass per tap and no temporaries besides the padded image. (Depthwise
    ``conv2d`` with a 1 x k kernel takes a slow path on CPU for k <= 9: 3 to 5 ms for one 224 px
    image against 0.2 to 0.5 ms; a chunk of images at once is 1.7x slower than image by image.)
    On other devices, images of one kernel size are blurred together by two grouped convolutions.
    """
    if out is None:
        out = torch.empty_like(x)
    if x.shape[0] == 0:
        return out
    sizes = torch.full((x.shape[0],), kernel_size, dtype=torch.long)
    if kernel_size % 2 == 1:
        sizes = (2 * torch.ceil(4 * sigmas.detach().float().cpu()).long() + 1).clamp_(3, kernel_size)
    if x.device.type == "cpu":
        for index, (sigma, size) in enumerate(zip(sigmas.tolist(), sizes.tolist())):
            _blur_one_image(x[index], _gaussian_kernel(sigma, size), out=out[index])
        return out
    for size in sizes.unique().tolist():
        rows = (sizes == size).nonzero().squeeze(1).to(x.device)
        out[rows] = _blur_grouped(x[rows], sigmas[rows.to(sigmas.device)], size)
    return out


def _gaussian_kernel(sigma: float, size: int) -> list[float]:
    """torchvision's 1-d Gaussian kernel: ``size`` samples of exp(-x^2 / 2 sigma^2) at integer offsets, summing to 1."""
    half = (size - 1) * 0.5
    weights = torch.exp(-0.5 * (torch.linspace(-half, half, size) / sigma) ** 2)
    return (weights / weights.sum()).tolist()


def _blur_one_image(image: torch.Tensor, weights: list[float], out: torch.Tensor) -> torch.Tensor:
    """Separable blur of one ``[C, H, W]`` image with reflect padding, written into ``out`` (may alias ``image``)."""
    _, height, width = image.shape
    size = len(weights)
    pad = size // 2
    padded = torch.nn.functional.pad(image.unsqueeze(0), [pad, pad, pad, pad], mode="reflect")[0]
    rows = padded[:, :, 0:width] * weights[0]
    for tap in range(1, size):
        rows.add_(padded[:, :, tap : tap + width], alpha=weights[tap])
    torch.mul(rows[:, 0:height], weights[0], out=out)
    for tap in range(1, size):
        out.add_(rows[:, tap : tap + height], alpha=weights[tap])
    return out


def _blur_grouped(x: torch.Tensor, sigmas: torch.Tensor, kernel_size: int) -> torch.Tensor:
    n, c, height, width = x.shape
    half = (kernel_size - 1) * 0.5
    grid = torch.linspace(-half, half, kernel_size, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (grid.view(1, -1) / sigmas.to(x).view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [N*C, k]
    pad = kernel_size // 2
    out = torch.nn.functional.pad(x.reshape(1, n * c, height, width), [pad, pad, pad, pad], mode="reflect")
    out = torch.nn.functional.conv2d(out, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    out = torch.nn.functional.conv2d(out, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return out.view(n, c, height, width)


def gaussian_blur_uint8(crop: torch.Tensor, sigma: float, kernel_size: int) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` of one ``uint8 [3, H, W]`` crop, as two 1-d convolutions.

    Same kernel, reflect padding and rounding back to ``uint8`` as ``F.gaussian_blur``, which
    convolves with the full ``k x k`` kernel (529 multiply-adds per pixel at 224 px, kernel 23)
    where two 1-d passes of the kernel cut at 4 sigma take 6 to 46 (:func:`gaussian_blur_float`).
    Equal up to rounding (at most 1 level, on under 0.1% of the pixels: tested).
    """
    blurred = gaussian_blur_float(crop.unsqueeze(0).to(torch.float32), torch.tensor([sigma]), kernel_size)[0]
    return blurred.round_().clamp_(0, 255).to(torch.uint8)


def adjust_hue_uint8(crop: torch.Tensor, hue: float) -> torch.Tensor:
    """torchvision's ``adjust_hue`` of one ``uint8 [3, H, W]`` crop through :func:`adjust_hue_float`.

    The same conversions as torchvision (``uint8 -> [0, 1]`` float, back with ``to_dtype(scale=True)``)
    around the closed-form hue rotation, about 4x faster than ``F.adjust_hue`` at 224 px.
    """
    rotated = adjust_hue_float(F.to_dtype(crop, torch.float32, scale=True).unsqueeze(0), torch.tensor([hue]))[0]
    return F.to_dtype(rotated.clamp_(0.0, 1.0), torch.uint8, scale=True)


def adjust_hue_float(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of ``float [N, 3, H, W]`` images in [0, 1] by ``hue [N]`` turns.

    Same HSV model as torchvision's ``adjust_hue`` (hexcone hue, value = max channel), written
    with the closed-form hsv -> rgb, so it takes about twenty ops instead of forty, most of them
    in place (comparisons are avoided: a ``bool`` result costs as much as three float ops on CPU).
    """
    maxc = x.amax(dim=1, keepdim=True)
    chroma = maxc - x.amin(dim=1, keepdim=True)
    # (maxc - x) / chroma in [0, 1]; grey pixels have chroma 0 and (maxc - x) = 0, so any positive
    # divisor gives 0 there.
    distance = (maxc - x).div_(chroma.clamp(min=1e-12))
    rc, gc, bc = distance.unbind(dim=1)
    # Hexcone sector (6 h) by the channel holding the maximum, red first, then green (as
    # torchvision). A channel holds the maximum exactly when its distance is 0, and distances lie
    # in [0, 1], so 1 - ceil(distance) is that test as a float mask.
    not_r = torch.ceil(rc)
    is_g = torch.ceil(gc).neg_().add_(1.0).mul_(not_r)
    from_b = (gc - rc).add_(4.0)
    # sector = is_r * (bc - gc) + is_g * (rc - bc + 2) + (1 - is_r - is_g) * from_b, with is_r = 1 - not_r:
    from_r = bc - gc
    sector = from_r.addcmul(not_r, from_r - from_b, value=-1.0)
    sector.addcmul_(is_g, (rc - bc).add_(2.0).sub_(from_b))
    sector.add_(6.0 * hue.to(x).view(-1, 1, 1))
    # hsv -> rgb: channel c is V - C * clamp(min(k, 4 - k), 0, 1), k = (sector + offset_c) mod 6;
    # min(k, 4 - k) = 2 - |k - 2| on [0, 6), so the channel is V - 2C + C * clamp(|k - 2|, 1, 2).
    k = sector.unsqueeze(1) + _HUE_OFFSETS.to(x.device)
    k.sub_(torch.floor(k * (1.0 / 6.0)), alpha=6.0)
    shape = k.sub_(2.0).abs_().clamp_(1.0, 2.0)
    return shape.mul_(chroma).add_(maxc).sub_(chroma, alpha=2.0)


def solarize_float(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``solarize`` at threshold 128 of images in [0, 1] (``x >= 128 / 255`` inverted)."""
    # x - mask * (2x - 1) is 1 - x where the mask is set: arithmetic instead of torch.where,
    # which is ten times slower on a CPU.
    return x - (x >= 128.0 / 255.0).to(x.dtype).mul_(x * 2.0 - 1.0)


def color_jitter_float(
    x: torch.Tensor, apply: torch.Tensor, order: torch.Tensor, factors: torch.Tensor, enabled: tuple[bool, bool, bool, bool] = (True,) * 4, in_place: bool = False
) -> torch.Tensor:
    """torchvision's ColorJitter on a batch, with explicit per-image draws.

    Args:
        x: ``float32 [N, 3, H, W]`` in [0, 1].
        apply: ``bool [N]``, whether image i is jittered at all (on the CPU, or on ``x``'s device).
        order: ``int64 [N, 4]``, a permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue)
            per image: the order its ops are applied in (same device rule).
        factors: ``float32 [N, 4]``: brightness, contrast, saturation factors and hue shift.
        enabled: which of the four ops exist (strength > 0), as in ColorJitter.
        in_place: write into ``x`` (a caller that owns it saves a copy of the batch).

    Returns:
        ``float32 [N, 3, H, W]`` in [0, 1].
    """
    if not in_place:
        x = x.clone()
    if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] > PER_CROP_JITTER_MIN_PIXELS:
        # Large crops on a CPU: each crop's four ops in place on its own slice. Gathering the crops of
        # one (step, op) and scattering them back copies every crop eight times: 3.4x slower at 224 px.
        # (On a GPU the few batched kernels of the path below beat a loop of per-crop launches.)
        crop_factors = factors.tolist()
        for index in apply.nonzero().squeeze(1).tolist():
            part = x[index : index + 1]
            for op in order[index].tolist():
                if enabled[op]:
                    _jitter_op_in_place(part, op, crop_factors[index][op])
        return x
    # Small crops (and every crop on a GPU): one op per (step, op) over the crops that take it.
    for step in range(4):
        for op in range(4):
            if not enabled[op]:
                continue
            rows = (apply & (order[:, step] == op)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            x[rows] = _jitter_op(x[rows], op, factors[rows, op])
    return x


def _jitter_op_in_place(crop: torch.Tensor, op: int, factor: float) -> None:
    """:func:`_jitter_op` on one ``[1, 3, H, W]`` crop, written into it (no copy of the crop)."""
    if op == 0:
        crop.mul_(factor).clamp_(0.0, 1.0)
    elif op == 1:
        mean = float(_grayscale_float(crop).mean())
        crop.mul_(factor).add_(mean * (1.0 - factor)).clamp_(0.0, 1.0)
    elif op == 2:
        gray = _grayscale_float(crop)
        crop.mul_(factor).add_(gray, alpha=1.0 - factor).clamp_(0.0, 1.0)
    else:
        crop.copy_(adjust_hue_float(crop, torch.tensor([factor])))


def _jitter_op(part: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """One of ColorJitter's ops (0 brightness, 1 contrast, 2 saturation, 3 hue) on ``[n, 3, H, W]``."""
    if op == 0:
        return part.mul(factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
    if op == 1:
        return _blend_float(part, _grayscale_float(part).mean(dim=(1, 2, 3), keepdim=True), factor)
    if op == 2:
        return _blend_float(part, _grayscale_float(part), factor)
    return adjust_hue_float(part, factor)
