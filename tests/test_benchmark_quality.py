"""The scoreboard's summary over seeds: means, sample standard deviations, failures."""

import pytest

from .helpers import load_script

quality = load_script("benchmark_quality")


def _row(method, seed, knn, linear=None, **extra):
    return {"method": method, "seed": seed, "knn_top1": knn, "linear_top1": linear, "train_seconds": 10.0 + seed, "random_init_knn_top1": 0.4, **extra}


def test_summarise__mean_and_sample_standard_deviation_over_seeds():
    rows = [_row("byol", 0, 0.40, 0.60, random_init_linear_top1=0.5), _row("byol", 1, 0.50, 0.70), _row("byol", 2, 0.60, 0.80)]
    (entry,) = quality.summarise(rows)
    assert entry["seeds"] == [0, 1, 2] and entry["failed_runs"] == 0
    assert entry["knn_top1"] == pytest.approx(0.5)
    assert entry["knn_top1_std"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    assert entry["linear_top1"] == pytest.approx(0.7) and entry["train_seconds"] == pytest.approx(11.0)
    assert entry["random_init_linear_top1"] == pytest.approx(0.5)  # probed once, from the run that has it


def test_summarise__failed_runs_are_counted_not_averaged():
    rows = [_row("aps", 0, 0.6), {"method": "aps", "seed": 1, "error": "boom"}, {"method": "simsiam", "seed": 0, "error": "boom"}]
    aps, simsiam = quality.summarise(rows)
    assert aps["seeds"] == [0] and aps["failed_runs"] == 1 and aps["knn_top1"] == pytest.approx(0.6)
    assert simsiam == {"method": "simsiam", "seeds": [], "failed_runs": 1}


def test_markdown_table__shows_spread_only_with_several_seeds():
    rows = [_row("aps", 0, 0.60, 0.70), _row("aps", 1, 0.64, 0.72), _row("byol", 0, 0.41)]
    report = {"summary": quality.summarise(rows), "floors": {"raw_pixel_knn": {"top1": 0.75}}}
    table = quality.markdown_table(report)
    assert "| aps | 62.0 ± 2.8 | 71.0 ± 1.4 | 0, 1 |" in table
    assert "| byol | 41.0 | — | 0 |" in table
    assert "| raw pixels (floor) | 75.0 |" in table
