"""Security: only safetensors is written or read, no remote code, tampered checkpoints fail clearly.

- (a) No library or script source unpickles (``torch.load``, ``pickle``) or writes pickled
  weights; ``save_pretrained`` and the backbone export write only ``.safetensors`` / ``.json``.
- (b) An exported backbone and a pretraining checkpoint load without ``trust_remote_code``:
  their configs have no ``auto_map``.
- (c) A pretraining checkpoint with an unexpected or missing tensor, or a ``config.json`` whose
  fields were tampered with, fails with a ``ValueError`` naming the problem and the fix through
  :func:`hf_sslviews.publish.loading.load_pretraining_model`. (``AutoModelForPreTraining.from_pretrained``
  alone only logs unexpected / missing tensors, and loads a random BERT if ``model_type`` is
  changed to ``"bert"``: the first tests below pin that, as the reason for the helper.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForPreTraining

import hf_sslviews  # noqa: F401  (registers the Auto classes)
from hf_sslviews.data.collator import ViewCollator
from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
from hf_sslviews.publish.export import export_backbone
from hf_sslviews.publish.loading import load_pretraining_model
from hf_sslviews.training.trainer import SSLTrainer, SSLTrainingArguments

from ..conftest import TINY_VIT

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for folder in ("hf_sslviews", "modeling", "scripts") for p in (ROOT / folder).rglob("*.py"))
SAFE_SUFFIXES = {".safetensors", ".json"}

# Calls that unpickle or pickle, and pickled weight files opened for writing by hand. (File-name
# strings alone are allowed: hub.py lists pickle suffixes to keep them *out* of uploads.)
FORBIDDEN = {
    "torch.load": re.compile(r"\btorch\.load\s*\("),
    "torch.save": re.compile(r"\btorch\.save\s*\("),
    "pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b|\b(c?pickle|dill|joblib)\.(load|loads|dump|dumps)\s*\(", re.M),
    "pickled weight file written": re.compile(r"""open\([^)\n]*\.(bin|pt|pth|pkl|ckpt)["'][^)\n]*["']wb"""),
    "unsafe serialization flag": re.compile(r"\b(safe_serialization|save_safetensors|use_safetensors)\s*=\s*False"),
    "remote code": re.compile(r"\btrust_remote_code\s*=\s*True"),
}


