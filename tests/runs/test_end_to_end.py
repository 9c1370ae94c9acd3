"""The user's path: run_pretrain.py in a subprocess, then load the export with plain loaders elsewhere."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY = ["--backbone_kwargs", '{"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3}']
COMMON = ["--report_to", "none", "--per_device_train_batch_size", "8", "--max_train_samples", "48", "--dataloader_num_workers", "0", "--logging_steps", "1"]

# Run in a process that never imports hf_sslviews: the export must stand on its own.
LOADERS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, timm, torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
    path = sys.argv[1]
    image = Image.fromarray((np.arange(28 * 28 * 3) % 251).astype("uint8").reshape(28, 28, 3))
    processor = AutoImageProcessor.from_pretrained(path)
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    model = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        auto = model(pixel_values=pixel_values).pooler_output[0]
    classifier = AutoModelForImageClassification.from_pretrained(path, num_labels=10).eval()
    with torch.no_grad():
        logits = classifier(pixel_values=pixel_values).logits
    extractor = pipeline("image-feature-extraction", model=path)
    piped = torch.tensor(extractor(image, pool=True))[0]
    native = timm.create_model("local-dir:" + path, pretrained=True).eval()
    with torch.no_grad():
        timm_features = native(pixel_values)[0]
    assert "hf_sslviews" not in sys.modules
    print(json.dumps({"pixel_values": pixel_values.tolist(), "auto": auto.tolist(), "pipeline": piped.tolist(),
                      "timm": timm_features.tolist(), "logits_shape": list(logits.shape)}))
    """
)


