"""MoCo v3 presets."""

from ..modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import CIFAR_VIT_SMALL, FMNIST_BACKBONE, FMNIST_TRAINING, FMNIST_VIEWS, TINY_BACKBONE, TINY_TRAINING, TINY_VIEWS, build_two_views, pair_presets

HEADS = dict(projector_hidden_dim=512, projector_dim=128)


register_recipe(
    MethodRecipe(
        name="mocov3",
        config_class=MoCoV3Config,
        model_class=MoCoV3ForPreTraining,
        build_views=build_two_views,
        presets={
            **pair_presets("mocov3", HEADS),
            "mocov3_ddm_fmnist": Preset(
                "mocov3_fmnist plus CLSA's DDM term on one strong (RandAugment) 14 px view per image, weight 1.",
                config=dict(**FMNIST_BACKBONE, **HEADS, ddm_weight=1.0),
                views=dict(FMNIST_VIEWS, num_strong_views=1, strong_size=14, strong_scale=(0.15, 0.5)),
                training=FMNIST_TRAINING,
            ),
            "mocov3_ddm_tiny": Preset(
                "mocov3_tiny plus CLSA's DDM term on one strong (RandAugment) 16 px view per image, weight 1 (CLSA section 5: DDM helps MoCo).",
                config=dict(**TINY_BACKBONE, **HEADS, ddm_weight=1.0),
                views=dict(TINY_VIEWS, num_strong_views=1, strong_size=16),
                training=TINY_TRAINING,
            ),
            "mocov3_cifar_vit_small": Preset(
                "MoCo v3 ViT-Small/4 on 32 px images: AdamW lr 1.5e-4*bs/256 (bs 512), wd 0.1, tau 0.2, m 0.99->1, 800 epochs, 40 warm-up.",
                config=dict(**CIFAR_VIT_SMALL, loss_temperature=0.2, momentum_base=0.99),
                views=dict(scale=(0.08, 1.0)),
                training=dict(
                    num_train_epochs=800,
                    per_device_train_batch_size=512,
                    learning_rate=3e-4,
                    weight_decay=0.1,
                    adam_beta2=0.95,
                    warmup_steps=0.05,
                    lr_scheduler_type="cosine",
                    bf16=True,
                    sync_batchnorm=True,
                ),
            ),
            "mocov3_imagenet_vit_small": Preset(
                "MoCo v3 ViT-S/16, ImageNet 224 px: AdamW lr 1.5e-4*bs/256 (bs 4096), wd 0.1, tau 0.2, 300 epochs, 40 warm-up.",
                config=dict(backbone="vit_small_patch16_224", backbone_kwargs={}, image_size=224, loss_temperature=0.2, momentum_base=0.99),
                views=dict(scale=(0.08, 1.0)),
                training=dict(num_train_epochs=300, per_device_train_batch_size=256, learning_rate=2.4e-3, weight_decay=0.1, adam_beta2=0.95, warmup_steps=0.133, lr_scheduler_type="cosine", bf16=True, sync_batchnorm=True),
            ),
        },
    )
)