def test_sources__no_pickle_no_remote_code():
    assert SOURCES, "no sources found"
    hits = [f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {name}" for path in SOURCES for text in [path.read_text()] for name, pattern in FORBIDDEN.items() for m in pattern.finditer(text)]
    assert not hits, "pickle / remote-code use in library sources:\n" + "\n".join(hits)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny MoCo v3 pretraining checkpoint and its exported backbone (saved once)."""
    torch.manual_seed(0)
    model = MoCoV3ForPreTraining(MoCoV3Config(**TINY_VIT, projector_hidden_dim=32, projector_dim=16))
    root = tmp_path_factory.mktemp("security")
    model.save_pretrained(root / "pretraining")
    export_backbone(model, root / "backbone")
    return model, root / "pretraining", root / "backbone"


def _files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_save_pretrained_and_export__only_safetensors_and_json(saved):
    _, pretraining, backbone = saved
    for folder in (pretraining, backbone):
        suffixes = {path.suffix for path in _files(folder)}
        assert suffixes <= SAFE_SUFFIXES, f"{folder.name}: {sorted(suffixes)}"
        assert (folder / "model.safetensors").is_file()


def test_trainer_save_model__only_safetensors_and_json(saved, tmp_path):
    model, _, _ = saved
    args = SSLTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, save_strategy="no")
    SSLTrainer(model=model, args=args, data_collator=ViewCollator()).save_model(str(tmp_path / "final"))
    assert {path.suffix for path in _files(tmp_path / "final")} <= SAFE_SUFFIXES


def test_configs__have_no_auto_map(saved):
    _, pretraining, backbone = saved
    for folder in (pretraining, backbone):
        config = json.loads((folder / "config.json").read_text())
        assert "auto_map" not in config, f"{folder.name}/config.json asks for remote code"


def test_backbone__loads_without_remote_code(saved):
    model, _, backbone = saved
    loaded = AutoModel.from_pretrained(backbone, trust_remote_code=False, use_safetensors=True)
    assert type(loaded).__module__.startswith("transformers."), type(loaded)
    pixels = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        expected = model.backbone(pixels)
        got = loaded(pixel_values=pixels).pooler_output
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_pretraining_checkpoint__loads_without_remote_code_and_strictly(saved):
    model, pretraining, _ = saved
    for loaded in (
        AutoModelForPreTraining.from_pretrained(pretraining, trust_remote_code=False, use_safetensors=True),
        load_pretraining_model(pretraining),
    ):
        assert type(loaded) is MoCoV3ForPreTraining
        original, reloaded = model.state_dict(), loaded.state_dict()
        assert original.keys() == reloaded.keys()
        assert all(torch.equal(original[key], reloaded[key]) for key in original)


# --------------------------------------------------------------------------------------------
# Tampered checkpoints
# --------------------------------------------------------------------------------------------


def _copy(saved, tmp_path) -> Path:
    target = tmp_path / "checkpoint"
    shutil.copytree(saved[1], target)
    return target


def _edit_weights(folder: Path, edit) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _pickled_only(folder: Path) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(tensors, folder / "pytorch_model.bin")  # the test writes a pickle; the library never does


TAMPERING = {
    "unexpected_tensor": (lambda f: _edit_weights(f, lambda t: t.update({"injected.weight": torch.zeros(3)})), r"unexpected tensors not in the model: injected\.weight.*restore the config\.json saved with model\.safetensors"),
    "missing_tensor": (lambda f: _edit_weights(f, lambda t: t.pop("projector.0.weight")), r"tensors missing from the checkpoint: projector\.0\.weight"),
    "projector_dim_changed": (lambda f: _edit_config(f, projector_dim=24), r"shape does not match config\.json: .*\(16, 32\) in the file vs \(24, 32\) from config\.json"),
    "negative_temperature": (lambda f: _edit_config(f, loss_temperature=-0.2), r"loss_temperature must be positive, got -0\.2"),
    "unknown_backbone": (lambda f: _edit_config(f, backbone="vit_evil_patch16_224"), r"unknown backbone 'vit_evil_patch16_224': not a timm model name"),
    "model_type_other_library": (lambda f: _edit_config(f, model_type="bert"), r"model_type 'bert', which is not an hf_sslviews method.*restore the config"),
    "model_type_unknown": (lambda f: _edit_config(f, model_type="sslviews_evil"), r"model_type 'sslviews_evil', which is not an hf_sslviews method \(expected one of \["),
    "pickled_weights_only": (_pickled_only, r"reads only model\.safetensors \(never pickled \.bin files\)"),
    "truncated_weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]), r"model\.safetensors is not a readable safetensors file \(SafetensorError: .*\): it is damaged or was not written whole"),
    "misspelled_field": (lambda f: _edit_config(f, loss_temprature=0.01), r"keys that MoCoV3Config does not know: 'loss_temprature' \(did you mean 'loss_temperature'\?\)"),
    "temperature_true": (lambda f: _edit_config(f, loss_temperature=True), r"loss_temperature must be a number, got True \(bool\)"),
    "temperature_string": (lambda f: _edit_config(f, loss_temperature="0.2"), r"loss_temperature must be a number, got '0\.2' \(str\)"),
    "momentum_nan": (lambda f: _edit_config(f, momentum_base=float("nan")), r"momentum_base must be a finite number, got nan"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_load_pretraining_model__tampered_checkpoint_fails_clearly(case, saved, tmp_path):
    tamper, message = TAMPERING[case]
    folder = _copy(saved, tmp_path)
    tamper(folder)
    with pytest.raises(ValueError, match=message):
        load_pretraining_model(folder)


def test_load_pretraining_model__not_strict_loads_the_matching_part(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    _edit_weights(folder, lambda t: t.update({"injected.weight": torch.zeros(3)}))
    assert type(load_pretraining_model(folder, strict=False)) is MoCoV3ForPreTraining


def test_run_pretrain__model_name_or_path_with_an_edited_depth_is_refused(saved, tmp_path):
    # Was: the other (deeper, partly random) model trained silently.
    from hf_sslviews.methods import find_preset
    from hf_sslviews.runs.arguments import ModelArguments
    from hf_sslviews.runs.pretrain import build_model

    folder = _copy(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    _edit_config(folder, backbone_kwargs={**config["backbone_kwargs"], "depth": config["backbone_kwargs"].get("depth", 1) + 1})
    recipe, preset = find_preset("mocov3_tiny")
    with pytest.raises(ValueError, match=r"tensors missing from the checkpoint: backbone\.model\.blocks\.2\."):
        build_model(recipe, preset, ModelArguments(method="mocov3", preset="mocov3_tiny", model_name_or_path=str(folder)))
    assert type(build_model(recipe, preset, ModelArguments(method="mocov3", preset="mocov3_tiny", model_name_or_path=str(saved[1])))) is MoCoV3ForPreTraining


def test_from_pretrained__missing_target_network_starts_as_a_copy_of_the_online_one(saved, tmp_path, caplog):
    # Was: uninitialised memory (NaN in some tensors) where the report said "newly initialized".
    folder = _copy(saved, tmp_path)
    _edit_weights(folder, lambda t: [t.pop(key) for key in [k for k in t if k.startswith("target_")]])
    with caplog.at_level("WARNING"):
        loaded, info = AutoModelForPreTraining.from_pretrained(folder, output_loading_info=True)
    state = loaded.state_dict()
    targets = [key for key in state if key.startswith("target_")]
    assert targets and set(targets) <= set(info["missing_keys"])
    for key in targets:
        online = key.replace("target_", "", 1)
        assert torch.equal(state[key], state[online]), key
    assert re.search(r"\d+ target-network tensors were missing .* copies of the online network", caplog.text)
    with pytest.raises(ValueError, match=r"tensors missing from the checkpoint: target_"):
        load_pretraining_model(folder)


def test_from_pretrained__alone_only_reports_unexpected_tensors_and_follows_model_type(saved, tmp_path):
    # Why load_pretraining_model exists: the stock loader accepts both of these.
    folder = _copy(saved, tmp_path)
    _edit_weights(folder, lambda t: t.update({"injected.weight": torch.zeros(3)}))
    _, info = AutoModelForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert info["unexpected_keys"] == {"injected.weight"} or set(info["unexpected_keys"]) == {"injected.weight"}
    folder = _copy(saved, tmp_path / "second")
    _edit_config(folder, model_type="bert")
    assert type(AutoModelForPreTraining.from_pretrained(folder)).__name__ == "BertForPreTraining"


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(loss_temperature=-0.2), ValueError, r"loss_temperature must be positive"),
        (dict(backbone="vit_evil_patch16_224"), ValueError, r"unknown backbone"),
        (dict(projector_dim=24), RuntimeError, r"ignore_mismatched_sizes"),
    ],
    ids=["negative_temperature", "unknown_backbone", "projector_dim_changed"],
)
def test_from_pretrained__rejects_invalid_configs_too(changes, error, message, saved, tmp_path):
    folder = _copy(saved, tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(error, match=message):
        AutoModelForPreTraining.from_pretrained(folder)


def _tampered(folder, header_length=None, rename=None):
    """Rewrite ``folder/model.safetensors`` with a header length field or a key renamed in its header."""
    import struct

    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    length = struct.unpack("<Q", data[:8])[0]
    if rename:
        data[8:8 + length] = data[8:8 + length].replace(*rename)
    if header_length is not None:
        data[:8] = struct.pack("<Q", header_length)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tamper, reason", [
    (dict(rename=(b'"dtype"', b'"dtyqe"')), "missing field `dtype`"),
    (dict(header_length=10**12), "header too large"),
])
def test_a_damaged_safetensors_file_is_named_by_every_loader(tmp_path, tamper, reason):
    # It was a bare SafetensorError from inside from_pretrained, naming no file.
    from hf_sslviews.evaluation.features import load_backbone
    from hf_sslviews.modeling.mocov3 import MoCoV3Config, MoCoV3ForPreTraining
    from hf_sslviews.publish.loading import load_pretraining_model

    from ..helpers import export_tiny_backbone

    backbone = export_tiny_backbone(tmp_path / "backbone")
    _tampered(backbone, **tamper)
    with pytest.raises(ValueError, match=rf"{backbone / 'model.safetensors'} is not a readable safetensors file .*{reason}.*Download it again"):
        load_backbone(str(backbone))
    run = tmp_path / "run"
    MoCoV3ForPreTraining(MoCoV3Config(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1}, image_size=32)).save_pretrained(run)
    _tampered(run, **tamper)
    with pytest.raises(ValueError, match=rf"{run / 'model.safetensors'} is not a readable safetensors file"):
        load_pretraining_model(run)
