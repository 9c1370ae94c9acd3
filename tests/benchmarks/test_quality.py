"""The quality protocol's statistics: means and spreads over seeds, claim verdicts, curves, tables."""

import json

import pytest

from ..helpers import load_benchmark

quality = load_benchmark("quality")


def _row(arm, seed, knn, linear=None, **extra):
    return {"arm": arm, "seed": seed, "data_seed": 1000 * seed, "knn_top1": knn, "linear_top1": linear, "linear_protocol": quality.LINEAR_PROTOCOL,
            "train_seconds": 10.0 + seed, "optimizer_steps": 500, **extra}


def test_summarise__mean_and_sample_standard_deviation_over_seeds():
    rows = [_row("byol", 0, 0.40, 0.60), _row("byol", 1, 0.50, 0.70), _row("byol", 2, 0.60, 0.80)]
    (entry,) = quality.summarise(rows, ["aps", "byol"])
    assert entry["seeds"] == [0, 1, 2] and entry["failed_runs"] == 0
    assert entry["knn_top1"] == pytest.approx(0.5)
    assert entry["knn_top1_std"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    assert entry["linear_top1"] == pytest.approx(0.7) and entry["train_seconds"] == pytest.approx(11.0)  # the median of the runs that ran alone
    assert entry["knn_top1_n"] == 3 and "finetune_top1" not in entry


def test_summarise__seeds_sharing_a_data_order_are_listed_not_averaged():
    # Seed 1 trained on data order 1: two of its epochs are seed 0's. Seed 2 (order 2000) is independent.
    rows = [_row("byol", 0, 0.40, data_seed=0), _row("byol", 1, 0.90, data_seed=1), _row("byol", 2, 0.60, data_seed=2000)]
    (entry,) = quality.summarise(rows, ["byol"])
    assert entry["seeds"] == [0, 2] and entry["shared_order_seeds"] == [1]
    assert entry["knn_top1"] == pytest.approx(0.5)
    # Rows written before data_seed was recorded trained on data order = seed.
    legacy = [{key: value for key, value in row.items() if key != "data_seed"} for row in rows[:2]]
    assert [row["seed"] for row in quality.independent_rows(legacy)[1]] == [1]


def test_ran_alone__a_neighbour_in_the_sampled_load_or_a_slow_run_is_flagged():
    arm = [_row("mocov3", s, 0.8, train_seconds=500.0 + s) for s in range(3)]
    assert quality.ran_alone(arm[0], arm)
    loaded = {**arm[0], "load_during": {"median": 3.4, "max": 4.0, "samples": 100}}
    assert not quality.ran_alone(loaded, arm)
    assert quality.ran_alone({**arm[0], "load_during": {"median": 2.1, "max": 3.9, "samples": 100}}, arm)  # a moment of load is not a neighbour
    assert not quality.ran_alone({**arm[0], "load_average": [0.7, 3.42]}, arm)  # older rows: the load at the end
    slow = {**arm[0], "train_seconds": 2700.0}  # ended alone, but took 5 times the others' time
    assert not quality.ran_alone(slow, arm + [slow])
    (entry,) = quality.summarise(arm + [{**slow, "seed": 3, "data_seed": 3000}], ["mocov3"])
    assert entry["slowed_seeds"] == [3] and entry["train_seconds"] == pytest.approx(501.0)

def test_summarise__failed_runs_are_counted_not_averaged():
    rows = [_row("aps", 0, 0.6), {"arm": "aps", "seed": 1, "error": "boom"}, {"arm": "simsiam", "seed": 0, "error": "boom"}]
    aps, simsiam = quality.summarise(rows, ["aps", "simsiam"])
    assert aps["seeds"] == [0] and aps["failed_runs"] == 1 and aps["knn_top1"] == pytest.approx(0.6)
    assert simsiam == {"arm": "simsiam", "seeds": [], "failed_runs": 1, "shared_order_seeds": [], "slowed_seeds": []}


@pytest.mark.parametrize(
    "method, baseline, outcome",
    [
        ([0.80, 0.81, 0.82], [0.70, 0.71, 0.72], "holds"),  # +10 points, noise 1: far beyond 2 sd
        ([0.70, 0.71, 0.72], [0.80, 0.81, 0.82], "fails"),
        ([0.80, 0.83, 0.86], [0.78, 0.80, 0.82], "not resolved"),  # +3 points, noise 3: under 2 sd
        # +4 points against a noise of 1.4 (beyond 2 sd), but two seeds a side: the 95% interval
        # [-2.1, +10.1] (t with 2 degrees of freedom) holds zero.
        ([0.80, 0.82], [0.76, 0.78], "not resolved"),
    ],
)
def test_verdict__difference_against_two_standard_deviations(method, baseline, outcome):
    result = quality.verdict(method, baseline)
    assert result["verdict"] == outcome
    assert result["difference"] == pytest.approx(sum(method) / len(method) - sum(baseline) / len(baseline))
    low, high = result["interval"]
    assert low < result["difference"] < high


def test_welch_interval__hand_computed_and_scipys_own():
    # [1, 2, 3] against [0, 0, 0]: standard error sqrt(1/3), Welch's degrees of freedom (1/3)^2 / ((1/3)^2 / 2) = 2,
    # t(0.975, 2) = 4.302653: 2 -+ 4.302653 * 0.577350 = [-0.484137, 4.484137].
    low, high = quality.welch_interval([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert (low, high) == (pytest.approx(-0.484137, abs=1e-5), pytest.approx(4.484137, abs=1e-5))
    stats = pytest.importorskip("scipy.stats")
    method, baseline = [0.81, 0.79, 0.84, 0.80], [0.75, 0.78, 0.74]
    reference = stats.ttest_ind(method, baseline, equal_var=False).confidence_interval(0.95)
    assert quality.welch_interval(method, baseline) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert quality.welch_interval([0.5], [0.1, 0.2]) is None


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
        "floors": {"raw_pixels": {"knn_top1": 0.85, "linear_top1": 0.84, "linear_protocol": 3}, "random_init": {"vit": {"0": {"knn_top1": 0.44, "linear_top1": 0.7, "linear_protocol": 3}, "1": {"knn_top1": 0.46, "linear_top1": 0.72, "linear_protocol": 3}}}},
    }
    table = quality.markdown(report, suite)
    assert "| aps | 62.0 ± 2.8 | 71.0 ± 1.4 | — | 0, 1 | 500 |" in table
    assert "| mocov3 | 42.0 ± 1.4 | — | — | 0, 1 |" in table
    assert "| random init (floor) | 45.0 ± 1.4 | 71.0 ± 1.4 | — | 2 inits |" in table
    assert "| raw pixels (floor) | 85.0 | 84.0 | — |" in table
    # +20 points against a noise of 2.8, and a 95% interval clear of zero (Welch, 1.47 degrees of freedom): the claim holds.
    assert "APS beats MoCo v3 with the same ViT at equal optimizer steps (`aps` vs `mocov3`) | knn | +20.0 | [+6.2, +33.8] | 5.7 | 2 / 2 | holds |" in table


def test_markdown__finetune_column_counts_its_own_seeds_and_floor():
    suite = quality.SUITES["cpu"]
    rows = [_row("aps_p4", 0, 0.72, 0.77, finetune_top1=0.90), _row("aps_p4", 1, 0.74, 0.79)]
    floors = {"random_init": {"vit": {"0": {"knn_top1": 0.60, "linear_top1": 0.70, "linear_protocol": 3, "finetune_top1": 0.88}, "1": {"knn_top1": 0.62, "linear_top1": 0.70, "linear_protocol": 3}}}}
    report = {"results": rows, "summary": quality.summarise(rows, list(suite.arms)), "claims": {}, "floors": floors}
    table = quality.markdown(report, suite)
    assert "| aps_p4 | 73.0 ± 1.4 | 78.0 ± 1.4 | 90.0 (1 seed) | 0, 1 |" in table
    assert "| random init (floor) | 61.0 ± 1.4 | 70.0 ± 0.0 | 88.0 ± 0.0 (1 inits) | 2 inits |" in table


def test_markdown__random_init_floor_per_architecture_not_pooled():
    # A 4 px-patch ViT starts 10 points under the 7 px one: pooling them would give neither floor.
    seven, four = 'vit {"depth": 4, "patch_size": 7} [3, 28, 28]', 'vit {"depth": 4, "patch_size": 4} [3, 28, 28]'
    floors = {"random_init": {seven: {"0": {"knn_top1": 0.70, "linear_top1": 0.74, "linear_protocol": 3}, "1": {"knn_top1": 0.72, "linear_top1": 0.74, "linear_protocol": 3}},
                              four: {"0": {"knn_top1": 0.60, "linear_top1": 0.70, "linear_protocol": 3}}}}
    report = {"results": [], "summary": [], "claims": {}, "floors": floors}
    values = quality.floor_values(report)["random_init"]
    assert values[seven]["knn_top1"][0] == pytest.approx(0.71) and values[four]["knn_top1"][0] == pytest.approx(0.60)
    table = quality.markdown(report, quality.SUITES["cpu"])
    assert "| random init, 7 px patches (floor) | 71.0 ± 1.4 | 74.0 ± 0.0 | — | 2 inits |" in table
    assert "| random init, 4 px patches (floor) | 60.0 ± 0.0 | 70.0 ± 0.0 | — | 1 inits |" in table


def test_pretrain_command__monitor_on_the_fixed_subset_and_the_arm_flags_last(tmp_path):
    suite = quality.SUITES["cpu"]
    arm = suite.arms["patchmix_no_mix"]
    command = quality.pretrain_command(suite, arm, seed=2, out=tmp_path, monitor_steps=50)
    assert command[command.index("--preset") + 1] == "patchmix_fmnist" and command[command.index("--seed") + 1] == "2"
    assert command[command.index("--knn_monitor_steps") + 1] == "50"
    assert command[command.index("--knn_monitor_max_train_samples") + 1] == str(quality.MONITOR_TRAIN)
    assert command[command.index("--online_linear_probe") + 1] == "True"
    # The monitor's queries are the last train images: nothing watched while training reads test.
    assert command[command.index("--knn_test_split") + 1] == quality.MONITOR_QUERIES == "train[-1000:]"
    assert command[-2:] == list(arm.flags)
    overrides = json.loads(command[command.index("--config_overrides") + 1])
    assert overrides == {"mix_origin_weight": 0.0, "mix_mix_weight": 0.0}


def test_data_order__every_seed_shares_no_epoch_order_with_any_other_seed(tmp_path):
    # accelerate shuffles epoch e with data_seed + e; a run of the suite touches at most a few
    # epochs (the long-budget arms a few tens), so give each seed's window 100 epochs.
    windows = {seed: set(range(quality.data_order_seed(seed), quality.data_order_seed(seed) + 100)) for seed in range(6)}
    for seed in windows:
        assert all(not (windows[seed] & windows[other]) for other in windows if other != seed), seed
    suite = quality.SUITES["cpu"]
    for arm in ("mocov3", "lightly_mocov3"):
        command = quality.pretrain_command(suite, suite.arms[arm], seed=1, out=tmp_path, monitor_steps=50)
        assert command[command.index("--data_seed") + 1] == "1000" and command[command.index("--seed") + 1] == "1"


def test_finetune_command__the_protocols_recipe_on_test_or_the_validation_split(tmp_path):
    suite = quality.SUITES["cpu"]
    command = quality.finetune_command(suite, tmp_path / "backbone", tmp_path / "ft", seed=2)
    assert command[1] == "scripts/run_finetune.py" and command[command.index("--model_name_or_path") + 1] == str(tmp_path / "backbone")
    assert command[command.index("--train_augmentation") + 1] == "pad_crop" and command[command.index("--data_seed") + 1] == "2000"
    assert float(command[command.index("--learning_rate") + 1]) == quality.FINETUNE_LEARNING_RATE
    assert "--train_val_split" not in command and "--random_init" not in command
    search = quality.finetune_command(suite, tmp_path / "backbone", tmp_path / "ft", seed=0, random_init=True, learning_rate=4e-3, validation=True)
    assert search[search.index("--train_val_split") + 1] == "0.1" and search[search.index("--random_init") + 1] == "True"
    assert float(search[search.index("--learning_rate") + 1]) == 4e-3


def test_every_cpu_arm_names_a_preset_with_a_step_budget():
    for arm in quality.SUITES["cpu"].arms.values():
        assert quality.preset_max_steps(arm.preset), arm
    for _, method, baseline in quality.CLAIMS:
        assert method in quality.SUITES["cpu"].arms and baseline in quality.SUITES["cpu"].arms


def test_parity__lightly_arms_run_the_peer_script_on_the_same_preset(tmp_path):
    suite = quality.SUITES["cpu"]
    command = quality.pretrain_command(suite, suite.arms["lightly_byol"], seed=1, out=tmp_path, monitor_steps=50)
    assert command[1] == "benchmarks/lightly_peer.py" and command[command.index("--preset") + 1] == "byol_fmnist"
    assert command[command.index("--knn_monitor_max_test_samples") + 1] == str(quality.MONITOR_TEST)
    rows = [_row("byol", s, 0.70 + 0.01 * s) for s in range(3)] + [_row("lightly_byol", s, 0.80 + 0.01 * s) for s in range(3)]
    parity = quality.claims_table(rows, "knn_top1", tuple(("x", ours, peer) for ours, peer in quality.PARITY))
    report = {"results": rows, "summary": quality.summarise(rows, list(suite.arms)), "floors": {}, "parity": parity}
    assert "| `byol` vs `lightly_byol` | -10.0 | [-12.3, -7.7] | 2.0 | 3 / 3 | ours worse |" in quality.markdown(report, suite)


def test_parity__clipping_is_the_presets_on_both_sides_unless_an_arm_turns_it_off(tmp_path):
    suite = quality.SUITES["cpu"]
    for ours, peer in (("simsiam", "lightly_simsiam"), ("simsiam_no_clip", "lightly_simsiam_no_clip")):
        commands = [quality.pretrain_command(suite, suite.arms[arm], seed=0, out=tmp_path, monitor_steps=50) for arm in (ours, peer)]
        clipping = [command[command.index("--max_grad_norm") + 1] if "--max_grad_norm" in command else "preset" for command in commands]
        assert clipping == (["preset", "preset"] if ours == "simsiam" else ["0", "0"])
    assert ("simsiam_no_clip", "lightly_simsiam_no_clip") in quality.PARITY


def test_equal_time_steps__median_costs_of_runs_measured_alone():
    rows = [
        {"arm": "mocov3", "seed": 0, "train_seconds": 600.0, "optimizer_steps": 500},
        {"arm": "mocov3", "seed": 1, "train_seconds": 2700.0, "optimizer_steps": 500},  # slowed by a neighbour: not a cost
        {"arm": "mocov3", "seed": 2, "train_seconds": 620.0, "optimizer_steps": 500},
        {"arm": "aps", "seed": 0, "train_seconds": 100.0, "optimizer_steps": 500},  # 0.2 s per APS step
        {"arm": "aps", "seed": 1, "error": "boom"},
    ]
    # mocov3: median of 1.20 and 1.24 s per step = 1.22; 500 steps = 610 s = 3050 APS steps, for every seed.
    assert quality.equal_time_steps(rows, "mocov3", "aps") == 3050
    assert quality.equal_time_steps(rows[:3], "mocov3", "aps") is None  # no APS run: no step time
    arm = quality.SUITES["cpu"].arms["aps_equal_time"]
    assert arm.preset == "aps_fmnist" and arm.equal_time == ("mocov3", "aps")


def test_rankme_agreement__spearman_within_and_across_runs():
    pytest.importorskip("scipy")

    def row(arm, seed, ranks, knns, final):
        curve = [{"step": 50 * (i + 1), "train_seconds": 1.0, "knn_top1": k, "rankme": r} for i, (r, k) in enumerate(zip(ranks, knns))]
        return _row(arm, seed, final, curve=curve)

    rows = [
        row("mocov3", 0, [10, 20, 30], [0.5, 0.6, 0.7], 0.80),  # RankMe and kNN rise together: +1
        row("byol", 0, [30, 20, 10], [0.5, 0.6, 0.7], 0.70),  # the opposite: -1
        row("aps", 0, [5, 6, 7], [0.5, 0.55, 0.6], 0.60),
        _row("simsiam", 0, 0.5),  # no RankMe logged: not counted
    ]
    agreement = quality.rankme_agreement({"results": rows})
    assert agreement["runs"] == 3
    assert agreement["within_runs"] == pytest.approx(1 / 3)  # mean of +1, -1, +1
    # Final RankMe 30, 10, 7 against final kNN 0.80, 0.70, 0.60: the same order, Spearman 1.
    assert agreement["across_runs"] == pytest.approx(1.0)
    merged = quality.merge_curves([{"step": 50, "knn_top1": 0.5}, {"step": 100, "knn_top1": 0.6}], [{"step": 100, "rankme": 12.0, "alignment": 0.3}])
    assert merged == [{"step": 50, "knn_top1": 0.5}, {"step": 100, "knn_top1": 0.6, "rankme": 12.0, "alignment": 0.3}]


def test_linear_protocol__older_probe_rows_count_in_no_linear_mean_or_verdict():
    rows = [_row("patchmix", s, 0.80 + 0.001 * s, 0.90) for s in range(3)] + [_row("patchmix_no_mix", s, 0.70 + 0.001 * s, 0.60) for s in range(3)]
    for row in rows[:2]:
        del row["linear_protocol"]  # probed with the version-2 linear protocol
    (entry,) = [e for e in quality.summarise(rows, ["patchmix"])]
    assert entry["linear_top1_n"] == 1 and entry["knn_top1_n"] == 3  # kNN is unchanged by the probe's version
    (claim,) = [c for c in quality.claims_table(rows, "linear_top1") if c["method"] == "patchmix"]
    assert claim["method_seeds"] == 1 and claim["verdict"].startswith("not resolved")


def test_finetune_learning_rate__is_the_rule_applied_to_the_recorded_search():
    """The protocol's learning rate is not set by hand: it is what search_choice gives on the committed JSON."""
    report = json.loads((quality.RESULTS / "quality_cpu.json").read_text())
    assert quality.search_choice(report) == quality.FINETUNE_LEARNING_RATE
    # The rule: the best mean over the backbones that tried every rate.
    entry = lambda backbone, rate, top1: {"backbone": backbone, "seed": 0, "architecture": "vit", "learning_rate": rate,  # noqa: E731
                                          "epochs": quality.FINETUNE_EPOCHS, "recipe": list(quality.FINETUNE_RECIPE), "validation_top1": top1}
    search = [entry("random_init", 1e-3, 0.70), entry("random_init", 2e-3, 0.80), entry("mocov3", 1e-3, 0.90), entry("mocov3", 2e-3, 0.78),
              entry("partial", 1e-3, 0.10)]  # tried one rate only: not counted
    assert quality.search_choice({"finetune_search": search}) == 1e-3  # means 0.80 against 0.79
    assert quality.search_choice({}) is None
