"""The contract every registered method keeps, checked for each one (a ninth method gets it all).

For every entry of ``hf_sslviews.methods.RECIPES``, built from its first preset (the small CPU
default) with the backbone shrunk to one narrow block:

- the views' output keys are arguments of the model's ``forward``;
- two ``SSLTrainer`` steps on CPU move the weights, and the loss is finite;
- ``save_pretrained`` / ``AutoModelForPreTraining.from_pretrained`` gives back every tensor, and in a
  clean process ``import hf_sslviews`` is all a checkpoint needs: no view, data, training or method
  registry code is imported to load it;
- the method registry and the Auto-class registration (``hf_sslviews.modeling``) agree;
- the exported backbone loads with ``transformers.AutoModel`` in a process that never imports
  hf_sslviews, and gives the online backbone's features (one process for every method);
- the model card renders with the method's title and citation;
- it brings every part a method brings besides its code (``missing_parts``): card, presets, an
  exact-resume case, a two-process case, benchmark arms; a method lacking one is named with it.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForPreTraining

from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.methods import RECIPES
from hf_sslviews.publish.cards import method_section, render_model_card
from hf_sslviews.publish.export import export_backbone
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

from ..helpers import load_benchmark, random_image_dataset

METHODS = sorted(RECIPES)
# One narrow block keeps eight methods' contract under a minute; the geometry (image size, patch
# size) stays the preset's, so the views and token counts are the method's own.
SHRINK = {"depth": 1, "embed_dim": 48, "num_heads": 3}


def _small(name: str):
    recipe = RECIPES[name]
    preset = recipe.presets[next(iter(recipe.presets))]
    fields = dict(preset.config)
    if fields.get("backbone", "").startswith("vit"):
        fields["backbone_kwargs"] = {**fields.get("backbone_kwargs", {}), **SHRINK}
    for key, value in list(fields.items()):
        # Narrow heads (the presets' widths are 256-4096).
        if key.endswith("hidden_dim") and isinstance(value, int):
            fields[key] = 32
        elif key.endswith("_dim") and isinstance(value, int):
            fields[key] = 16
    if "queue_size" in fields:
        fields["queue_size"] = 64
    torch.manual_seed(0)
    config = recipe.config_class(**fields)
    return recipe, preset, recipe.model_class(config)


@pytest.fixture(scope="module", params=METHODS)
def trained(request, tmp_path_factory):
    name = request.param
    recipe, preset, model = _small(name)
    views = recipe.build_views(model.config, **preset.views)
    train = random_image_dataset(16, size=40).with_transform(views)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    out = tmp_path_factory.mktemp(name)
    args = SSLTrainingArguments(
        output_dir=str(out / "run"), per_device_train_batch_size=8, max_steps=2, learning_rate=1e-3, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0, seed=0,
    )
    trainer = SSLTrainer(model=model, args=args, train_dataset=train, data_collator=ViewCollator())
    trainer.train()
    return name, recipe, preset, model, views, train, before, trainer, out


def test_contract__view_keys_are_forward_arguments(trained):
    name, recipe, _, model, views, train, *_ = trained
    batch = ViewCollator()([train[i] for i in range(4)])
    batch.pop("num_skipped_images")
    parameters = inspect.signature(type(model).forward).parameters
    assert set(batch) <= set(parameters), f"{name}: views give {sorted(set(batch) - set(parameters))}, which forward does not take"
    assert type(model).main_input_name in batch


def test_contract__two_steps_move_the_weights_with_a_finite_loss(trained):
    name, _, _, model, _, _, before, trainer, _ = trained
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 2 and len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    after = model.state_dict()
    moved = [key for key in before if before[key].is_floating_point() and not torch.equal(before[key], after[key])]
    assert any(key.startswith("backbone.") for key in moved), f"{name}: the backbone did not train"
    assert all(torch.isfinite(value).all() for value in after.values() if value.is_floating_point())


def test_contract__save_and_reload_every_tensor(trained):
    name, _, _, model, _, _, _, _, out = trained
    model.save_pretrained(out / "pretraining")
    reloaded = AutoModelForPreTraining.from_pretrained(out / "pretraining")
    assert type(reloaded) is type(model)
    original, loaded = model.state_dict(), reloaded.state_dict()
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[key], loaded[key]) for key in original), name


def test_contract__registry_and_auto_classes_agree():
    from hf_sslviews.modeling import PRETRAINING_MODELS

    assert sorted(PRETRAINING_MODELS) == sorted(recipe.config_class.model_type for recipe in RECIPES.values())
    for recipe in RECIPES.values():
        assert PRETRAINING_MODELS[recipe.config_class.model_type] == (recipe.config_class, recipe.model_class), recipe.name


def test_contract__checkpoints_load_in_a_clean_process_without_view_or_training_code(tmp_path):
    folders = {}
    for name in METHODS:
        _, _, model = _small(name)
        model.save_pretrained(tmp_path / name)
        folders[name] = str(tmp_path / name)
    code = (
        "import json, sys\n"
        "import hf_sslviews\n"
        "from transformers import AutoModelForPreTraining\n"
        f"folders = {folders!r}\n"
        "report = {name: type(AutoModelForPreTraining.from_pretrained(folder)).__name__ for name, folder in folders.items()}\n"
        "report['__imported__'] = sorted({m.split('.')[1] for m in sys.modules if m.startswith('hf_sslviews.')})\n"
        "print(json.dumps(report))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("__imported__") == ["modeling"]
    assert report == {name: RECIPES[name].model_class.__name__ for name in METHODS}


def test_contract__every_export_loads_with_automodel_in_one_clean_process(tmp_path):
    # One process for all methods: starting Python with transformers costs more than the check.
    expected, folders = {}, {}
    for name in METHODS:
        _, _, model = _small(name)
        folders[name] = str(export_backbone(model, tmp_path / name))
        pixels = torch.randn(2, 3, model.config.image_size, model.config.image_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected[name] = model.eval().backbone(pixels)
    code = (
        "import json, sys, torch\n"
        "from transformers import AutoModel\n"
        f"folders = {folders!r}\n"
        "report = {}\n"
        "for name, folder in folders.items():\n"
        "    model = AutoModel.from_pretrained(folder).eval()\n"
        "    size = model.config.pretrained_cfg['input_size'][-1]\n"
        "    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))\n"
        "    with torch.no_grad():\n"
        "        report[name] = {'type': type(model).__name__, 'features': model(pixel_values=pixels).pooler_output.tolist()}\n"
        "report['__sslviews_imported__'] = any(m.startswith('hf_sslviews') for m in sys.modules)\n"
        "print(json.dumps(report))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("__sslviews_imported__") is False
    for name in METHODS:
        assert report[name]["type"] == "TimmWrapperModel", name
        torch.testing.assert_close(torch.tensor(report[name]["features"]), expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_contract__card_renders_with_title_and_citation(trained):
    name, recipe, _, model, *_ = trained
    preset_name = next(iter(recipe.presets))
    card = render_model_card(model, preset_name, f"org/{name}-test", "the test images", "2 optimizer steps")
    text = str(card)
    assert recipe.title and recipe.title in text
    section = method_section(name, model.config)
    assert section.strip() and section.strip().splitlines()[0] in text, f"{name}: model_cards/{name}.md is missing or not in the card"
    assert recipe.citation and recipe.citation.strip().splitlines()[0] in text


# -- the parts a method brings besides its code ---------------------------------------------------


def missing_parts(name: str) -> list[str]:
    """What method ``name`` lacks of what every method provides, each with where to add it."""
    from hf_sslviews.model_cards import method_card

    from ..training import distributed_workers, test_exact_resume

    quality = load_benchmark("quality")
    recipe = RECIPES.get(name)
    presets = list(recipe.presets) if recipe is not None else []
    checks = {
        f"a card, model_cards/{name}.md, with a title and a citation": lambda: method_card(name) is not None,
        f"a first (default) preset {name}_tiny, the CPU smoke recipe": lambda: presets[:1] == [f"{name}_tiny"],
        f"a preset {name}_fmnist, its arm of the quality benchmark": lambda: f"{name}_fmnist" in presets,
        "an exact-resume case in tests/training/test_exact_resume.py CASES": lambda: name in test_exact_resume.CASES,
        "a two-process equality case in tests/training/distributed_workers.py": lambda: name in distributed_workers.COVERED_METHODS,
        "an arm in both suites of benchmarks/quality.py": lambda: all(name in suite.arms for suite in quality.SUITES.values()),
    }
    return [part for part, present in checks.items() if not present()]


@pytest.mark.parametrize("name", METHODS)
def test_contract__every_method_brings_every_part(name):
    assert missing_parts(name) == [], f"{name} lacks: {missing_parts(name)}"


def test_contract__a_method_without_its_parts_is_named_with_each_missing_part():
    # A ninth method registered with only its code: each part it lacks is reported.
    name = "simclr"
    missing = missing_parts(name)
    assert len(missing) == 6 and f"a card, model_cards/{name}.md, with a title and a citation" in missing
    assert any("test_exact_resume.py" in part for part in missing) and any("distributed_workers.py" in part for part in missing)


def test_contract__registration_refuses_a_name_that_is_not_the_model_type():
    from hf_sslviews.methods import register_recipe
    from hf_sslviews.methods.base import MethodRecipe

    byol = RECIPES["byol"]
    renamed = MethodRecipe(name="byol2", config_class=byol.config_class, model_class=byol.model_class, build_views=byol.build_views, presets=byol.presets)
    with pytest.raises(ValueError, match=r"BYOLConfig.model_type is 'sslviews_byol'; a method named 'byol2' needs model_type 'sslviews_byol2'"):
        register_recipe(renamed)
    with pytest.raises(ValueError, match="registered twice"):
        register_recipe(byol)
    assert RECIPES["byol"] is byol and "byol2" not in RECIPES


def test_contract__a_card_without_title_or_citation_is_refused():
    from hf_sslviews.model_cards import parse_method_card

    with pytest.raises(ValueError, match="front matter names no title"):
        parse_method_card("## Method\n\ntext\n\n## Citation\n\n```bibtex\n@article{x}\n```\n", "x")
    with pytest.raises(ValueError, match="no '## Citation' section"):
        parse_method_card("---\ntitle: X\n---\n## Method\n\ntext\n", "x")
    card = parse_method_card("---\ntitle: X (Y)\n---\n## Method\n\ntext\n\n## Citation\n\n```bibtex\n@article{x,\n  year={2020}\n}\n```\n\n## Notes\n\nmore\n", "x")
    assert card.title == "X (Y)" and card.citation == "@article{x,\n  year={2020}\n}"
    assert "## Citation" not in card.text and "## Method" in card.text and "## Notes" in card.text
