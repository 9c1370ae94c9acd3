"""Tests of hf_sslviews.evaluation: weighted kNN, feature extraction, the shipped metric, the script."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hf_sslviews.data.sources import load_image_dataset, prepare_for_views
from hf_sslviews.evaluation.features import embed, eval_transform_for, extract_features, load_backbone
from hf_sslviews.evaluation.knn import knn_accuracy, weighted_knn_predict
from hf_sslviews.evaluation.metrics import available_metrics, load_metric

from ..helpers import load_script

REPO = Path(__file__).resolve().parents[2]
MEAN, STD = (0.25, 0.5, 0.75), (0.5, 0.25, 0.125)


def reference_knn_scores(train, train_labels, test, num_classes, k, temperature):
    """Slow, loop-by-loop DINO weighted kNN, written from the paper's description."""
    scores = torch.zeros(len(test), num_classes, dtype=torch.float64)
    train = train.double()
    for i, query in enumerate(test.double()):
        sims = [float(query @ x / (query.norm() * x.norm())) for x in train]
        order = sorted(range(len(train)), key=lambda j: -sims[j])[:k]
        for j in order:
            scores[i, int(train_labels[j])] += math.exp(sims[j] / temperature)
    return scores


# ---------------------------------------------------------------------------- weighted kNN


@pytest.mark.parametrize("k, temperature", [(1, 0.07), (5, 0.07), (7, 0.5), (40, 1.0)])
def test_weighted_knn_predict__matches_slow_reference(k, temperature):
    generator = torch.Generator().manual_seed(k)
    train = torch.randn(40, 6, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    test = torch.randn(9, 6, generator=generator)
    scores = weighted_knn_predict(train, labels, test, num_classes=4, k=k, temperature=temperature, batch_size=4)
    expected = reference_knn_scores(train, labels, test, 4, k, temperature)
    assert scores.shape == (9, 4) and scores.dtype == torch.float32
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-6)


def test_weighted_knn_predict__hand_computed_three_neighbour_vote():
    # Cosine similarities of the query (1, 0) to the bank: 1 (class 0), 0 (class 1),
    # 1/sqrt(2) (class 1), -1 (class 2). The 3 nearest: class 0 with 1, class 1 with 1/sqrt(2) and 0.
    train = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[5.0, 0.0]])
    sharp = weighted_knn_predict(train, labels, query, num_classes=3, k=3, temperature=0.5)
    torch.testing.assert_close(sharp, torch.tensor([[math.exp(2.0), math.exp(math.sqrt(2)) + 1.0, 0.0]]))
    assert sharp.argmax().item() == 0  # e^2 = 7.39 > e^1.41 + 1 = 5.11
    # A softer vote lets the two class-1 neighbours outvote the nearest one: e = 2.72 < e^0.71 + 1 = 3.03.
    soft = weighted_knn_predict(train, labels, query, num_classes=3, k=3, temperature=1.0)
    torch.testing.assert_close(soft, torch.tensor([[math.e, math.exp(1 / math.sqrt(2)) + 1.0, 0.0]]))
    assert soft.argmax().item() == 1


def test_knn_accuracy__well_separated_clusters_score_100_percent():
    generator = torch.Generator().manual_seed(0)
    centers = torch.eye(10, 16) * 10.0

    def cluster_points(n_per_class):
        labels = torch.arange(10).repeat_interleave(n_per_class)
        return centers[labels] + 0.1 * torch.randn(len(labels), 16, generator=generator), labels

    train, train_labels = cluster_points(30)
    test, test_labels = cluster_points(5)
    result = knn_accuracy(train, train_labels, test, test_labels, k=20)
    assert result == {"top1": 1.0, "top5": 1.0}
    # Shuffling the bank's labels destroys the signal: the metric can tell.
    shuffled = train_labels[torch.randperm(len(train_labels), generator=generator)]
    assert knn_accuracy(train, shuffled, test, test_labels, k=1)["top1"] < 0.5


def test_knn_accuracy__known_top1_and_top5():
    # One-hot features: every query's only non-orthogonal neighbour is the bank point it copies.
    train = torch.eye(6)
    train_labels = torch.tensor([0, 1, 2, 3, 4, 5])
    test = torch.eye(6)[[0, 1, 2, 3]]
    test_labels = torch.tensor([0, 1, 5, 5])  # 2 of 4 right at top-1
    result = knn_accuracy(train, train_labels, test, test_labels, num_classes=6, k=1)
    assert result["top1"] == pytest.approx(0.5)
    # With k=6 every class gets a vote (exp(1/T) for the copy, exp(0)=1 for the 5 others): the
    # copy wins, then ties broken by topk; class 5 is in the top-5 unless it is the one left out.
    scores = weighted_knn_predict(train, train_labels, test, 6, k=6)
    top5 = scores.topk(5, dim=1).indices
    expected_top5 = np.mean([int(label) in row.tolist() for row, label in zip(top5, test_labels)])
    assert knn_accuracy(train, train_labels, test, test_labels, num_classes=6, k=6)["top5"] == pytest.approx(expected_top5)