def _run(args, cwd):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_pretrain.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.mark.slow
def test_run_pretrain__export_loads_everywhere_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    args = ["--method", "byol", *TINY, *COMMON, "--output_dir", str(out), "--save_steps", "2", "--knn_max_train_samples", "60", "--knn_max_test_samples", "30"]
    result = _run([*args, "--max_steps", "2"], tmp_path)
    assert "random init (floor)" in result.stdout and "raw pixels (floor)" in result.stdout and "pretrained" in result.stdout  # the kNN table

    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["knn"]["pretrained"]["top1"] <= 1.0
    # The label-free measures of the final model, in the results and the card (no labels needed).
    (final,) = results["embedding_quality"]  # a 2-step run: measured once, at the end
    assert final["step"] == 2 and final["rankme"] >= 1.0 and results["train"]["monitor_seconds"] > 0
    assert f"RankMe\n{final['rankme']:.1f}" in (out / "backbone" / "README.md").read_text()
    # The raw-pixel floor is the kNN of the evaluation transform's pixels, computed here by hand.
    from hf_sslviews.data.sources import load_image_dataset
    from hf_sslviews.evaluation.features import eval_transform_for
    from hf_sslviews.evaluation.knn import knn_accuracy

    transform = eval_transform_for(str(out / "backbone"))
    pixels = {split: load_image_dataset("sample", split=split, max_samples=n) for split, n in (("train", 60), ("test", 30))}
    flat = {split: (torch.stack([transform(image).flatten() for image in data["image"]]), torch.tensor(data["label"])) for split, data in pixels.items()}
    raw = knn_accuracy(*flat["train"], *flat["test"], k=20, temperature=0.07)
    assert results["knn"]["raw_pixels"]["top1"] == pytest.approx(raw["top1"])
    assert (out / "model.safetensors").exists() and (out / "checkpoint-2").is_dir()
    backbone = out / "backbone"
    config = json.loads((backbone / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and "num_classes" not in config["model_args"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]

    loaded = subprocess.run([sys.executable, "-c", LOADERS, str(backbone)], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    features = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert features["logits_shape"] == [1, 10]

    # The same features from the trained model as hf_sslviews holds it.
    from transformers import AutoConfig, AutoModelForPreTraining

    import hf_sslviews  # noqa: F401

    assert AutoConfig.from_pretrained(out).model_type == "sslviews_byol"
    model = AutoModelForPreTraining.from_pretrained(out).eval()
    assert model.target_backbone is not None
    with torch.no_grad():
        ours = model.backbone(torch.tensor(features["pixel_values"]))[0]
    for loader in ("auto", "pipeline", "timm"):
        assert torch.allclose(torch.tensor(features[loader]), ours, atol=1e-4), loader

    # Resume the run from its checkpoint and train one more step.
    _run([*args, "--max_steps", "3", "--resume_from_checkpoint", str(out / "checkpoint-2"), "--knn_eval", "False"], tmp_path)
    state = json.loads((out / "trainer_state.json").read_text()) if (out / "trainer_state.json").exists() else None
    checkpoint_state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text()) if (out / "checkpoint-3").exists() else state
    assert checkpoint_state is None or checkpoint_state["global_step"] == 3
    assert json.loads((out / "train_results.json").read_text())["epoch"] > 0


def test_run_pretrain__help_documents_every_argument():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_pretrain.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--method", "--preset", "--backbone", "--backbone_kwargs", "--dataset_name", "--train_dir", "--image_column_name", "--knn_k", "--steps_per_batch", "--per_device_train_batch_size", "--resume_from_checkpoint", "--push_to_hub"):
        assert flag in result.stdout, flag


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--method", "byol", "--preset", "mocov3_tiny"], "belongs to method 'mocov3'"),
        (["--backbone", "vit_smal_patch16_224"], "unknown backbone"),
        (["--image_column_name", "img"], "image column 'img' not found"),
        (["--config_overrides", "[1]"], "must be a JSON object"),
        (["--config_overrides", '{"loss_temperature": -1}'], "loss_temperature must be positive"),
        (["--config_overrides", '{"projector_dim": 128.5}'], "projector_dim must be a whole number, got 128.5"),
        (["--seed", "-1"], r"--seed must lie in \[0, 2\*\*32 - 1\]"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be at least 1 image"),
        (["--knn_k", "0"], "--knn_k must be at least 1 neighbour"),
        (["--knn_eval", "True", "--knn_k", "50", "--knn_max_train_samples", "10"], "more than the 10 images of the kNN memory"),
        (["--method", "mocov3", "--steps_per_batch", "2"], r"--steps_per_batch 2: MoCoV3ForPreTraining trains on whole views and takes no chunk_index.*Drop it"),
        (["--backbone_kwargs", '{"img_size": 32, "patch_size": 5, "depth": 1}', "--image_size", "32"], r"image_size 32 is not a multiple of the ViT's patch size 5.*\[2, 4, 8, 16, 32\]"),
    ],
)
def test_run_pretrain__bad_arguments_fail_with_a_clear_message_before_training(args, message, tmp_path):
    from hf_sslviews.runs.pretrain import parse_args, run_pretraining

    with pytest.raises(ValueError, match=message):
        run_pretraining(*parse_args(["--knn_eval", "False", *args, "--output_dir", str(tmp_path / "run"), "--max_steps", "1", "--report_to", "none"]))
    assert not list(tmp_path.glob("run/checkpoint-*")) and not (tmp_path / "run" / "model.safetensors").exists()


def test_run_pretrain__a_mistake_ends_in_one_line_and_status_2_not_a_traceback(tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "run_pretrain.py"), "--seed", "-1", "--output_dir", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_SSLVIEWS_TRACEBACK": ""})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "run_pretrain.py: error: --seed must lie in [0, 2**32 - 1]" in result.stderr and "HF_SSLVIEWS_TRACEBACK=1" in result.stderr
    verbose = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_SSLVIEWS_TRACEBACK": "1"})
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_run_pretrain__another_backbone_drops_the_preset_sizes_and_says_so(caplog):
    from hf_sslviews.methods import find_preset
    from hf_sslviews.runs.arguments import ModelArguments, build_config

    recipe, preset = find_preset("byol_tiny")
    with caplog.at_level("WARNING", logger="hf_sslviews"):
        config = build_config(recipe, preset, ModelArguments(method="byol", preset="byol_tiny", backbone="resnet18"))
    assert config.backbone == "resnet18" and config.backbone_kwargs == {} and config.image_size == 224  # not the preset's 32 px
    assert config.projector_hidden_dim == preset.config["projector_hidden_dim"]  # head sizes still come from the preset
    assert "image_size" in caplog.text and "projector_hidden_dim" in caplog.text
    explicit = build_config(recipe, preset, ModelArguments(method="byol", preset="byol_tiny", backbone="resnet18", image_size=64))
    assert explicit.image_size == 64
    same = build_config(recipe, preset, ModelArguments(method="byol", preset="byol_tiny", backbone=preset.config["backbone"]))
    assert same.image_size == 32 and same.backbone_kwargs == preset.config["backbone_kwargs"]  # naming the preset's own backbone changes nothing


def test_run_pretrain__print_config_shows_the_effective_values_and_trains_nothing(tmp_path, capsys):
    from hf_sslviews.runs.pretrain import parse_args, run_pretraining

    out = tmp_path / "never"
    assert run_pretraining(*parse_args(["--preset", "byol_fmnist", "--learning_rate", "3e-3", "--output_dir", str(out), "--print_config"])) == {}
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"]["backbone_kwargs"]["patch_size"] == 7 and printed["config"]["image_size"] == 28
    assert printed["training"]["learning_rate"] == 3e-3 and printed["training"]["max_steps"] == 500  # flag over preset, preset over Trainer default
    assert printed["views"]["scale"] == [0.4, 1.0] or tuple(printed["views"]["scale"]) == (0.4, 1.0)
    assert not out.exists()


def test_parse_args__json_arguments_file_with_null_keeps_the_default(tmp_path):
    from hf_sslviews.runs.pretrain import parse_args

    path = tmp_path / "args.json"
    path.write_text(json.dumps({"preset": "byol_fmnist", "max_train_samples": None, "max_steps": None, "learning_rate": 3e-3, "output_dir": str(tmp_path)}))
    _, data_args, _, training_args, _ = parse_args([str(path)])  # was: "invalid int value: 'None'"
    assert data_args.max_train_samples is None and training_args.max_steps == 500 and training_args.learning_rate == 3e-3
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"must hold one JSON object"):
        parse_args([str(path)])
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"is not valid JSON"):
        parse_args([str(path)])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_temprature": 0.01}, "no field 'loss_temprature'. Did you mean loss_temperature"),
        ({"loss_temperature": "0.2"}, "loss_temperature must be a number"),
        ({"loss_temperature": True}, "loss_temperature must be a number"),
        ({"loss_temperature": float("nan")}, "finite"),
        ({"gather_distributed": "yes"}, "true or false"),
    ],
)
def test_build_config__override_typos_and_wrong_kinds_name_the_field(overrides, message):
    from hf_sslviews.methods import find_preset
    from hf_sslviews.runs.arguments import ModelArguments, build_config

    recipe, preset = find_preset("mocov3_tiny")
    with pytest.raises(ValueError, match=message):
        build_config(recipe, preset, ModelArguments(method="mocov3", preset="mocov3_tiny", config_overrides=json.dumps(overrides)))
    ok = build_config(recipe, preset, ModelArguments(method="mocov3", preset="mocov3_tiny", config_overrides='{"loss_temperature": 0.1}'))
    assert ok.loss_temperature == 0.1


