"""MULAN presets: one predictor per view type on BYOL, SimSiam or MoCo v3 (arXiv 2602.05845)."""

from __future__ import annotations

from typing import Optional

from ..modeling.mulan import MulanConfig, MulanForPreTraining
from ..views.base import ViewTransform
from ..views.mulan import MultiTaskViewTransform
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import CIFAR_VIT_SMALL, FMNIST_BACKBONE, FMNIST_TRAINING, FMNIST_VIEWS, TINY_BACKBONE, TINY_TRAINING


def build_mulan_views(
    config,
    image_column: str = "image",
    sizes: str = "imagenet",
    n_local: int = 2,
    n_cutout: int = 1,
    global_size: Optional[int] = None,
    cutout_size: Optional[int] = None,
    **view_kwargs,
) -> ViewTransform:
    """MULAN's global / local / cutout views with the config's normalisation.

    Globals and cutouts default to ``config.image_size`` (the exported backbone's input size);
    locals take the size of ``sizes`` (96 px "imagenet", 16 px "cifar") unless ``local_size``
    is given.
    """
    return MultiTaskViewTransform(
        sizes,
        n_local=n_local,
        n_cutout=n_cutout,
        global_size=config.image_size if global_size is None else global_size,
        cutout_size=config.image_size if cutout_size is None else cutout_size,
        mean=tuple(config.image_mean),
        std=tuple(config.image_std),
        image_column=image_column,
        **view_kwargs,
    )


# ImageNet: 2 globals at 224, 2 locals at 96, 1 cutout at 224.
IMAGENET_VIEWS = dict(sizes="imagenet", n_local=2, n_cutout=1)
CIFAR_VIEWS = dict(sizes="cifar", n_local=2, n_cutout=1)
R50 = dict(backbone="resnet50", backbone_kwargs={}, image_size=224)
VIT_SMALL = dict(backbone="vit_small_patch16_224", backbone_kwargs={"drop_path_rate": 0.1}, image_size=224)

# ResNet-50: LARS (biases and norms excluded from decay and adaptation), lr 0.4 * bs / 256,
# wd 1.5e-6, 10 warm-up epochs of 200 (ratio 0.05) then cosine (model_cards/mulan.md).
# SyncBatchNorm under multi-GPU DDP in every paper preset [ours: MULAN's base frameworks'
# official code (BYOL's cross-replica BN, SimSiam's and MoCo v3's convert_sync_batchnorm)].
LARS_R50 = dict(
    optim_recipe="lars",
    num_train_epochs=200,
    per_device_train_batch_size=256,
    learning_rate=0.4,
    weight_decay=1.5e-6,
    warmup_steps=0.05,
    lr_scheduler_type="cosine",
    bf16=True,
    sync_batchnorm=True,
)
# MULAN-SimSiam ResNet-50, official (CONFIG.md): SGD momentum 0.9, lr 0.05 * bs / 256 at batch
# 512, wd 1e-4, no warm-up, cosine, predictors at a constant rate (SimSiam's fix_pred_lr); wd
# on every parameter as SimSiam's official optimizer [ours: not stated for MULAN].
SGD_SIMSIAM_R50 = dict(
    optim_recipe="sgd",
    num_train_epochs=200,
    per_device_train_batch_size=512,
    learning_rate=0.05 * 512 / 256,
    weight_decay=1e-4,
    weight_decay_all_parameters=True,
    warmup_steps=0,
    lr_scheduler_type="cosine",
    predictor_constant_lr=True,
    bf16=True,
    sync_batchnorm=True,
)
# The official ViT-S / ViT-B runs use a 3-layer projector 4096-4096-256 (--projector-mlp, CONFIG.md).
VIT_PROJECTOR = dict(projector_num_layers=3, projector_hidden_dim=4096, projector_dim=256)
# ViT: AdamW lr 3e-4 * bs / 256, betas (0.9, 0.98), wd 0.1, gradient clipping 0.5; the 10 warm-up
# epochs are [ours] (the paper gives them only for the ResNet recipe).
ADAMW_VIT = dict(
    num_train_epochs=200,
    per_device_train_batch_size=256,
    learning_rate=3e-4,
    adam_beta1=0.9,
    adam_beta2=0.98,
    weight_decay=0.1,
    max_grad_norm=0.5,
    warmup_steps=0.05,
    lr_scheduler_type="cosine",
    bf16=True,
    sync_batchnorm=True,
)
# 32 px images [ours]: the baselines' small-image schedule with MULAN's ViT optimizer settings.
ADAMW_CIFAR = dict(ADAMW_VIT, num_train_epochs=800, per_device_train_batch_size=256, learning_rate=5e-4, warmup_steps=0.01)
CIFAR_VIT_SMALL_DP = dict(CIFAR_VIT_SMALL, backbone_kwargs={**CIFAR_VIT_SMALL["backbone_kwargs"], "drop_path_rate": 0.1})


