"""The results a user reads are generated from the recorded runs and cannot drift from them."""

import pytest

from hf_sslviews.methods import RECIPES

from ..helpers import load_benchmark

render = load_benchmark("render_results")


def test_results_doc_and_readme_table__match_the_recorded_runs():
    report = render.load()
    assert render.RESULTS_DOC.read_text() == render.results_doc(report, render.load_collapse()), "docs/results.md is stale: run python benchmarks/render_results.py"
    readme = render.README.read_text()
    assert readme == render.readme_with_table(readme, render.readme_table(report)), "the README's results table is stale: run python benchmarks/render_results.py"


def test_readme_table__every_method_and_every_claim_arm_with_its_verdicts():
    quality = load_benchmark("quality")
    rows = [{"arm": arm, "seed": seed, "data_seed": 1000 * seed, "knn_top1": knn + 0.001 * seed, "linear_top1": 0.5, "linear_protocol": 3, "train_seconds": 1.0, "optimizer_steps": 500}
            for arm, knn in (("patchmix", 0.8), ("patchmix_no_mix", 0.7)) for seed in range(3)]
    report = quality.derive({"suite": "cpu", "results": rows, "floors": {}}, quality.SUITES["cpu"])
    table = render.readme_table(report)
    for method in RECIPES:
        assert f"| `{method}` |" in table
    assert "| `patchmix` | 80.1 | 50.0 | — | PatchMix beats its instance-discrimination baseline (no mixing) (vs `patchmix_no_mix`): knn **holds**, linear **not resolved** |" in table
    assert "| `aps_p4_equal_time` | — | — | — |" in table and "(vs `mocov3_p4`): not measured |" in table


def test_readme_table__refuses_a_readme_without_its_block():
    with pytest.raises(ValueError, match="results table"):
        render.readme_with_table("# a README without the block\n", "| table |\n")


def test_readme_methods_table__lists_every_registered_preset_and_no_other():
    import re

    readme = render.README.read_text()
    table = readme[readme.index("## Methods"):readme.index("## Pretraining")]
    named = set()
    for cell in re.findall(r"`([a-z0-9_{},]+)`", table):
        # `aps_cifar_vit_{tiny,small,base}` names three presets.
        match = re.fullmatch(r"([a-z0-9_]*)\{([a-z0-9_,]+)\}([a-z0-9_]*)", cell)
        named |= {f"{match[1]}{part}{match[3]}" for part in match[2].split(",")} if match else {cell}
    presets = {preset for recipe in RECIPES.values() for preset in recipe.presets}
    assert presets <= named, f"presets missing from the README's methods table: {sorted(presets - named)}"
    looks_like_a_preset = {name for name in named if name.split("_")[0] in RECIPES and name not in RECIPES}
    assert looks_like_a_preset <= presets, f"the table names presets that do not exist: {sorted(looks_like_a_preset - presets)}"


def test_collapse_section__one_row_per_run_and_stage():
    stages = {"backbone": {"dim": 192, "rankme": 2.6, "normalised_std": 0.0064, "spread_std": 0.0722, "top_direction_share": 0.615}}
    text = render.collapse_section({"results": [{"run": "aps_p4_seed1", "stages": stages}]})
    assert "| aps_p4_seed1 | backbone | 192 | 2.60 | 0.0064 (0.0722) | 61.5% |" in text
    assert render.collapse_section(None).startswith("Not measured")