def test_weighted_knn_predict__batch_size_does_not_change_scores():
    generator = torch.Generator().manual_seed(3)
    train, labels, test = torch.randn(50, 8, generator=generator), torch.randint(0, 5, (50,), generator=generator), torch.randn(23, 8, generator=generator)
    one_block = weighted_knn_predict(train, labels, test, 5, k=10, batch_size=1000)
    torch.testing.assert_close(weighted_knn_predict(train, labels, test, 5, k=10, batch_size=4), one_block)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=11), "k=11 must be between 1 and the number of training features \\(10\\)"),
        (dict(k=0), "k=0"),
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(num_classes=2), "train labels must lie in \\[0, 2\\)"),
    ],
)
def test_weighted_knn_predict__rejects_bad_arguments(kwargs, message):
    arguments = dict(train_features=torch.randn(10, 4), train_labels=torch.arange(10) % 3, test_features=torch.randn(2, 4), num_classes=3, k=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        weighted_knn_predict(**arguments)


# ---------------------------------------------------------------------------- metric module


def test_accuracy_metric__loads_by_path_and_computes():
    assert "accuracy" in available_metrics()
    accuracy = load_metric("accuracy")
    assert accuracy.compute(predictions=[0, 1, 2, 0], references=[0, 1, 1, 0]) == {"accuracy": 0.75}
    assert accuracy.compute(predictions=[3, 3, 3], references=[3, 1, 3], normalize=False) == {"accuracy": 2}
    assert accuracy.compute(predictions=[1, 0], references=[1, 1], sample_weight=[3.0, 1.0]) == {"accuracy": 0.75}
    with pytest.raises(ValueError, match="no metric 'f1'"):
        load_metric("f1")


def test_accuracy_metric__offline_in_a_fresh_process():
    code = (
        "import evaluate, pathlib, hf_sslviews.evaluation.metrics as m\n"
        "path = pathlib.Path(m.__file__).parent / 'accuracy'\n"
        "print(evaluate.load(str(path)).compute(predictions=[1, 2, 3, 4, 5], references=[1, 2, 3, 0, 0])['accuracy'])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(0.6)


# ---------------------------------------------------------------------------- features


class ChannelMeans(torch.nn.Module):
    """A 'backbone' whose features are the per-channel means of its input: [B, 3]."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, pixel_values):
        assert not self.training and not torch.is_grad_enabled()
        return pixel_values.mean(dim=(2, 3)) * self.scale


def _solid_color_dataset():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)]
    return datasets.Dataset.from_dict(
        {"img": [Image.new("RGB", (5, 7), c) for c in colors] + [Image.new("L", (6, 6), 128)], "y": [0, 1, 2, 3, 4, 5]},
        features=datasets.Features({"img": datasets.Image(), "y": datasets.Value("int64")}),
    )


def test_extract_features__plain_module_in_eval_mode_keeps_order():
    transform = eval_transform_for({"input_size": (3, 4, 4), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "crop_pct": 1.0, "interpolation": "bilinear"})
    model = ChannelMeans().train()
    features, labels = extract_features(model, _solid_color_dataset(), "img", "y", batch_size=4, transform=transform, device="cpu")
    assert features.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0], [128 / 255] * 3], dtype=torch.float32)
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)


def test_extract_features__skips_undecodable_images(caplog):
    dataset = _solid_color_dataset()
    dataset = prepare_for_views(dataset, "img")
    broken = datasets.Dataset.from_dict({"img": [{"bytes": b"garbage", "path": None}], "y": [9], "__sample_index__": [5]}, features=dataset.features)
    dataset = datasets.concatenate_datasets([dataset, broken])
    transform = eval_transform_for({"input_size": (3, 4, 4), "mean": (0.0,) * 3, "std": (1.0,) * 3, "crop_pct": 1.0})
    features, labels = extract_features(lambda x: x.mean(dim=(2, 3)), dataset, "img", "y", batch_size=3, transform=transform)
    assert features.shape == (6, 3) and 9 not in labels.tolist()
    assert "skipped 1 undecodable" in caplog.text


def test_extract_features__missing_column_and_no_transform():
    with pytest.raises(ValueError, match=r"column 'label' not found.*\['img', 'y'\].*--label_column_name"):
        extract_features(lambda x: x, _solid_color_dataset(), "img", "label", transform=lambda image: image)
    with pytest.raises(ValueError, match="needs a transform"):
        extract_features(lambda x: x, _solid_color_dataset(), "img", "y")


def test_embed__rejects_token_sequences():
    with pytest.raises(ValueError, match=r"returned \(2, 5, 8\), expected pooled features"):
        embed(lambda x: torch.zeros(2, 5, 8), torch.zeros(2, 3, 4, 4))


# ---------------------------------------------------------------------------- tiny exported ViT


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory):
    """A 2-block ViT at 32 px in timm's Hub format, loadable by transformers as TimmWrapperModel."""
    from timm.models._hub import save_for_hf

    # Not seed 0: --random_init seeds 0, and an untrained fixture would then equal the floor.
    torch.manual_seed(1234)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, patch_size=4, depth=2, dynamic_img_size=True)
    directory = tmp_path_factory.mktemp("tiny_vit")
    save_for_hf(model, str(directory), safe_serialization=True,
                data_config=dict(input_size=(3, 32, 32), mean=MEAN, std=STD, interpolation="bicubic", crop_pct=1.0))
    config = json.loads((directory / "config.json").read_text())
    # num_classes in model_args breaks TimmWrapperModel (it passes num_classes=0 itself); the tag
    # names weights this model does not have.
    config["model_args"].pop("num_classes", None)
    config["pretrained_cfg"].pop("tag", None)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory, model.eval()


def test_eval_transform_for__reads_the_exported_pretrained_cfg(tiny_vit_dir):
    from transformers import AutoModel

    directory, _ = tiny_vit_dir
    image = Image.new("RGB", (28, 28), (255, 128, 0))
    expected = torch.tensor([(1.0 - MEAN[0]) / STD[0], (128 / 255 - MEAN[1]) / STD[1], (0.0 - MEAN[2]) / STD[2]])
    for source in (str(directory), AutoModel.from_pretrained(directory), json.loads((directory / "config.json").read_text())):
        pixels = eval_transform_for(source)(image)
        assert pixels.shape == (3, 32, 32)
        torch.testing.assert_close(pixels[:, 16, 16], expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no config.json"):
        eval_transform_for(str(directory / "nowhere"))


def test_extract_features__timm_wrapper_equals_plain_timm(tiny_vit_dir):
    from transformers import AutoModel

    directory, timm_model = tiny_vit_dir
    dataset = load_image_dataset("sample", split="test", max_samples=6)
    transform = eval_transform_for(str(directory))
    wrapped, labels = extract_features(AutoModel.from_pretrained(directory), dataset, batch_size=4, transform=transform)
    plain, plain_labels = extract_features(timm_model, dataset, batch_size=6, transform=transform)
    assert wrapped.shape == (6, 192) and labels.tolist() == dataset["label"] == plain_labels.tolist()
    torch.testing.assert_close(wrapped, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_run_knn_eval__end_to_end_subprocess(tiny_vit_dir, tmp_path):
    from transformers import AutoModel

    directory, _ = tiny_vit_dir
    output = tmp_path / "results" / "knn.json"
    command = [sys.executable, str(REPO / "scripts" / "run_knn_eval.py"), "--model_name_or_path", str(directory),
               "--k", "3", "10", "--max_train_samples", "120", "--max_test_samples", "40", "--batch_size", "64",
               "--output_file", str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train (120) -> test (40)" in result.stdout and "k=10: top-1" in result.stdout
    saved = json.loads(output.read_text())
    assert saved["arguments"]["k"] == [3, 10] and (saved["num_train"], saved["num_test"], saved["feature_dim"]) == (120, 40, 192)
    # The script's numbers equal the library's, computed here in-process.
    transform = eval_transform_for(str(directory))
    model = AutoModel.from_pretrained(directory)
    train = extract_features(model, load_image_dataset("sample", max_samples=120), transform=transform)
    test = extract_features(model, load_image_dataset("sample", split="test", max_samples=40), transform=transform)
    for k in (3, 10):
        expected = knn_accuracy(*train, *test, num_classes=10, k=k)
        assert saved["knn"][f"k={k}"]["top1"] == pytest.approx(expected["top1"], abs=1e-6)
        assert saved["knn"][f"k={k}"]["top5"] == pytest.approx(expected["top5"], abs=1e-6)


def test_load_backbone__random_init_is_timm_init_of_the_same_architecture(tiny_vit_dir):
    directory, timm_model = tiny_vit_dir
    trained = load_backbone(str(directory))
    floor = load_backbone(str(directory), random_init=True, seed=7)
    assert type(floor) is type(trained) and not floor.training
    assert floor.timm_model.state_dict().keys() == trained.timm_model.state_dict().keys()
    # timm's own init (what pretraining starts from), not transformers' generic one.
    torch.manual_seed(7)
    fresh = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, patch_size=4, depth=2, dynamic_img_size=True)
    torch.testing.assert_close(floor.timm_model.patch_embed.proj.weight, fresh.patch_embed.proj.weight)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(trained.eval()(x).pooler_output, timm_model(x))
        assert not torch.allclose(floor.eval()(x).pooler_output, timm_model(x), atol=1e-3)
    assert (floor.timm_model.pos_embed - trained.timm_model.pos_embed).abs().max() > 1e-3


def test_run_knn_eval__main_in_process_with_random_init(tiny_vit_dir, tmp_path, capsys):
    directory, _ = tiny_vit_dir
    script = load_script("run_knn_eval")
    output = tmp_path / "floor.json"
    results = script.main(["--model_name_or_path", str(directory), "--random_init", "--k", "5",
                           "--max_train_samples", "50", "--max_test_samples", "20", "--output_file", str(output)])
    assert "(random init)" in capsys.readouterr().out
    saved = json.loads(output.read_text())
    assert saved["arguments"]["random_init"] is True
    assert saved["knn"] == results["knn"] and 0.0 <= results["knn"]["k=5"]["top1"] <= results["knn"]["k=5"]["top5"] <= 1.0


def _image_folder(root, per_class=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_run_knn_eval__image_folder_without_test_split(tiny_vit_dir, tmp_path, capsys):
    directory, _ = tiny_vit_dir
    script = load_script("run_knn_eval")
    folder = _image_folder(tmp_path / "imgs")
    base = ["--model_name_or_path", str(directory), "--train_dir", str(folder), "--k", "3"]
    with pytest.raises(ValueError, match="no 'test' split .* --train_val_split"):
        script.main(base)
    results = script.main([*base, "--train_val_split", "0.5", "--max_eval_samples", "4"])
    assert results["num_train"] == 6 and results["num_test"] == 4  # 12 images: 6 / 6, the held-out half capped at 4
    with pytest.raises(ValueError, match="disagree"):
        script.main([*base, "--train_val_split", "0.5", "--max_eval_samples", "4", "--max_test_samples", "3"])


def test_extract_features__progress_bar_names_the_split(capsys):
    data = datasets.Dataset.from_dict({"image": [np.zeros((8, 8, 3), dtype=np.uint8)] * 5, "label": [0] * 5},
                                      features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    features, labels = extract_features(lambda x: x.flatten(1), data, batch_size=2, transform=lambda image: torch.zeros(3, 4, 4), progress="train features")
    assert features.shape == (5, 48)
    assert "train features" in capsys.readouterr().err


@pytest.mark.parametrize("exported", [True, False])
def test_load_backbone__a_pretraining_run_folder_points_at_its_backbone(tmp_path, exported):
    # Was: transformers' "Unrecognized configuration class" with no hint.
    from hf_sslviews.evaluation.features import load_backbone

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model_type": "sslviews_mocov3"}))
    if exported:
        (run / "backbone").mkdir()
        (run / "backbone" / "config.json").write_text("{}")
        message = rf"holds a whole pretraining model \(sslviews_mocov3\), not an exported backbone; pass {re.escape(str(run / 'backbone'))}"
    else:
        message = r"export its backbone first: python scripts/export_backbone.py --model_name_or_path"
    for random_init in (False, True):
        with pytest.raises(ValueError, match=message):
            load_backbone(str(run), random_init=random_init)


@pytest.mark.parametrize("args, message", [
    (["--batch_size", "0"], "--batch_size must be at least 1 image, got 0"),
    (["--k", "0"], r"--k needs neighbour counts >= 1, got \[0\]"),
    (["--temperature", "0"], "--temperature must be positive"),
    (["--max_train_samples", "0"], "--max_train_samples must be a positive number"),
])
def test_run_knn_eval__bad_arguments_are_refused_before_loading_anything(args, message):
    knn = load_script("run_knn_eval")
    with pytest.raises(ValueError, match=message):
        knn.main(["--model_name_or_path", "/nonexistent/backbone", *args])


def test_run_knn_eval__output_file_never_replaces_a_file_it_did_not_write(tmp_path):
    from hf_sslviews.atomic import ForeignFolderError

    from ..helpers import export_tiny_backbone

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    knn = load_script("run_knn_eval")
    with pytest.raises(ForeignFolderError, match=r"--output_file .*notes.txt exists and was not written by this library"):
        knn.main(["--model_name_or_path", "/nonexistent/backbone", "--output_file", str(notes)])  # refused before loading anything
    assert notes.read_text() == "my notes"
    backbone = export_tiny_backbone(tmp_path / "backbone")
    flags = ["--model_name_or_path", str(backbone), "--max_train_samples", "20", "--max_test_samples", "10", "--k", "3", "--output_file", str(tmp_path / "knn.json")]
    knn.main(flags)
    knn.main(flags)  # its own earlier result is replaced
    assert json.loads((tmp_path / "knn.json").read_text())["arguments"]["k"] == [3]
