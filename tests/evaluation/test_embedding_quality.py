"""RankMe, alignment and uniformity against hand-computed values; the monitor logs them and warns on collapse."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from hf_sslviews.evaluation.embedding_quality import EmbeddingQualityMonitor, add_embedding_quality_monitor, alignment, rankme, uniformity
from hf_sslviews.evaluation.monitor import eval_transform_for_config, monitors_seconds

from ..helpers import random_image_dataset
from .test_knn_monitor import _byol, _trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("rank", [1, 3, 8])
def test_rankme__k_equal_singular_values_give_k(rank):
    # Columns of an orthogonal matrix, each scaled alike: `rank` equal singular values, the rest 0.
    q, _ = torch.linalg.qr(torch.randn(64, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    features = q[:, :rank] @ torch.eye(rank, 16, dtype=torch.float64) * 3.0
    # p_k = 1 / rank (+ eps) for the nonzero values: entropy log(rank).
    assert rankme(features) == pytest.approx(rank, rel=1e-4)


def test_rankme__unequal_spectrum_by_hand():
    features = torch.diag(torch.tensor([3.0, 1.0]))  # singular values 3, 1: p = (0.75, 0.25)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))  # 1.7548
    assert rankme(features, eps=0.0) == pytest.approx(expected)
    with pytest.raises(ValueError, match="non-empty"):
        rankme(torch.zeros(0, 3))


def test_alignment__zero_for_identical_four_for_antipodal_scale_free():
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(1))
    assert alignment(x, 7.0 * x) == pytest.approx(0.0, abs=1e-12)  # L2-normalised first
    assert alignment(x, -x) == pytest.approx(4.0)
    # Orthogonal pairs: ||a - b||^2 = 2.
    assert alignment(torch.eye(4)[:2], torch.eye(4)[2:]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="one shape"):
        alignment(x, x[:3])


def test_uniformity__by_hand():
    # An orthonormal set: every pair at squared distance 2, log mean exp(-2 * 2) = -4.
    assert uniformity(torch.eye(5)) == pytest.approx(-4.0)
    # A collapsed set: every pair at distance 0, log 1 = 0, the worst value.
    assert uniformity(torch.ones(6, 3)) == pytest.approx(0.0)
    # Three points: two equal, one opposite: pair distances^2 0, 4, 4 -> log((1 + 2 e^-8) / 3).
    points = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(points) == pytest.approx(math.log((1 + 2 * math.exp(-8)) / 3))


def test_monitor__logs_at_its_cadence_and_at_the_end_leaves_the_training_randomness_alone(tiny_vit_kwargs, tmp_path):
    model = _byol(tiny_vit_kwargs)
    trainer = _trainer(model, tmp_path, max_steps=5)
    images = random_image_dataset(12)["image"]
    before = torch.random.get_rng_state()
    monitor = add_embedding_quality_monitor(trainer, images, eval_transform_for_config(model.config), every_n_steps=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # drawing the fixed pairs used its own seed
    trainer.train()
    assert [entry["step"] for entry in monitor.history] == [2, 4, 5]  # every 2 steps, and the final model
    logged = [entry for entry in trainer.state.log_history if "rankme" in entry]
    assert [entry["step"] for entry in logged] == [2, 4, 5]
    for entry in monitor.history:
        assert 1.0 <= entry["rankme"] <= 12 and 0.0 <= entry["alignment"] <= 4.0 and -8.0 <= entry["uniformity"] <= 0.0
    # What it logs is the three functions on the backbone's features of its fixed batches.
    features = {name: model.backbone.eval()(batch).detach() for name, batch in monitor.batches.items()}
    final = monitor.evaluate(model)
    assert final["rankme"] == pytest.approx(rankme(features["clean"]), rel=1e-4)
    assert final["alignment"] == pytest.approx(alignment(features["first_view"], features["second_view"]), rel=1e-4)
    assert monitor.monitor_seconds > 0 and monitors_seconds(trainer) >= monitor.monitor_seconds


class Collapsed(torch.nn.Module):
    """A backbone whose features fall onto one direction after its first call: a collapsing run."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, pixels):
        self.calls += 1
        flat = pixels.flatten(1)[:, :16]
        if self.calls > 3:  # three batches per evaluation: clean, first and second views
            return flat[:, :1].repeat(1, 16) * self.weight
        return flat * self.weight


def test_monitor__warns_once_when_the_effective_rank_collapses(caplog):
    images = random_image_dataset(20, size=8)["image"]
    monitor = EmbeddingQualityMonitor(images, lambda image: torch.rand(3, 8, 8), every_n_steps=1)
    holder = torch.nn.Module()
    holder.backbone = Collapsed()

    class State:
        global_step = 1

    with caplog.at_level(logging.WARNING, logger="hf_sslviews.evaluation.embedding_quality"):
        monitor._run(State, holder)
        State.global_step = 2
        monitor._run(State, holder)
        State.global_step = 3
        monitor._run(State, holder)
    assert monitor.history[0]["rankme"] > 5 and monitor.history[1]["rankme"] < 1.5
    warnings = [record for record in caplog.records if "collapsing" in record.message]
    assert len(warnings) == 1 and "RankMe" in warnings[0].message


def test_monitor__skips_undecodable_images_and_rejects_bad_setups():
    images = random_image_dataset(4, bad=2)["image"]  # the last two are not images
    monitor = EmbeddingQualityMonitor(images, lambda image: torch.rand(3, 4, 4))
    assert monitor.num_skipped == 2 and monitor.batches["clean"].shape[0] == 4
    with pytest.raises(ValueError, match="at least 2 decodable images, got 0 of 0"):
        EmbeddingQualityMonitor([], lambda image: image)
    with pytest.raises(ValueError, match="collapse_fraction"):
        EmbeddingQualityMonitor(random_image_dataset(3)["image"], lambda image: torch.rand(3, 4, 4), collapse_fraction=1.5)
