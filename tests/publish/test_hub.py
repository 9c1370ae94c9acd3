"""Hub upload: staging exactly what a repo receives, dry runs, cards, and a mocked HfApi (no network)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, RepoUrl, metadata_load

import hf_sslviews  # noqa: F401  (registers the sslviews_* model types)
from hf_sslviews.publish.cards import retarget_card
from hf_sslviews.publish.hub import prepare_upload_folder, push_folder, push_run

from ..helpers import load_script

REPO = Path(__file__).resolve().parents[2]
BACKBONE_ID = "org/aps-vit-small"
PRETRAINING_ID = "org/aps-vit-small-pretraining"
OLD_ID = "byol-vit_tiny_patch16_224-depth1-dim48-patch8-32px"  # the local name run_pretrain.py gives the card without --hub_model_id

# Run in a process that never imports hf_sslviews: the dry-run folder must stand on its own.
LOADERS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, timm, torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
    path = sys.argv[1]
    image = Image.fromarray((np.arange(28 * 28 * 3) % 251).astype("uint8").reshape(28, 28, 3))
    pixel_values = AutoImageProcessor.from_pretrained(path)(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        auto = AutoModel.from_pretrained(path).eval()(pixel_values=pixel_values).pooler_output[0]
        logits = AutoModelForImageClassification.from_pretrained(path, num_labels=10).eval()(pixel_values=pixel_values).logits
        native = timm.create_model("local-dir:" + path, pretrained=True).eval()(pixel_values)[0]
    piped = torch.tensor(pipeline("image-feature-extraction", model=path)(image, pool=True))[0]
    assert "hf_sslviews" not in sys.modules
    print(json.dumps({"pixel_values": pixel_values.tolist(), "auto": auto.tolist(), "pipeline": piped.tolist(),
                      "timm": native.tolist(), "logits_shape": list(logits.shape)}))
    """
)


def _tree(folder: Path) -> set:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (tiny) run_pretrain.py output: full model, checkpoint-1, training_args.json, backbone/ with a card."""
    from hf_sslviews.runs.pretrain import parse_args, run_pretraining

    out = tmp_path_factory.mktemp("hub") / "run"
    run_pretraining(*parse_args([
        "--method", "byol", "--backbone_kwargs", '{"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}',
        "--max_steps", "1", "--per_device_train_batch_size", "8", "--max_train_samples", "16", "--dataloader_num_workers", "0",
        "--knn_max_train_samples", "60", "--knn_max_test_samples", "30", "--report_to", "none", "--output_dir", str(out),
    ]))
    assert (out / "checkpoint-1").is_dir() and (out / "training_args.json").is_file()
    return out


@pytest.fixture(scope="module")
def dry_run(run_dir):
    """``push_to_hub.py --dry_run_dir`` for real: both repos' folders, nothing uploaded."""
    dry = run_dir.parent / "dry"
    pushed = load_script("push_to_hub").main([
        "--output_dir", str(run_dir), "--hub_model_id", BACKBONE_ID, "--pretraining_hub_model_id", PRETRAINING_ID, "--dry_run_dir", str(dry),
    ])
    assert pushed == {"backbone": dry / "backbone", "pretraining": dry / "pretraining"}
    return dry


