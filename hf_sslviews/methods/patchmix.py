"""PatchMix presets and views (model_cards/patchmix.md)."""

from __future__ import annotations

from ..modeling.patchmix import PatchMixConfig, PatchMixForPreTraining
from ..views.augment import ViewAugmentation
from ..views.base import ViewTransform
from ..views.multi_view import MultiViewTransform
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import FMNIST_BACKBONE, FMNIST_TRAINING, FMNIST_VIEWS, TINY_BACKBONE, TINY_TRAINING


def build_patchmix_views(
    config,
    image_column: str = "image",
    scale: tuple[float, float] = (0.08, 1.0),
    num_local_crops: int = 0,
    local_size: int = 96,
    local_scale: tuple[float, float] = (0.05, 0.35),
    **view_kwargs,
) -> ViewTransform:
    """The BYOL / MoCo v3 asymmetric pair, plus optional local crops.

    Output keys: ``pixel_values_1`` (blur p=1), ``pixel_values_2`` (blur p=0.1, solarize p=0.2),
    both ``float32 [3, image_size, image_size]``; with ``num_local_crops > 0`` also
    ``local_pixel_values``, ``float32 [num_local_crops, 3, local_size, local_size]`` (blur
    p=0.5, no solarize; the ViT interpolates its position embedding for them).

    Args:
        config: a :class:`PatchMixConfig` (size and normalisation).
        image_column: the dataset's image column.
        scale: crop-area range of the global views (CIFAR (0.1, 1), ImageNet (0.35, 1)).
        num_local_crops: local crops per image (ImageNet recipe: 8; 0 turns them off).
        local_size: side of a local crop in pixels (96); a multiple of the patch size.
        local_scale: crop-area range of the local crops ((0.05, 0.35)).
        **view_kwargs: further :class:`ViewAugmentation` arguments for every view.
    """
    common = dict(mean=tuple(config.image_mean), std=tuple(config.image_std), **view_kwargs)
    views: dict = {
        "pixel_values_1": ViewAugmentation.from_settings("byol_view1", size=config.image_size, scale=tuple(scale), **common),
        "pixel_values_2": ViewAugmentation.from_settings("byol_view2", size=config.image_size, scale=tuple(scale), **common),
    }
    if num_local_crops < 0:
        raise ValueError(f"num_local_crops must be >= 0, got {num_local_crops}")
    if num_local_crops:
        local = ViewAugmentation.from_settings("local", size=local_size, scale=tuple(local_scale), **common)
        views["local_pixel_values"] = [local] * num_local_crops
    return MultiViewTransform(views, image_column=image_column)


def _vit(name: str, image_size: int, patch_size: int, **backbone_kwargs) -> dict:
    # timm ViTs already have qkv_bias, LayerNorm eps 1e-6 and learned position embeddings.
    return dict(backbone=name, backbone_kwargs={"img_size": image_size, "patch_size": patch_size, "drop_path_rate": 0.1, **backbone_kwargs}, image_size=image_size)


# The official ViT-S has 12 attention heads of width 32 (main_pretrain.py), not timm's 6 of 64.
_OFFICIAL_VIT_S_HEADS = {"num_heads": 12}
# Official runs normalise the heads' BatchNorm over the global batch (SyncBatchNorm under DDP).
_MULTI_GPU = dict(sync_batchnorm=True)


_CIFAR_NORM = dict(image_mean=[0.4914, 0.4822, 0.4465], image_std=[0.247, 0.243, 0.261])
# AdamW (biases / 1-d parameters without decay: SSLTrainer), cosine lr to 1e-6 after warm-up.
_COSINE_TO_1E6 = dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 1e-6})
_CIFAR_TRAINING = dict(num_train_epochs=800, per_device_train_batch_size=512, warmup_steps=100 / 800, **_COSINE_TO_1E6, bf16=True, **_MULTI_GPU)

