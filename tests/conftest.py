import os
import sys
from pathlib import Path

import pytest
import torch

# The benchmarks share benchmarks/harness.py (and the report reads quality.py), outside the
# installed package; a benchmark run as a program finds them beside itself, a test finds them here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_VIT = dict(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}, image_size=32)


@pytest.fixture
def tiny_vit_kwargs():
    """A 2-block ViT on 32 px images with 8 px patches (16 tokens): fast enough for any test."""
    return {**TINY_VIT, "backbone_kwargs": dict(TINY_VIT["backbone_kwargs"])}


@pytest.fixture
def one_thread():
    """One torch thread for the test: on tiny tensors a second one only adds contention on a 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
