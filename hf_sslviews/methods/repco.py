"""RepCo presets (Neural Networks 168, 2023), a documented reconstruction of the method.

The paper's schedule and patch-level settings are not public: the global part follows MoCo v2's
published recipe, the patch part uses :class:`~hf_sslviews.modeling.repco.RepCoConfig`'s
defaults (see ``model_cards/repco.md``).
"""

from __future__ import annotations

from ..modeling.repco import RepCoConfig, RepCoForPreTraining
from ..views import MultiViewTransform, ViewAugmentation
from ..views.base import ViewTransform
from . import register_recipe
from .base import MethodRecipe, Preset
from .common import FMNIST_BACKBONE, FMNIST_TRAINING, FMNIST_VIEWS, MOCOV2_IMAGENET_TRAINING, TINY_BACKBONE, TINY_TRAINING


def build_mocov2_views(config, image_column: str = "image", scale: tuple[float, float] = (0.2, 1.0), **view_kwargs) -> ViewTransform:
    """The MoCo v2 pair: two independent views with the ``"mocov2"`` augmentation preset.

    Output keys ``pixel_values_1``, ``pixel_values_2`` (``float32 [3, s, s]``, ``s =
    config.image_size``), normalised with the config's statistics. RandomResizedCrop scale
    (0.2, 1), colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, Gaussian blur
    sigma in [0.1, 2] p=0.5, flip.
    """
    def view() -> ViewAugmentation:
        return ViewAugmentation.from_settings(
            "mocov2", size=config.image_size, scale=tuple(scale), mean=tuple(config.image_mean), std=tuple(config.image_std), **view_kwargs
        )

    return MultiViewTransform({"pixel_values_1": view(), "pixel_values_2": view()}, image_column=image_column)


# MoCo v2 ImageNet recipe (arXiv 2003.04297): SGD lr 0.03 * batch / 256 (batch 256 = 8 processes
# x 32, the batch shuffle-BN ran with), momentum 0.9, wd 1e-4, cosine schedule, 200 epochs, tau
# 0.2, m 0.999, queue 65536. The queue receives both views' keys (2 x global batch per step) and
# must be a multiple of that: dataloader_drop_last keeps the last batch from being smaller.
R50 = dict(backbone="resnet50", backbone_kwargs={}, image_size=224, projector_hidden_dim=2048, projector_dim=128, queue_size=65536, loss_temperature=0.2, momentum_base=0.999, momentum_final=0.999)

register_recipe(
    MethodRecipe(
        name="repco",
        config_class=RepCoConfig,
        model_class=RepCoForPreTraining,
        build_views=build_mocov2_views,
        presets={
            "repco_tiny": Preset(
                "CPU smoke recipe: 4-block ViT-Tiny, 32 px, 4 px patches (8x8 cell grid), small heads, queue 1024, 3 epochs on the embedded sample.",
                # AdamW (TINY_TRAINING) rather than SGD: SGD at lr 0.03 barely moves a ViT in 3
                # epochs. m = 0.99: with ~140 steps, 0.999 would leave the key encoder at init.
                config=dict(
                    **TINY_BACKBONE,
                    projector_hidden_dim=512,
                    projector_dim=128,
                    dense_hidden_dim=512,
                    dense_dim=128,
                    queue_size=1024,
                    momentum_base=0.99,
                    momentum_final=0.99,
                ),
                views=dict(scale=(0.2, 1.0)),
                training=dict(TINY_TRAINING, dataloader_drop_last=True),
            ),
            "repco_fmnist": Preset(
                "Reference CPU protocol: 4-block ViT-Tiny/7 on 28 px Fashion-MNIST (4x4 cell grid), queue 4096, m 0.99, grey-image views, 500 steps of batch 256.",
                config=dict(**FMNIST_BACKBONE, projector_hidden_dim=512, projector_dim=128, dense_hidden_dim=512, dense_dim=128, queue_size=4096, momentum_base=0.99, momentum_final=0.99),
                views=FMNIST_VIEWS,
                training=FMNIST_TRAINING,
            ),
            "repco_imagenet_r50": Preset(
                "RepCo (reconstruction) ResNet-50 on ImageNet (--dataset_name imagenet-1k): MoCo v2 recipe, SGD lr 0.03*bs/256 (bs 256), wd 1e-4, 200 epochs, tau 0.2, m 0.999, queue 65536; patch term mu 1, r_far 2, 7x7 C5 cells (paper: +1.6 VOC AP50 over MoCo v2).",
                config=R50,
                views=dict(scale=(0.2, 1.0)),
                training=MOCOV2_IMAGENET_TRAINING,
            ),
            "repco_coco_r50": Preset(
                "RepCo (reconstruction) ResNet-50 on COCO train2017 (--train_dir or a Hub copy): MoCo v2 recipe with DenseCL's COCO schedule of 800 epochs [ours: RepCo's is not public]; patch term mu 1, r_far 2 (paper: +2.1 VOC AP50 over MoCo v2).",
                config=R50,
                views=dict(scale=(0.2, 1.0)),
                training=dict(MOCOV2_IMAGENET_TRAINING, num_train_epochs=800),
            ),
        },
    )
)
