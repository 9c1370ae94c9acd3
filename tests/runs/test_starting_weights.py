"""Pretraining from existing backbone weights: local-dir:, hf-hub: and timm's pretrained=True."""

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from hf_sslviews.methods import find_preset
from hf_sslviews.runs.arguments import ModelArguments, config_and_starting_weights
from hf_sslviews.runs.pretrain import build_model
from hf_sslviews.runs.starting_weights import starting_weights

from ..helpers import export_tiny_backbone


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A timm-format folder (config.json + model.safetensors), as export_backbone or save_for_hf writes it."""
    return export_tiny_backbone(tmp_path_factory.mktemp("start") / "backbone")


def _model(backbone, preset="byol_tiny", **extra):
    recipe, found = find_preset(preset)
    return build_model(recipe, found, ModelArguments(method=recipe.name, preset=preset, backbone=backbone, **extra))


def test_local_dir__online_and_target_backbones_start_from_the_folder_weights(exported):
    model = _model(f"local-dir:{exported}")
    weights = load_file(str(exported / "model.safetensors"))
    online = model.backbone.model.state_dict()
    assert set(weights) == set(online)
    for name, tensor in weights.items():
        assert torch.equal(online[name], tensor), name
        assert torch.equal(model.target_backbone.model.state_dict()[name], tensor), name  # the EMA target starts equal
    config = json.loads((exported / "config.json").read_text())
    assert model.config.backbone == config["architecture"] and model.config.backbone_kwargs["embed_dim"] == 48
    assert model.config.base_model is None  # a local folder has no Hub id
    assert config["model_args"]["img_size"] in (32, [32, 32]) and model.config.image_size == 32  # the source's own image size, via its model_args


def test_local_dir__a_saved_checkpoint_reloads_without_the_source(exported, tmp_path):
    import shutil

    from transformers import AutoModelForPreTraining

    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    model = _model(f"local-dir:{folder}")
    model.save_pretrained(tmp_path / "run")
    shutil.rmtree(folder)  # the source is gone: reloading must not need it
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path / "run")
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_hf_hub__records_the_repo_as_base_model(exported, monkeypatch):
    from timm.models import _hub as timm_hub

    monkeypatch.setattr(timm_hub, "load_model_config_from_hf", lambda repo_id, **kw: timm_hub.load_model_config_from_path(exported))
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, **kw: create(name.replace("hf-hub:org/start", f"local-dir:{exported}"), **kw))
    model = _model("hf-hub:org/start")
    assert model.config.base_model == "org/start"
    weights = load_file(str(exported / "model.safetensors"))
    assert all(torch.equal(model.backbone.model.state_dict()[name], tensor) for name, tensor in weights.items())
    from hf_sslviews.publish.cards import render_model_card

    card = render_model_card(model, "byol_tiny", repo_id="me/adapted", dataset="x", budget="1 step", base_model=model.config.base_model)
    assert card.data.base_model == "org/start"


def test_pretrained_flag__no_duplicate_keyword_and_a_clear_error_without_weights():
    recipe, preset = find_preset("byol_tiny")
    args = ModelArguments(method="byol", preset="byol_tiny", backbone="vit_tiny_patch16_224", backbone_kwargs='{"pretrained": true, "img_size": 32}')
    config, weights = config_and_starting_weights(recipe, preset, args)
    assert weights is not None and weights.source == "vit_tiny_patch16_224" and weights.base_model  # timm's Hub id of the default tag
    assert "pretrained" not in config.backbone_kwargs and config.backbone_kwargs["img_size"] == 32 and config.base_model == weights.base_model
    without = next(name for name in timm.list_models() if not timm.is_model_pretrained(name))
    with pytest.raises(ValueError, match="no pretrained weights"):
        starting_weights(without, {"pretrained": True})
    assert starting_weights("vit_tiny_patch16_224", {"img_size": 32}) is None  # a random start