def test_run_pretrain__final_knn_is_capped_by_default_and_says_how_to_change_it(caplog, tmp_path):
    """`--dataset_name fashion_mnist --max_steps 5` once embedded 2 x 70,000 images after training, silently."""
    from hf_sslviews.runs.pretrain import _knn_report, parse_args

    from ..helpers import export_tiny_backbone

    _, data_args, eval_args, _, _ = parse_args(["--method", "byol", "--output_dir", str(tmp_path / "never")])
    assert (eval_args.knn_max_train_samples, eval_args.knn_max_test_samples) == (10000, 2000)
    backbone = export_tiny_backbone(tmp_path / "backbone")
    eval_args.knn_max_train_samples, eval_args.knn_max_test_samples = 40, 20  # the same code path, small
    with caplog.at_level("INFO", logger="hf_sslviews"):
        report = _knn_report(backbone, data_args, eval_args)
    assert "final kNN: 40 training images as memory, 20 test images (--knn_max_train_samples" in caplog.text
    assert set(report) == {"pretrained", "random_init", "raw_pixels"}


def test_run_pretrain__a_labelled_folder_without_test_split_gets_a_held_out_knn(caplog, tmp_path):
    # It skipped the kNN with a raw datasets message ('Unknown split "test"'), and the card said "No evaluation was run".
    import numpy as np
    from PIL import Image

    from hf_sslviews.runs.pretrain import _knn_report, parse_args

    from ..helpers import export_tiny_backbone

    rng = np.random.default_rng(0)
    for label, colour in (("cat", 200), ("dog", 30)):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for index in range(20):
            Image.fromarray(np.clip(rng.normal(colour, 10, (32, 32, 3)), 0, 255).astype(np.uint8)).save(tmp_path / "pets" / label / f"{index}.png")
    _, data_args, eval_args, _, _ = parse_args(["--method", "byol", "--train_dir", str(tmp_path / "pets"), "--output_dir", str(tmp_path / "never")])
    with caplog.at_level("INFO", logger="hf_sslviews"):
        report = _knn_report(export_tiny_backbone(tmp_path / "backbone"), data_args, eval_args)
    assert "classifies a held-out 10% of 'train' (4 images, stratified by class)" in caplog.text
    assert "final kNN: 36 training images as memory, 4 test images" in caplog.text
    assert report["raw_pixels"]["top1"] == 1.0  # bright against dark: the held-out images are labelled right
    (tmp_path / "flat").mkdir()
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "flat" / f"{index}.png")
    _, data_args, eval_args, _, _ = parse_args(["--method", "byol", "--train_dir", str(tmp_path / "flat"), "--output_dir", str(tmp_path / "never")])
    with caplog.at_level("WARNING", logger="hf_sslviews"):
        assert _knn_report(tmp_path / "backbone", data_args, eval_args) is None
    assert "kNN evaluation skipped: label column 'label' not found" in caplog.text and "RankMe" in caplog.text


@pytest.mark.parametrize("method", sorted(__import__("hf_sslviews.methods", fromlist=["RECIPES"]).RECIPES))
def test_run_pretrain__list_options_documents_every_config_field_and_view_argument(method, capsys):
    # --help is TrainingArguments; the method's own options (APS ratio, PatchMix mixing, ...) appeared nowhere.
    from hf_sslviews.methods import get_recipe
    from hf_sslviews.runs.arguments import config_parameters
    from hf_sslviews.runs.pretrain import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(["--list_options", method])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    fields = [name for name in config_parameters(get_recipe(method).config_class)]
    for name in fields:
        assert f"\n  {name} = " in text, name
    # Every config field is documented under its line (from the config's docstring).
    config_lines = text.split("\nviews:")[0].splitlines()[1:]
    undocumented = [line for index, line in enumerate(config_lines) if not line.startswith("      ")
                    and not (index + 1 < len(config_lines) and config_lines[index + 1].startswith("      "))]
    assert not undocumented and "--config_overrides" in text and "--view_kwargs" in text