register_recipe(
    MethodRecipe(
        name="mulan",
        config_class=MulanConfig,
        model_class=MulanForPreTraining,
        build_views=build_mulan_views,
        presets={
            "mulan_tiny": Preset(
                "CPU smoke recipe: MULAN-BYOL, 4-block ViT-Tiny, 2 globals at 32 px + 2 locals at 16 px + 1 cutout, small heads, 2 epochs on the embedded sample.",
                config=dict(**TINY_BACKBONE, framework="byol", projector_hidden_dim=512, projector_dim=128, predictor_hidden_dim=512, momentum_base=0.99),
                views=CIFAR_VIEWS,
                # Five views per image cost ~3x a two-view step: 2 epochs instead of 3.
                training=dict(TINY_TRAINING, num_train_epochs=2, adam_beta2=0.98, max_grad_norm=0.5),
            ),
            "mulan_fmnist": Preset(
                "Reference CPU protocol: MULAN-MoCo v3, 4-block ViT-Tiny/7 on 28 px Fashion-MNIST: 2 globals at 28 px + 2 locals at 14 px + 1 cutout, grey-image views, 500 steps of batch 256.",
                config=dict(**FMNIST_BACKBONE, framework="mocov3", projector_hidden_dim=512, projector_dim=128, predictor_hidden_dim=512, loss_temperature=0.2, momentum_base=0.99),
                views=dict(
                    sizes="cifar", n_local=2, n_cutout=1, local_size=14, global_scale=FMNIST_VIEWS["scale"], cutout_scale=FMNIST_VIEWS["scale"], local_scale=(0.1, 0.4),
                    jitter=FMNIST_VIEWS["jitter"], grayscale_p=0.0, solarize_p=0.0,
                ),
                training=FMNIST_TRAINING,
            ),
            "mulan_byol_imagenet_r50": Preset(
                "MULAN-BYOL ResNet-50, ImageNet 224 px (+2 locals at 96, 1 cutout): LARS lr 0.4*bs/256 (bs 256), wd 1.5e-6, m 0.996->1, 10 warm-up epochs, 200 epochs (linear top-1 75.6).",
                config=dict(**R50, framework="byol", momentum_base=0.996),
                views=IMAGENET_VIEWS,
                training=LARS_R50,
            ),
            "mulan_byol_imagenet_vit_small": Preset(
                "MULAN-BYOL ViT-S/16, ImageNet 224 px: projector 4096-4096-256, AdamW lr 3e-4*bs/256 (bs 256), betas (0.9, 0.98), wd 0.1, grad-clip 0.5, drop-path 0.1, m 0.998->1, 200 epochs (linear top-1 74.5).",
                config=dict(**VIT_SMALL, **VIT_PROJECTOR, framework="byol", momentum_base=0.998),
                views=IMAGENET_VIEWS,
                training=ADAMW_VIT,
            ),
            "mulan_mocov3_imagenet_r50": Preset(
                "MULAN-MoCo v3 ResNet-50, ImageNet 224 px: LARS lr 0.4*bs/256 (bs 256), wd 1.5e-6, tau 1.0 (MoCo v3's ResNet value), m 0.996->1, 200 epochs (linear top-1 75.7).",
                config=dict(**R50, framework="mocov3", loss_temperature=1.0, momentum_base=0.996),
                views=IMAGENET_VIEWS,
                training=LARS_R50,
            ),
            "mulan_simsiam_imagenet_r50": Preset(
                "MULAN-SimSiam ResNet-50, ImageNet 224 px: task weights 1/3 each, SGD lr 0.05*bs/256 (bs 512), wd 1e-4, no warm-up, cosine, constant-lr predictors (official recipe), 200 epochs (linear top-1 74.7).",
                config=dict(**R50, framework="simsiam"),
                views=IMAGENET_VIEWS,
                training=SGD_SIMSIAM_R50,
            ),
            "mulan_byol_cifar_vit_small": Preset(
                "MULAN-BYOL ViT-Small/4 on 32 px images (locals 16 px): projector 4096-4096-256, AdamW lr 5e-4*bs/256 (bs 256), betas (0.9, 0.98), wd 0.1, clip 0.5, drop-path 0.1, m 0.99->1, 800 epochs.",
                config=dict(**CIFAR_VIT_SMALL_DP, **VIT_PROJECTOR, framework="byol", momentum_base=0.99),
                views=CIFAR_VIEWS,
                training=ADAMW_CIFAR,
            ),
            "mulan_mocov3_cifar_vit_small": Preset(
                "MULAN-MoCo v3 ViT-Small/4 on 32 px images (locals 16 px): projector 4096-4096-256, AdamW as mulan_byol_cifar_vit_small, tau 0.2, m 0.99->1, 800 epochs.",
                config=dict(**CIFAR_VIT_SMALL_DP, **VIT_PROJECTOR, framework="mocov3", loss_temperature=0.2, momentum_base=0.99),
                views=CIFAR_VIEWS,
                training=ADAMW_CIFAR,
            ),
            "mulan_simsiam_cifar_vit_small": Preset(
                "MULAN-SimSiam ViT-Small/4 on 32 px images (locals 16 px): projector 4096-4096-256 (the official ViT head), target without drop-path, task weights 1/3, AdamW as mulan_byol_cifar_vit_small, 800 epochs.",
                config=dict(**CIFAR_VIT_SMALL_DP, **VIT_PROJECTOR, framework="simsiam"),
                views=CIFAR_VIEWS,
                training=ADAMW_CIFAR,
            ),
        },
    )
)

__all__ = ["build_mulan_views"]
