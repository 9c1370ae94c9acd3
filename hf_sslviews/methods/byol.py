"""BYOL presets."""

from ..modeling.byol import BYOLConfig, BYOLForPreTraining
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import CIFAR_VIT_SMALL, FMNIST_TRAINING, TINY_BACKBONE, TINY_TRAINING, TINY_VIEWS, build_two_views, pair_presets

HEADS = dict(projector_hidden_dim=512, projector_dim=128, momentum_base=0.99)


register_recipe(
    MethodRecipe(
        name="byol",
        config_class=BYOLConfig,
        model_class=BYOLForPreTraining,
        build_views=build_two_views,
        presets={
            # The predictor at 10x the learning rate in byol_fmnist: at 1x BYOL sat below the
            # random-init kNN for the first 150 steps (57% vs 62% on train[50000:]), at 10x it passed
            # it by step 200 and kept rising (README, quality protocol).
            **pair_presets("byol", HEADS, dict(FMNIST_TRAINING, predictor_lr_multiplier=10.0)),
            "byol_ddm_tiny": Preset(
                "byol_tiny plus CLSA's DDM term on one strong (RandAugment) 16 px view per image, weight 1 (CLSA section 5: DDM helps BYOL).",
                config=dict(**TINY_BACKBONE, **HEADS, ddm_weight=1.0),
                views=dict(TINY_VIEWS, num_strong_views=1, strong_size=16),
                training=TINY_TRAINING,
            ),
            "byol_cifar_vit_small": Preset(
                "BYOL ViT-Small/4 on 32 px images: AdamW lr 5e-4*bs/256 (bs 256), wd 0.05, m 0.99->1, 1000 epochs (solo-learn-style small-image recipe).",
                config=dict(**CIFAR_VIT_SMALL, momentum_base=0.99),
                views=dict(scale=(0.08, 1.0)),
                training=dict(num_train_epochs=1000, per_device_train_batch_size=256, learning_rate=5e-4, weight_decay=0.05, warmup_steps=0.01, lr_scheduler_type="cosine", bf16=True, sync_batchnorm=True),
            ),
        },
    )
)
