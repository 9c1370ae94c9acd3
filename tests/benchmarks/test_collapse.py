"""benchmarks/collapse.py: the collapse statistics on embeddings whose answer is known."""

import math

import pytest
import torch

from ..helpers import load_benchmark

collapse = load_benchmark("collapse")


def test_spread__a_collapsed_embedding_reads_as_one():
    # Every row the same direction, scaled: one singular value, no spread after normalising.
    direction = torch.randn(16)
    features = torch.rand(200, 1) * direction
    stats = collapse.spread(features)
    assert stats["rankme"] == pytest.approx(1.0, abs=0.01)
    assert stats["normalised_std"] == pytest.approx(0.0, abs=1e-6)
    assert stats["top_direction_share"] == pytest.approx(1.0, abs=1e-6)


def test_spread__an_isotropic_embedding_reads_as_spread_out():
    torch.manual_seed(0)
    features = torch.randn(4000, 16)
    stats = collapse.spread(features)
    assert stats["spread_std"] == pytest.approx(1 / math.sqrt(16))
    assert stats["normalised_std"] == pytest.approx(stats["spread_std"], rel=0.03)  # SimSiam's 1/sqrt(d)
    assert stats["rankme"] > 15.5 and stats["top_direction_share"] < 0.08


def test_stages__backbone_projector_predictor_of_a_model():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Flatten()
            self.projector = torch.nn.Linear(12, 5)
            self.predictor = torch.nn.Linear(5, 5)

    out = collapse.stages(Model(), torch.randn(3, 3, 2, 2))
    assert [tuple(value.shape) for value in out.values()] == [(3, 12), (3, 5), (3, 5)] and list(out) == ["backbone", "projector", "predictor"]
