"""Small in-memory datasets for tests."""

import io

import datasets
import numpy as np
from PIL import Image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def random_image_dataset(n: int, size: int = 12, bad: int = 0, seed: int = 0, num_classes: int = 2) -> datasets.Dataset:
    """``n`` random RGB images (plus ``bad`` undecodable ones) in an undecoded Image column."""
    rng = np.random.default_rng(seed)
    images = [{"bytes": png_bytes(Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))), "path": None} for _ in range(n)]
    images += [{"bytes": b"not an image at all", "path": None} for _ in range(bad)]
    labels = [i % num_classes for i in range(len(images))]
    features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.ClassLabel(num_classes=num_classes)})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def load_script(name: str, folder: str = "scripts"):
    """Import ``scripts/<name>.py`` as a module (its ``main`` and helpers become callable in-process)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module."""
    return load_script(name, folder="benchmarks")


def export_tiny_backbone(directory):
    """A 1-block ViT (48-d, 8 px patches at 32 px) exported by hf_sslviews from a MoCo v3 model."""
    import torch

    from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
    from hf_sslviews.publish.export import export_backbone

    torch.manual_seed(1234)
    config = MoCoV3Config(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3},
                          image_size=32, projector_hidden_dim=32, projector_dim=16)
    return export_backbone(MoCoV3ForPreTraining(config), directory)
