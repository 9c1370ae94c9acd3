"""What several methods share: the baselines' two-view pair builder and the building blocks of presets (CPU smoke, Fashion-MNIST, CIFAR ViT-S)."""

from __future__ import annotations

from typing import Optional

from ..views import VIEW_SETTINGS, MultiViewTransform, RandAugment, two_view_transform
from ..views.base import ViewTransform
from ..views.clsa import StrongViewAugmentation
from .base import Preset


def build_two_views(
    config,
    image_column: str = "image",
    scale: tuple[float, float] = (0.08, 1.0),
    num_strong_views: int = 0,
    strong_size: Optional[int] = None,
    strong_scale: tuple[float, float] = (0.086, 0.429),
    **view_kwargs,
) -> ViewTransform:
    """The BYOL / MoCo v3 asymmetric pair at ``config.image_size`` with the config's normalisation.

    With ``num_strong_views > 0`` it also makes CLSA's strong views (the MoCo v2 weak pipeline
    plus 5-op RandAugment, output key ``strong_pixel_values``) for the attachable DDM term
    (``ddm_weight``). ``strong_size`` defaults to half the view size [ours; CLSA-Single pairs 224
    with 96].
    """
    pair = two_view_transform(
        size=config.image_size,
        scale=tuple(scale),
        image_column=image_column,
        mean=tuple(config.image_mean),
        std=tuple(config.image_std),
        **view_kwargs,
    )
    if num_strong_views <= 0:
        return pair
    # The strong views start from MoCo v2's weak pipeline with the pair's overrides (e.g. no
    # saturation jitter on grey images).
    strong = StrongViewAugmentation(
        RandAugment(),
        **{**VIEW_SETTINGS["mocov2"], **view_kwargs, "size": strong_size or max(1, config.image_size // 2), "scale": tuple(strong_scale), "mean": tuple(config.image_mean), "std": tuple(config.image_std)},
    )
    return MultiViewTransform({**pair.views, "strong_pixel_values": [strong] * num_strong_views}, image_column=image_column)


# The CPU default of every baseline: a 4-block ViT-Tiny on 32 px crops with 4 px patches (64
# tokens), small heads, a few epochs of the embedded Fashion-MNIST sample. Minutes on 2 cores.
TINY_BACKBONE = dict(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 4, "depth": 4}, image_size=32)
TINY_TRAINING = dict(
    num_train_epochs=3,
    per_device_train_batch_size=64,
    # 5e-4 measured best of {5e-4, 1e-3, 2e-3} for aps_tiny on the sample (kNN 60.1 / 54.3 / 34.7%).
    learning_rate=5e-4,
    weight_decay=0.05,
    warmup_steps=0.1,
    lr_scheduler_type="cosine",
    logging_steps=10,
    # transformers' default clipping, which the smoke scoreboard was measured with (the paper
    # recipes do not clip; SSLTrainingArguments' default is 0).
    max_grad_norm=1.0,
)
TINY_VIEWS = dict(scale=(0.2, 1.0))

# The reference CPU protocol (benchmarks/quality.py --suite cpu): Debian's full
# Fashion-MNIST, 28 px grey images, 2 cores. Chosen by kNN learning curves on a held-out part of
# train (train[50000:]); see the README's results section.
# - A 4-block ViT-Tiny with 7 px patches: a 4x4 grid, 16 tokens, 3x the images per second of 4 px
#   patches (49 tokens); MoCo v3 reached 67.5% kNN after 50 s against 59.6% after 2.7 minutes (an
#   exploratory pair monitored on 1,000 test images, before the held-out split existed).
# - Fashion-MNIST statistics (grey: the same for the three channels).
FMNIST_BACKBONE = dict(
    backbone="vit_tiny_patch16_224",
    backbone_kwargs={"img_size": 28, "patch_size": 7, "depth": 4},
    image_size=28,
    image_mean=[0.286, 0.286, 0.286],
    image_std=[0.353, 0.353, 0.353],
)
# Views for 28 px grey garments: saturation and hue jitter do nothing to grey pixels and
# grayscale is a no-op, so they are off; solarize would invert a bright garment on black, off;
# crops keep at least 40% of the image, so the silhouette (which separates shirt, pullover and
# coat) survives. Brightness / contrast jitter, flips and the pair's asymmetric blur stay.
FMNIST_VIEWS = dict(scale=(0.4, 1.0), jitter=(0.4, 0.4, 0.0, 0.0), grayscale_p=0.0, solarize_p=0.0)
FMNIST_TRAINING = dict(
    max_steps=500,
    per_device_train_batch_size=256,
    learning_rate=1.5e-3,
    weight_decay=0.05,
    warmup_steps=0.05,
    lr_scheduler_type="cosine",
    logging_steps=25,
    # BatchNorm heads must not see a last batch of one image; the queue of MoCo v2 methods needs full batches.
    dataloader_drop_last=True,
    # Every quality-protocol run was trained with transformers' default clipping at 1.0; kept so
    # the protocol stays one. It is active through most of training for APS, CLSA, PatchMix and
    # RepCo (gradient norms ~1-5) and only in the first steps for SimSiam, BYOL and MoCo v3.
    max_grad_norm=1.0,
)



def pair_presets(method: str, heads: dict, fmnist_training: Optional[dict] = None) -> dict[str, Preset]:
    """A two-view baseline's ``<method>_tiny`` (CPU smoke) and ``<method>_fmnist`` (reference CPU
    protocol) presets: the shared backbone, views and training of each, with the method's heads."""
    return {
        f"{method}_tiny": Preset(
            "CPU smoke recipe: 4-block ViT-Tiny, 32 px, small heads, 3 epochs on the embedded sample.",
            config=dict(**TINY_BACKBONE, **heads),
            views=TINY_VIEWS,
            training=TINY_TRAINING,
        ),
        f"{method}_fmnist": Preset(
            "Reference CPU protocol: 4-block ViT-Tiny/7 on 28 px Fashion-MNIST, grey-image views, 500 steps of batch 256 (benchmarks/quality.py --suite cpu).",
            config=dict(**FMNIST_BACKBONE, **heads),
            views=FMNIST_VIEWS,
            training=fmnist_training or FMNIST_TRAINING,
        ),
    }


# CIFAR ViT-Small recipes (32 px, patch 4): the solo-learn / MoCo v3 small-image settings.
CIFAR_VIT_SMALL = dict(backbone="vit_small_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 4}, image_size=32, image_mean=[0.4914, 0.4822, 0.4465], image_std=[0.247, 0.243, 0.261])

# MoCo v2 ImageNet recipe (arXiv 2003.04297), shared by CLSA and RepCo: SGD lr 0.03 * batch / 256
# (batch 256 = 8 processes x 32, the batch shuffle-BN ran with), momentum 0.9, wd 1e-4, cosine,
# 200 epochs. The key queue must be a multiple of what is enqueued per step: dataloader_drop_last
# keeps the last batch of an epoch from being smaller.
MOCOV2_IMAGENET_TRAINING = dict(
    optim_recipe="sgd",
    num_train_epochs=200,
    per_device_train_batch_size=32,
    learning_rate=0.03,
    weight_decay=1e-4,
    warmup_steps=0,
    lr_scheduler_type="cosine",
    dataloader_drop_last=True,
    bf16=True,
)
