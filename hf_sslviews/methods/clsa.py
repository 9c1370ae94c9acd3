"""CLSA presets (Wang & Qi, "Contrastive Learning with Stronger Augmentations", TPAMI 2022)."""

from __future__ import annotations

from ..modeling.clsa import CLSAConfig, CLSAForPreTraining
from ..views.base import ViewTransform
from ..views.clsa import CLSAViewTransform
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import FMNIST_BACKBONE, FMNIST_TRAINING, FMNIST_VIEWS, MOCOV2_IMAGENET_TRAINING, TINY_BACKBONE, TINY_TRAINING


def build_clsa_views(config, image_column: str = "image", view_set: str = "single", **view_kwargs) -> ViewTransform:
    """The key / weak / strong views of a CLSA view set, with the config's normalisation."""
    return CLSAViewTransform(view_set, image_column=image_column, mean=tuple(config.image_mean), std=tuple(config.image_std), **view_kwargs)


# MoCo v2 / CLSA ImageNet recipe: SGD lr 0.03 * batch / 256 (batch 256 = 8 processes x 32, the
# batch the paper's shuffle-BN ran with), momentum 0.9, wd 1e-4, cosine schedule, 200 epochs.
# The queue (65536) must be a multiple of the global batch (256): dataloader_drop_last keeps
# the last batch of an epoch from being smaller.
IMAGENET_R50 = dict(backbone="resnet50", backbone_kwargs={}, image_size=224, projector_dim=128, queue_size=65536, loss_temperature=0.2, ddm_weight=1.0, momentum_base=0.999, momentum_final=0.999)

register_recipe(
    MethodRecipe(
        name="clsa",
        config_class=CLSAConfig,
        model_class=CLSAForPreTraining,
        build_views=build_clsa_views,
        presets={
            "clsa_tiny": Preset(
                "CPU smoke recipe: 4-block ViT-Tiny, key/weak 32 px + strong 16 px (CLSA-Single scaled to 32 px), queue 1024, 3 epochs on the embedded sample.",
                # AdamW (TINY_TRAINING) rather than SGD: SGD at lr 0.03 barely moves a ViT in
                # 3 epochs. m = 0.99: with ~140 steps, 0.999 would leave the key encoder at init.
                config=dict(**TINY_BACKBONE, projector_hidden_dim=512, projector_dim=128, queue_size=1024, momentum_base=0.99, momentum_final=0.99),
                views=dict(view_set="single_cifar"),
                training=dict(TINY_TRAINING, dataloader_drop_last=True),
            ),
            "clsa_fmnist": Preset(
                "Reference CPU protocol: CLSA-Single on 28 px Fashion-MNIST: key and weak 28 px, strong 14 px (4 tokens), queue 4096, m 0.99, grey-image views, 500 steps of batch 256.",
                config=dict(**FMNIST_BACKBONE, projector_hidden_dim=512, projector_dim=128, queue_size=4096, momentum_base=0.99, momentum_final=0.99),
                views=dict(
                    view_set="single", key=(28, FMNIST_VIEWS["scale"]), weak=[(28, FMNIST_VIEWS["scale"])], strong=[(14, (0.15, 0.5))],
                    jitter=FMNIST_VIEWS["jitter"], grayscale_p=FMNIST_VIEWS["grayscale_p"],
                ),
                training=FMNIST_TRAINING,
            ),
            "clsa_single_imagenet_r50": Preset(
                "CLSA-Single, ResNet-50, ImageNet: key 224 + weak 224 + strong 96, queue 65536, tau 0.2, beta 1, m 0.999; SGD lr 0.03*bs/256 (bs 256), wd 1e-4, 200 epochs (paper: 69.4 linear top-1).",
                config=IMAGENET_R50,
                views=dict(view_set="single"),
                training=MOCOV2_IMAGENET_TRAINING,
            ),
            "clsa_multi_imagenet_r50": Preset(
                "CLSA-Multi, ResNet-50, ImageNet: key 224 + weak and strong at 224/192/160/128/96, queue 65536, tau 0.2, beta 1, m 0.999; SGD lr 0.03*bs/256 (bs 256), wd 1e-4, 200 epochs (paper: 73.3 linear top-1).",
                config=IMAGENET_R50,
                views=dict(view_set="multi"),
                training=MOCOV2_IMAGENET_TRAINING,
            ),
        },
    )
)