PRESETS = {
    "patchmix_tiny": Preset(
        "CPU smoke recipe: 4-block ViT-Tiny/4 at 32 px, small heads, no momentum encoder (as the paper's ViT-T), m=2, 3 epochs on the embedded sample.",
        config=dict(
            **{**TINY_BACKBONE, "backbone_kwargs": {**TINY_BACKBONE["backbone_kwargs"], "drop_path_rate": 0.1}},
            projector_hidden_dim=512,
            projector_dim=128,
            use_momentum_encoder=False,
        ),
        views=dict(scale=(0.2, 1.0)),
        training={**TINY_TRAINING, "weight_decay": 0.02, "weight_decay_end": 0.2, **_COSINE_TO_1E6},
    ),
    "patchmix_fmnist": Preset(
        "Reference CPU protocol: 4-block ViT-Tiny/7 on 28 px Fashion-MNIST (16 tokens, 8 per source image at m=2), no momentum encoder (the paper's ViT-T), grey-image views, 500 steps of batch 256.",
        config=dict(**FMNIST_BACKBONE, projector_hidden_dim=512, projector_dim=128, use_momentum_encoder=False),
        views=FMNIST_VIEWS,
        training=FMNIST_TRAINING,
    ),
    "patchmix_cifar_vit_tiny": Preset(
        "PatchMix ViT-T/2 on CIFAR (32 px): AdamW lr 2e-3*bs/256 (bs 512), wd 0.02->0.2, tau 0.2, m=2, no momentum encoder, 800 epochs, 100 warm-up (C10 kNN 92.9, C100 68.8).",
        config=dict(**_vit("vit_tiny_patch16_224", 32, 2), **_CIFAR_NORM, use_momentum_encoder=False),
        views=dict(scale=(0.1, 1.0)),
        training=dict(**_CIFAR_TRAINING, learning_rate=2e-3 * 512 / 256, weight_decay=0.02, weight_decay_end=0.2),
    ),
    "patchmix_cifar_vit_small": Preset(
        "PatchMix ViT-S/2 (12 heads, as the official code) on CIFAR (32 px): AdamW lr 5e-4*bs/256 (bs 512), wd 0.04->0.4, tau 0.2, m=2, EMA 0.996->1 per step, 800 epochs, 100 warm-up (C10 kNN 94.6, C100 75.4).",
        config=dict(**_vit("vit_small_patch16_224", 32, 2, **_OFFICIAL_VIT_S_HEADS), **_CIFAR_NORM, use_momentum_encoder=True, momentum_base=0.996),
        views=dict(scale=(0.1, 1.0)),
        training=dict(**_CIFAR_TRAINING, learning_rate=5e-4 * 512 / 256, weight_decay=0.04, weight_decay_end=0.4),
    ),
    "patchmix_imagenet_vit_small": Preset(
        "PatchMix ViT-S/16 (12 heads) on ImageNet-1K: 2x224 + 8x96 local crops (identity + 1.0 mix->origin each), AdamW lr 5e-4*bs/256 (bs 1024 = 8 x 128), wd 0.04->0.4, tau 0.2, m=2, EMA 0.996->1, 300 epochs (kNN 73.3, linear 77.4).",
        config=dict(**_vit("vit_small_patch16_224", 224, 16, **_OFFICIAL_VIT_S_HEADS), use_momentum_encoder=True, momentum_base=0.996),
        views=dict(scale=(0.35, 1.0), num_local_crops=8, local_size=96, local_scale=(0.05, 0.35)),
        training=dict(
            num_train_epochs=300,
            per_device_train_batch_size=128,
            learning_rate=5e-4 * 1024 / 256,
            weight_decay=0.04,
            weight_decay_end=0.4,
            warmup_steps=10 / 300,  # [ours] the paper gives no ImageNet warm-up length: DINO's 10 epochs
            **_COSINE_TO_1E6,
            bf16=True,
            **_MULTI_GPU,
        ),
    ),
}


RECIPE = register_recipe(
    MethodRecipe(
        name="patchmix",
        config_class=PatchMixConfig,
        model_class=PatchMixForPreTraining,
        build_views=build_patchmix_views,
        presets=PRESETS,
    )
)

__all__ = ["PRESETS", "RECIPE", "build_patchmix_views"]
