"""SimSiam presets."""

from ..modeling.simsiam import SimSiamConfig, SimSiamForPreTraining
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import CIFAR_VIT_SMALL, FMNIST_TRAINING, build_two_views, pair_presets

register_recipe(
    MethodRecipe(
        name="simsiam",
        config_class=SimSiamConfig,
        model_class=SimSiamForPreTraining,
        build_views=build_two_views,
        presets={
            # As byol_fmnist: a faster predictor (SimSiam's paper keeps its learning rate fixed
            # while the rest decays, for the same reason).
            **pair_presets("simsiam", dict(projector_dim=256, predictor_hidden_dim=64), dict(FMNIST_TRAINING, predictor_lr_multiplier=10.0)),
            "simsiam_cifar_vit_small": Preset(
                "SimSiam ViT-Small/4 on 32 px images, CIFAR recipe of the paper (2-layer projector, 2048-d): AdamW lr 5e-4*bs/256, 800 epochs.",
                config=dict(**CIFAR_VIT_SMALL, projector_num_layers=2),
                views=dict(scale=(0.2, 1.0)),
                training=dict(num_train_epochs=800, per_device_train_batch_size=512, learning_rate=1e-3, weight_decay=0.05, warmup_steps=0.01, lr_scheduler_type="cosine", bf16=True, sync_batchnorm=True),
            ),
        },
    )
)
