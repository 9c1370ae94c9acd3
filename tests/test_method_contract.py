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
- the model card renders with the method's title and citation.
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

from .helpers import random_image_dataset

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
    card = render_model_card(model, recipe, preset_name, f"org/{name}-test", "the test images", "2 optimizer steps")
    text = str(card)
    assert recipe.title and recipe.title in text
    section = method_section(name, model.config)
    assert section.strip() and section.strip().splitlines()[0] in text, f"{name}: model_cards/{name}.md is missing or not in the card"
    assert recipe.citation and recipe.citation.strip().splitlines()[0] in text
