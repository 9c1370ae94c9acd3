"""View transforms: ``datasets`` transforms turning an image column into random views."""

from .aps import APS_SETTINGS, APSViewTransform, kept_patch_overlap, patch_coverage, selective_patch_indices, sparse_patch_chunks
from .augment import VIEW_SETTINGS, CropBox, ViewAugmentation, sample_crop_box
from .base import ViewTransform
from .clsa import CLSA_SETTINGS, CLSAViewTransform
from .decode import ImageDecodeError, decode_image, to_rgb
from .mulan import MULTITASK_SETTINGS, MultiTaskViewTransform, apply_cutout, cutout_box
from .multi_view import MultiViewTransform, two_view_transform
from .randaugment import RANDAUGMENT_OPS, RANDAUGMENT_POOLS, OpDraw, RandAugment

__all__ = [
    "APS_SETTINGS",
    "APSViewTransform",
    "CLSA_SETTINGS",
    "CLSAViewTransform",
    "CropBox",
    "ImageDecodeError",
    "MULTITASK_SETTINGS",
    "MultiTaskViewTransform",
    "MultiViewTransform",
    "OpDraw",
    "RANDAUGMENT_OPS",
    "RANDAUGMENT_POOLS",
    "RandAugment",
    "VIEW_SETTINGS",
    "ViewAugmentation",
    "ViewTransform",
    "apply_cutout",
    "cutout_box",
    "decode_image",
    "kept_patch_overlap",
    "patch_coverage",
    "sample_crop_box",
    "selective_patch_indices",
    "sparse_patch_chunks",
    "to_rgb",
    "two_view_transform",
]
