"""The quality protocol's statistics: means and spreads over seeds, claim verdicts, curves, tables."""

import json

import pytest

from .helpers import load_script

quality = load_script("benchmark_quality")


def _row(arm, seed, knn, linear=None, **extra):
    return {"arm": arm, "seed": seed, "knn_top1": knn, "linear_top1": linear, "train_seconds": 10.0 + seed, "optimizer_steps": 500, **extra}


def test_summarise__mean_and_sample_standard_deviation_over_seeds():
    rows = [_row("byol", 0, 0.40, 0.60), _row("byol", 1, 0.50, 0.70), _row("byol", 2, 0.60, 0.80)]
    (entry,) = quality.summarise(rows, ["aps", "byol"])
    assert entry["seeds"] == [0, 1, 2] and entry["failed_runs"] == 0
    assert entry["knn_top1"] == pytest.approx(0.5)
    assert entry["knn_top1_std"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    assert entry["linear_top1"] == pytest.approx(0.7) and entry["train_seconds"] == pytest.approx(11.0)


def test_summarise__failed_runs_are_counted_not_averaged():
    rows = [_row("aps", 0, 0.6), {"arm": "aps", "seed": 1, "error": "boom"}, {"arm": "simsiam", "seed": 0, "error": "boom"}]
    aps, simsiam = quality.summarise(rows, ["aps", "simsiam"])
    assert aps["seeds"] == [0] and aps["failed_runs"] == 1 and aps["knn_top1"] == pytest.approx(0.6)
    assert simsiam == {"arm": "simsiam", "seeds": [], "failed_runs": 1}


@pytest.mark.parametrize(
    "method, baseline, outcome",
    [
        ([0.80, 0.81, 0.82], [0.70, 0.71, 0.72], "holds"),  # +10 points, noise 1: far beyond 2 sd
        ([0.70, 0.71, 0.72], [0.80, 0.81, 0.82], "fails"),
        ([0.80, 0.83, 0.86], [0.78, 0.80, 0.82], "not resolved"),  # +3 points, noise 3: under 2 sd
    ],
)
def test_verdict__difference_against_two_standard_deviations(method, baseline, outcome):
    result = quality.verdict(method, baseline)
    assert result["verdict"] == outcome
    assert result["difference"] == pytest.approx(sum(method) / 3 - sum(baseline) / 3)


def test_verdict__one_seed_is_never_a_verdict():
    assert quality.verdict([0.9], [0.1, 0.2])["verdict"].startswith("not resolved")


def test_claims_table__pairs_the_arms_of_each_claim():
    rows = [_row("aps", s, 0.80 + 0.01 * s) for s in range(3)] + [_row("mocov3", s, 0.70 + 0.01 * s) for s in range(3)]
    (claim,) = [c for c in quality.claims_table(rows) if c["baseline"] == "mocov3" and c["method"] == "aps"]
    assert claim["verdict"] == "holds" and claim["difference"] == pytest.approx(0.10)
    assert all(c["method"] in ("aps", "mocov3") and c["baseline"] in ("aps", "mocov3") for c in quality.claims_table(rows))


def test_mean_curve__averages_seeds_at_the_steps_they_share():
    curve = lambda knns: [{"step": 10 * (i + 1), "train_seconds": 5.0 * (i + 1), "knn_top1": v} for i, v in enumerate(knns)]  # noqa: E731
    rows = [{"curve": curve([0.5, 0.6, 0.7])}, {"curve": curve([0.3, 0.4])}]
    steps, seconds, knn = quality.mean_curve(rows)
    assert steps == [10, 20] and seconds == [5.0, 10.0] and knn == pytest.approx([0.4, 0.5])
    # The online probe's curve: only the seeds that logged it count.
    rows[1]["curve"] = [{**point, "online_linear_top1": 0.9} for point in rows[1]["curve"]]
    assert quality.mean_curve(rows, "online_linear_top1") == ([10, 20], [5.0, 10.0], [0.9, 0.9])


def test_markdown__spread_with_several_seeds_floors_and_claims():
    suite = quality.SUITES["cpu"]
    rows = [_row("aps", 0, 0.60, 0.70), _row("aps", 1, 0.64, 0.72), _row("mocov3", 0, 0.41), _row("mocov3", 1, 0.43)]
    report = {
        "results": rows,
        "summary": quality.summarise(rows, list(suite.arms)),
        "claims": {"knn_top1": quality.claims_table(rows)},
        "floors": {"raw_pixels": {"knn_top1": 0.85, "linear_top1": 0.84}, "random_init": {"vit": {"0": {"knn_top1": 0.44, "linear_top1": 0.7}, "1": {"knn_top1": 0.46, "linear_top1": 0.72}}}},
    }
    table = quality.markdown(report, suite)
    assert "| aps | 62.0 ± 2.8 | 71.0 ± 1.4 | 0, 1 | 500 |" in table
    assert "| mocov3 | 42.0 ± 1.4 | — | 0, 1 |" in table
    assert "| random init (floor) | 45.0 ± 1.4 | 71.0 ± 1.4 | 2 inits |" in table
    assert "| raw pixels (floor) | 85.0 | 84.0 |" in table
    # +20 points against a noise of 2.8: the claim holds.
    assert "APS beats MoCo v3 with the same ViT at equal optimizer steps (`aps` vs `mocov3`) | knn | +20.0 | 5.7 | 2 / 2 | holds |" in table


def test_markdown__random_init_floor_per_architecture_not_pooled():
    # A 4 px-patch ViT starts 10 points under the 7 px one: pooling them would give neither floor.
    seven, four = 'vit {"depth": 4, "patch_size": 7} [3, 28, 28]', 'vit {"depth": 4, "patch_size": 4} [3, 28, 28]'
    floors = {"random_init": {seven: {"0": {"knn_top1": 0.70, "linear_top1": 0.74}, "1": {"knn_top1": 0.72, "linear_top1": 0.74}},
                              four: {"0": {"knn_top1": 0.60, "linear_top1": 0.70}}}}
    report = {"results": [], "summary": [], "claims": {}, "floors": floors}
    values = quality.floor_values(report)["random_init"]
    assert values[seven]["knn_top1"][0] == pytest.approx(0.71) and values[four]["knn_top1"][0] == pytest.approx(0.60)
    table = quality.markdown(report, quality.SUITES["cpu"])
    assert "| random init, 7 px patches (floor) | 71.0 ± 1.4 | 74.0 ± 0.0 | 2 inits |" in table
    assert "| random init, 4 px patches (floor) | 60.0 ± 0.0 | 70.0 ± 0.0 | 1 inits |" in table


def test_pretrain_command__monitor_on_the_fixed_subset_and_the_arm_flags_last(tmp_path):
    suite = quality.SUITES["cpu"]
    arm = suite.arms["patchmix_no_mix"]
    command = quality.pretrain_command(suite, arm, seed=2, out=tmp_path, monitor_steps=50)
    assert command[command.index("--preset") + 1] == "patchmix_fmnist" and command[command.index("--seed") + 1] == "2"
    assert command[command.index("--knn_monitor_steps") + 1] == "50"
    assert command[command.index("--knn_monitor_max_train_samples") + 1] == str(quality.MONITOR_TRAIN)
    assert command[command.index("--online_linear_probe") + 1] == "True"
    assert command[-2:] == list(arm.flags)
    overrides = json.loads(command[command.index("--config_overrides") + 1])
    assert overrides == {"mix_origin_weight": 0.0, "mix_mix_weight": 0.0}


def test_data_order__seeds_from_2_on_share_no_epoch_order_with_any_other_seed(tmp_path):
    # accelerate shuffles epoch e with data_seed + e; a run of the suite touches at most 3 epochs
    # (the equal-time APS arm a few more), so give each seed's window 10 epochs.
    windows = {seed: set(range(quality.data_order_seed(seed), quality.data_order_seed(seed) + 10)) for seed in range(6)}
    for seed in range(2, 6):
        assert all(not (windows[seed] & windows[other]) for other in windows if other != seed), seed
    # Seeds 0 and 1 keep the orders their committed runs were trained with (data_seed = seed).
    assert (quality.data_order_seed(0), quality.data_order_seed(1)) == (0, 1)
    suite = quality.SUITES["cpu"]
    for arm in ("mocov3", "lightly_mocov3"):
        command = quality.pretrain_command(suite, suite.arms[arm], seed=2, out=tmp_path, monitor_steps=50)
        assert command[command.index("--data_seed") + 1] == "2000" and command[command.index("--seed") + 1] == "2"


def test_every_cpu_arm_names_a_preset_with_a_step_budget():
    for arm in quality.SUITES["cpu"].arms.values():
        assert quality.preset_max_steps(arm.preset), arm
    for _, method, baseline in quality.CLAIMS:
        assert method in quality.SUITES["cpu"].arms and baseline in quality.SUITES["cpu"].arms


def test_parity__lightly_arms_run_the_peer_script_on_the_same_preset(tmp_path):
    suite = quality.SUITES["cpu"]
    command = quality.pretrain_command(suite, suite.arms["lightly_byol"], seed=1, out=tmp_path, monitor_steps=50)
    assert command[1] == "scripts/train_lightly_peer.py" and command[command.index("--preset") + 1] == "byol_fmnist"
    assert command[command.index("--knn_monitor_max_test_samples") + 1] == str(quality.MONITOR_TEST)
    rows = [_row("byol", s, 0.70 + 0.01 * s) for s in range(3)] + [_row("lightly_byol", s, 0.80 + 0.01 * s) for s in range(3)]
    parity = quality.claims_table(rows, "knn_top1", tuple(("x", ours, peer) for ours, peer in quality.PARITY))
    report = {"results": rows, "summary": quality.summarise(rows, list(suite.arms)), "floors": {}, "parity": parity}
    assert "| `byol` vs `lightly_byol` | -10.0 | 2.0 | 3 / 3 | ours worse |" in quality.markdown(report, suite)


def test_parity__clipping_is_the_presets_on_both_sides_unless_an_arm_turns_it_off(tmp_path):
    suite = quality.SUITES["cpu"]
    for ours, peer in (("simsiam", "lightly_simsiam"), ("simsiam_no_clip", "lightly_simsiam_no_clip")):
        commands = [quality.pretrain_command(suite, suite.arms[arm], seed=0, out=tmp_path, monitor_steps=50) for arm in (ours, peer)]
        clipping = [command[command.index("--max_grad_norm") + 1] if "--max_grad_norm" in command else "preset" for command in commands]
        assert clipping == (["preset", "preset"] if ours == "simsiam" else ["0", "0"])
    assert ("simsiam_no_clip", "lightly_simsiam_no_clip") in quality.PARITY


def test_equal_time_steps__the_reference_step_time_fills_the_target_time():
    rows = [
        {"arm": "mocov3", "seed": 0, "train_seconds": 600.0, "optimizer_steps": 500},
        {"arm": "aps", "seed": 0, "train_seconds": 100.0, "optimizer_steps": 500},  # 0.2 s per APS step
        {"arm": "aps", "seed": 1, "error": "boom"},
        {"arm": "mocov3", "seed": 1, "train_seconds": 600.0, "optimizer_steps": 500},
    ]
    assert quality.equal_time_steps(rows, 0, "mocov3", "aps") == 3000
    assert quality.equal_time_steps(rows, 1, "mocov3", "aps") is None  # a failed reference run gives no step time
    arm = quality.SUITES["cpu"].arms["aps_equal_time"]
    assert arm.preset == "aps_fmnist" and arm.equal_time == ("mocov3", "aps")