@pytest.mark.slow
def test_dry_run__backbone_folder_loads_everywhere_with_the_run_features(dry_run, run_dir):
    folder = dry_run / "backbone"
    assert _tree(folder) == {"config.json", "model.safetensors", "README.md"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    loaded = subprocess.run([sys.executable, "-c", LOADERS, str(folder)], capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    features = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert features["logits_shape"] == [1, 10]

    from transformers import AutoModelForPreTraining

    model = AutoModelForPreTraining.from_pretrained(run_dir).eval()
    with torch.no_grad():
        ours = model.backbone(torch.tensor(features["pixel_values"]))[0]
    for loader in ("auto", "pipeline", "timm"):
        assert torch.allclose(torch.tensor(features[loader]), ours, atol=1e-4), loader


def test_dry_run__backbone_card_parses_and_carries_the_measured_knn(dry_run, run_dir):
    readme = dry_run / "backbone" / "README.md"
    metadata = metadata_load(readme)
    assert metadata["library_name"] == "timm" and metadata["pipeline_tag"] == "image-feature-extraction"
    assert {"self-supervised-learning", "byol", "image-feature-extraction"} <= set(metadata["tags"])
    assert metadata["model-index"][0]["name"] == BACKBONE_ID

    card = ModelCard.load(readme)
    knn = json.loads((run_dir / "results.json").read_text())["knn"]["pretrained"]
    measured = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert measured == {"accuracy": round(knn["top1"], 4), "top_5_accuracy": round(knn["top5"], 4)}
    # Re-rendered for the target repo: the snippets name it, the local name is gone.
    assert f'AutoModel.from_pretrained("{BACKBONE_ID}")' in card.text and f"hf-hub:{BACKBONE_ID}" in card.text
    assert OLD_ID not in card.content and card.text.lstrip().startswith("# aps-vit-small\n")
    assert "- Budget: 1 optimizer steps" in card.text  # kept from the run's own card
    assert OLD_ID in (run_dir / "backbone" / "README.md").read_text()  # the run folder is left as it was


def test_dry_run__pretraining_folder_is_the_full_model_without_checkpoints_or_pickles(dry_run, run_dir):
    folder = dry_run / "pretraining"
    assert _tree(folder) == {"config.json", "model.safetensors", "run_args.json", "results.json", "README.md"}

    from transformers import AutoModelForPreTraining

    reloaded = AutoModelForPreTraining.from_pretrained(folder)
    original = AutoModelForPreTraining.from_pretrained(run_dir)
    assert type(reloaded).__name__ == "BYOLForPreTraining" and reloaded.target_backbone is not None
    for (name, a), (_, b) in zip(reloaded.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name

    card = ModelCard.load(folder / "README.md")
    assert card.data.model_name == PRETRAINING_ID and "pretraining-checkpoint" in card.data.tags
    assert "import hf_sslviews" in card.text and f'AutoModelForPreTraining.from_pretrained("{PRETRAINING_ID}")' in card.text
    assert f"https://huggingface.co/{BACKBONE_ID}" in card.text
    knn = json.loads((run_dir / "results.json").read_text())["knn"]["pretrained"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == round(knn["top1"], 4)


def test_push_run__uploads_each_folder_to_its_repo_through_hfapi(run_dir, monkeypatch):
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)  # a temporary folder: record what it holds while it exists
        card = ModelCard.load(folder / "README.md")
        calls.append(("upload_folder", repo_id, {**kwargs, "files": _tree(folder), "card_repo": card.data.model_name, "token": self.token}))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    push_run(run_dir, BACKBONE_ID, push_pretraining=True, token="hf_test", private=True, revision="v1")

    assert [(name, repo) for name, repo, _ in calls] == [
        ("create_repo", BACKBONE_ID), ("create_branch", BACKBONE_ID), ("upload_folder", BACKBONE_ID),
        ("create_repo", PRETRAINING_ID), ("create_branch", PRETRAINING_ID), ("upload_folder", PRETRAINING_ID),
    ]
    assert calls[0][2] == {"private": True, "exist_ok": True, "repo_type": "model"}
    assert calls[1][2]["branch"] == "v1" and calls[1][2]["exist_ok"] is True
    backbone_upload, pretraining_upload = calls[2][2], calls[5][2]
    assert backbone_upload["files"] == {"config.json", "model.safetensors", "README.md"}
    assert backbone_upload["card_repo"] == BACKBONE_ID and backbone_upload["revision"] == "v1" and backbone_upload["token"] == "hf_test"
    assert pretraining_upload["files"] == {"config.json", "model.safetensors", "run_args.json", "results.json", "README.md"}
    assert pretraining_upload["card_repo"] == PRETRAINING_ID


def test_push_folder__retargets_a_card_for_another_repo_in_the_uploaded_copy_only(run_dir, tmp_path, monkeypatch):
    uploaded = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded["card"] = (Path(folder_path) / "README.md").read_text()
        uploaded["files"] = _tree(Path(folder_path))

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    folder = shutil.copytree(run_dir / "backbone", tmp_path / "backbone")
    push_folder(folder, "someone/else")
    assert 'AutoModel.from_pretrained("someone/else")' in uploaded["card"] and OLD_ID not in uploaded["card"]
    assert uploaded["files"] == {"config.json", "model.safetensors", "README.md"}
    assert OLD_ID in (folder / "README.md").read_text()


def test_prepare_upload_folder__backbone_alone_retargets_card_text_and_metadata(run_dir, tmp_path):
    backbone = shutil.copytree(run_dir / "backbone", tmp_path / "exported")  # no full model next to it
    staged = prepare_upload_folder(backbone, "backbone", tmp_path / "staged", repo_id="team/byol-tiny")
    card = ModelCard.load(staged / "README.md")
    assert card.data.model_name == "team/byol-tiny" and card.text.lstrip().startswith("# byol-tiny\n")
    assert 'from_pretrained("team/byol-tiny")' in card.text and OLD_ID not in card.content
    assert card.data.eval_results  # the kNN results survive


def test_retarget_card__never_rewrites_the_id_inside_a_longer_name():
    text = '---\nmodel_name: org/m\n---\n# m\n\nfrom_pretrained("org/m") "hf-hub:org/m" org/m-2 my-org/m\n'
    out = ModelCard(retarget_card(text, "org/n"))
    assert out.data.model_name == "org/n"
    assert out.text == '# n\n\nfrom_pretrained("org/n") "hf-hub:org/n" org/m-2 my-org/m\n'


def test_prepare_upload_folder__missing_backbone_says_to_export_it(run_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(run_dir / "config.json", run / "config.json")
    with pytest.raises(FileNotFoundError, match="scripts/export_backbone.py"):
        prepare_upload_folder(run, "backbone", tmp_path / "staged")


def test_prepare_upload_folder__refuses_pickles(run_dir, tmp_path):
    backbone = shutil.copytree(run_dir / "backbone", tmp_path / "backbone")
    (backbone / "optimizer.pt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="safetensors only"):
        prepare_upload_folder(backbone, "backbone", tmp_path / "staged")
    with pytest.raises(ValueError, match="safetensors only"):
        push_folder(backbone, BACKBONE_ID, dry_run_dir=tmp_path / "dry")

    pickled_run = tmp_path / "pickled_run"  # a full model saved as pytorch_model.bin only
    pickled_run.mkdir()
    shutil.copy(run_dir / "config.json", pickled_run / "config.json")
    (pickled_run / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"no model.safetensors \(only pickled weights: \['pytorch_model.bin'\]\)"):
        prepare_upload_folder(pickled_run, "pretraining", tmp_path / "staged")
    with pytest.raises(ValueError, match="kind must be"):
        prepare_upload_folder(run_dir, "heads", tmp_path / "staged")


def test_prepare_upload_folder__refuses_to_overwrite_the_run(run_dir):
    with pytest.raises(ValueError, match="would replace the run folder"):
        prepare_upload_folder(run_dir, "pretraining", run_dir)


def test_export_backbone_script__checkpoint_and_final_model(run_dir, tmp_path):
    export = load_script("export_backbone").main
    from_checkpoint = export(["--model_name_or_path", str(run_dir / "checkpoint-1"), "--output_dir", str(tmp_path / "ckpt"), "--hub_model_id", BACKBONE_ID])
    assert _tree(from_checkpoint) == {"config.json", "model.safetensors", "README.md"}
    card = ModelCard.load(from_checkpoint / "README.md")
    assert card.data.model_name == BACKBONE_ID and not card.data.eval_results  # the run's kNN measured the final model, not checkpoint-1
    assert "- Budget: 1 optimizer steps (0.50 epochs)" in card.text and "preset `byol_tiny`" in card.text

    final = export(["--model_name_or_path", str(run_dir), "--output_dir", str(tmp_path / "final")])
    card = ModelCard.load(final / "README.md")
    knn = json.loads((run_dir / "results.json").read_text())["knn"]["pretrained"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == round(knn["top1"], 4)
    assert card.data.model_name == OLD_ID  # no --hub_model_id: the default local name
    from safetensors.torch import load_file

    exported, original = load_file(final / "model.safetensors"), load_file(run_dir / "backbone" / "model.safetensors")
    assert exported.keys() == original.keys() and all(torch.equal(exported[k], original[k]) for k in exported)

    with pytest.raises(ValueError, match="would replace the run folder"):
        export(["--model_name_or_path", str(run_dir), "--output_dir", str(run_dir)])


def test_export_backbone_script__never_replaces_a_folder_it_did_not_write(run_dir, tmp_path):
    """The slip `--output_dir runA` (another run's folder) and a folder of notes are refused,
    untouched; --overwrite_output_dir moves them aside, never deletes them; an earlier export is
    replaced without a word."""
    import shutil

    export = load_script("export_backbone").main
    other_run = tmp_path / "runA"
    shutil.copytree(run_dir, other_run)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.txt").write_text("my notes")
    (notes / "model.safetensors").write_bytes(b"another model")
    for folder, listed in ((other_run, "checkpoint-1/"), (notes, "plan.txt")):
        before = _tree(folder)
        with pytest.raises(ValueError, match=rf"{folder} holds files this command did not write \(.*{listed}.*--overwrite_output_dir"):
            export(["--model_name_or_path", str(run_dir), "--output_dir", str(folder)])
        assert _tree(folder) == before
    assert (notes / "plan.txt").read_text() == "my notes"

    exported = export(["--model_name_or_path", str(run_dir), "--output_dir", str(notes), "--overwrite_output_dir", "True"])
    assert _tree(exported) == {"config.json", "model.safetensors", "README.md"}
    (aside,) = tmp_path.glob("notes.replaced-*")
    assert (aside / "plan.txt").read_text() == "my notes" and (aside / "model.safetensors").read_bytes() == b"another model"
    # Its own earlier export is replaced: no flag needed.
    (exported / "README.md").write_text("an older card")
    again = export(["--model_name_or_path", str(run_dir), "--output_dir", str(notes)])
    assert "an older card" not in (again / "README.md").read_text() and len(list(tmp_path.glob("notes.replaced-*"))) == 1


def test_run_pretrain__push_to_hub_pushes_the_backbone_not_the_output_dir(tmp_path, monkeypatch):
    from hf_sslviews.runs.pretrain import parse_args, run_pretraining

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: (calls.append(("create_repo", repo_id)), RepoUrl(f"https://huggingface.co/{repo_id}"))[1])
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, *, repo_id, folder_path, **kwargs: calls.append(("upload_folder", repo_id, _tree(Path(folder_path)))))
    run_pretraining(*parse_args([
        "--method", "byol", "--backbone_kwargs", '{"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}',
        "--max_steps", "1", "--save_steps", "1", "--per_device_train_batch_size", "8", "--max_train_samples", "8", "--dataloader_num_workers", "0",
        "--knn_eval", "False", "--report_to", "none", "--output_dir", str(tmp_path / "run"),
        "--push_to_hub", "--hub_model_id", "org/x", "--push_pretraining_checkpoint",
    ]))
    # Only hf_sslviews.publish.hub's two pushes: the Trainer's own push of the whole output_dir is off.
    assert calls == [
        ("create_repo", "org/x"), ("upload_folder", "org/x", {"config.json", "model.safetensors", "README.md"}),
        ("create_repo", "org/x-pretraining"),
        ("upload_folder", "org/x-pretraining", {"config.json", "model.safetensors", "run_args.json", "results.json", "README.md"}),
    ]


def test_cards__model_index_types_the_dataset_by_id_and_names_it_in_words(dry_run, run_dir):
    for folder in (dry_run / "backbone", dry_run / "pretraining"):
        metadata = metadata_load(folder / "README.md")
        dataset = metadata["model-index"][0]["results"][0]["dataset"]
        assert dataset["type"] == "fashion_mnist" and "embedded" in dataset["name"]  # the run used the embedded sample
        assert metadata["datasets"] == ["fashion_mnist"]
    text = (dry_run / "backbone" / "README.md").read_text()
    assert 'pool=True' in text and "every token" in text


def test_cards__image_folder_has_no_dataset_id():
    from hf_sslviews.publish.cards import dataset_reference, knn_eval_results

    assert dataset_reference(None, "/data/my_photos") == (None, "image folder my_photos")
    assert dataset_reference("uoft-cs/cifar10") == ("uoft-cs/cifar10", "uoft-cs/cifar10")
    (top1, _) = knn_eval_results({"pretrained": {"top1": 0.5, "top5": 0.9}}, 20, None, "image folder my_photos")
    assert top1.dataset_type == "imagefolder" and top1.dataset_name == "image folder my_photos" and top1.metric_value == 0.5


def test_cards__method_text_is_rendered_from_the_run_config():
    from hf_sslviews.modeling.aps import APSConfig
    from hf_sslviews.publish.cards import method_section

    config = APSConfig(backbone="vit_tiny_patch16_224", backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1}, image_size=32,
                       projector_hidden_dim=96, projector_dim=24, predictor_hidden_dim=80)
    text = method_section("aps", config)
    assert "Linear(D, 96, no bias)" in text and "Linear(96, 24)" in text and "`24 -> 80 -> 80 -> 24`" in text
    assert "{{" not in text


def test_export__folders_get_the_mode_mkdir_would_give(run_dir):
    mask = os.umask(0)
    os.umask(mask)
    assert ((run_dir / "backbone").stat().st_mode & 0o777) == (0o777 & ~mask)


def test_run_pretrain__dry_run_never_says_pushed(tmp_path, caplog, monkeypatch):
    from hf_sslviews.runs.pretrain import parse_args, run_pretraining

    monkeypatch.setattr(HfApi, "upload_folder", lambda *args, **kwargs: pytest.fail("a dry run uploaded"))
    with caplog.at_level("INFO", logger="hf_sslviews"):
        run_pretraining(*parse_args([
            "--method", "byol", "--backbone_kwargs", '{"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}',
            "--max_steps", "1", "--per_device_train_batch_size", "8", "--max_train_samples", "8", "--dataloader_num_workers", "0",
            "--knn_eval", "False", "--report_to", "none", "--output_dir", str(tmp_path / "run"),
            "--push_to_hub", "--hub_model_id", "org/x", "--hub_dry_run_dir", str(tmp_path / "dry"),
        ]))
    assert "dry run, nothing uploaded" in caplog.text and "pushed:" not in caplog.text
    assert (tmp_path / "dry" / "backbone" / "model.safetensors").is_file()


def test_cards__one_citation_section_and_a_headline_that_names_the_real_architecture(run_dir):
    # The method's card text brought its own "## Citation", so the BibTeX came twice; and the
    # headline named vit_tiny_patch16_224 for a 1-block, 48-d, 8 px patch network at 32 px.
    card = (run_dir / "backbone" / "README.md").read_text()
    assert card.count("## Citation") == 1 and card.count("@article{") + card.count("@inproceedings{") == 1
    headline = next(line for line in card.splitlines() if line.startswith("A `"))
    assert "`vit_tiny_patch16_224` (changed to depth=1, embed_dim=48, img_size=32, num_heads=3, patch_size=8; 32 px input; 48-d features)" in headline
    assert next(line for line in card.splitlines() if line.startswith("# ")) == f"# {OLD_ID}"  # the default name carries the changed geometry


def test_cards__a_backbone_as_timm_names_it_keeps_its_plain_name():
    from hf_sslviews.modeling.byol import BYOLConfig
    from hf_sslviews.publish.cards import default_repo_id, describe_architecture

    config = BYOLConfig(backbone="resnet18", image_size=224)
    assert default_repo_id(config) == "byol-resnet18" and describe_architecture(config, 512) == "`resnet18` (224 px input; 512-d features)"
