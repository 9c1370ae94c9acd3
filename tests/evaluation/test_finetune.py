"""Fine-tuning pieces (labels, transforms, Mixup collator, soft-target loss, metrics) and the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import EvalPrediction

from hf_sslviews.data.sources import load_image_dataset
from hf_sslviews.evaluation.features import eval_transform_for
from hf_sslviews.evaluation.finetune import (
    ClassificationCollator,
    ClassificationTransform,
    build_mixup,
    class_labels,
    compute_classification_metrics,
    soft_target_cross_entropy,
    train_transform_for,
)

from ..helpers import export_tiny_backbone, load_script, random_image_dataset

REPO = Path(__file__).resolve().parents[2]
CFG = {"input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0, "interpolation": "bicubic"}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_class_labels__from_classlabel_and_from_plain_integers():
    num_labels, id2label, label2id = class_labels(load_image_dataset("sample", max_samples=4))
    assert num_labels == 10 and id2label[0] == "T-shirt/top" and label2id["Ankle boot"] == 9
    plain = datasets.Dataset.from_dict({"y": [0, 3, 1]})
    assert class_labels(plain, "y") == (4, {0: "0", 1: "1", 2: "2", 3: "3"}, {"0": 0, "1": 1, "2": 2, "3": 3})
    with pytest.raises(ValueError, match="column 'label' not found.*--label_column_name"):
        class_labels(plain, "label")


def test_transforms__training_marks_examples_and_undecodable_images_are_none():
    dataset = random_image_dataset(3, size=20, bad=1)
    train = ClassificationTransform(train_transform_for(CFG, randaugment=True, re_prob=0.5), training=True)(dataset[:4])
    evaluation = ClassificationTransform(eval_transform_for(CFG))(dataset[:4])
    assert train["labels"] == [0, 1, 0, 1] and train["augmented"] == [True] * 4 and "augmented" not in evaluation
    assert [tuple(x.shape) for x in train["pixel_values"][:3]] == [(3, 16, 16)] * 3 and train["pixel_values"][3] is None
    assert evaluation["pixel_values"][3] is None and evaluation["pixel_values"][0].dtype == torch.float32
    with pytest.raises(ValueError, match="column 'img' not found.*--image_column_name"):
        ClassificationTransform(eval_transform_for(CFG), image_column="img")(dataset[:1])


def _examples(n, augmented, num_classes=4):
    return [{"pixel_values": torch.full((3, 4, 4), float(i)), "labels": i % num_classes, **({"augmented": True} if augmented else {})} for i in range(n)]


def test_collator__mixes_training_batches_only():
    np.random.seed(0)
    collator = ClassificationCollator(4, build_mixup(4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1))
    train = collator(_examples(5, augmented=True))  # odd: the last example is dropped for pairing
    assert train["pixel_values"].shape == (4, 3, 4, 4) and train["labels"].shape == (4, 4)
    torch.testing.assert_close(train["labels"].sum(dim=1), torch.ones(4))
    # Mixup pairs i with B-1-i with one lambda: pixels (constant i) and targets mix alike.
    lam = 1 - train["pixel_values"][0, 0, 0, 0].item() / 3  # example 0 (value 0) mixed with example 3 (value 3)
    smooth = 0.1 / 4
    assert train["labels"][0, 0].item() == pytest.approx(lam * (1 - 0.1 + smooth) + (1 - lam) * smooth, abs=1e-5)
    evaluation = collator(_examples(5, augmented=False))
    assert evaluation["labels"].tolist() == [0, 1, 2, 3, 0] and evaluation["labels"].dtype == torch.long
    assert torch.equal(evaluation["pixel_values"][:, 0, 0, 0], torch.arange(5.0))


def test_collator__label_smoothing_without_mixup_and_skipped_images():
    collator = ClassificationCollator(4, label_smoothing=0.2)
    examples = _examples(3, augmented=True)
    examples[1]["pixel_values"] = None
    batch = collator(examples)
    torch.testing.assert_close(batch["labels"], torch.tensor([[0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.85, 0.05]]))
    assert collator.num_skipped == 1
    with pytest.raises(ValueError, match="none of the 1 images of a batch could be decoded"):
        collator([{"pixel_values": None, "labels": 0}])


def test_soft_target_cross_entropy__hard_soft_and_gradient_accumulation_normalisation():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=generator)
    labels = torch.tensor([0, 3, 1, 1, 2, 0])
    outputs = {"logits": logits}
    torch.testing.assert_close(soft_target_cross_entropy(outputs, labels), F.cross_entropy(logits, labels))
    one_hot = F.one_hot(labels, 4).float()
    torch.testing.assert_close(soft_target_cross_entropy(outputs, one_hot), F.cross_entropy(logits, labels))
    # The Trainer counts labels != -100 over 2 accumulated micro-batches of 6: 12 for integer
    # labels, 12 * C = 48 for soft targets. Either way this micro-batch contributes half its mean.
    half = F.cross_entropy(logits, labels) / 2
    torch.testing.assert_close(soft_target_cross_entropy(outputs, labels, num_items_in_batch=torch.tensor(12)), half)
    torch.testing.assert_close(soft_target_cross_entropy(outputs, one_hot, num_items_in_batch=torch.tensor(48)), half)
    soft = torch.softmax(torch.randn(6, 4, generator=generator), dim=1)
    expected = -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(soft_target_cross_entropy(outputs, soft), expected)


def test_compute_classification_metrics__top1_and_top5():
    logits = np.eye(6, dtype=np.float32)[[0, 1, 2, 3]] * 10 + np.arange(6, dtype=np.float32) * 0.1
    metrics = compute_classification_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 5, 0])))
    assert metrics == {"accuracy": 0.5, "top5": 0.75}


# ---------------------------------------------------------------------------- the script


@pytest.fixture(scope="module")
def tiny_backbone_dir(tmp_path_factory):
    return export_tiny_backbone(tmp_path_factory.mktemp("backbone") / "backbone")


def _flags(backbone_dir, output_dir):
    return ["--model_name_or_path", str(backbone_dir), "--output_dir", str(output_dir), "--max_train_samples", "16", "--max_test_samples", "12",
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "True", "--disable_tqdm", "True",
            "--dataloader_num_workers", "0"]


def test_run_finetune__two_steps_with_mixup_cutmix_randaugment_in_process(tiny_backbone_dir, tmp_path, capsys):
    script = load_script("run_finetune")
    output = tmp_path / "finetune.json"
    metrics = script.main([*_flags(tiny_backbone_dir, tmp_path / "out"), "--gradient_accumulation_steps", "2", "--randaugment",
                           "--re_prob", "0.25", "--mixup", "0.8", "--cutmix", "1.0", "--label_smoothing", "0.1", "--output_file", str(output)])
    assert 0.0 <= metrics["eval_accuracy"] <= metrics["eval_top5"] <= 1.0 and metrics["eval_loss"] > 0
    assert "test top-1" in capsys.readouterr().out
    saved = json.loads(output.read_text())
    assert saved["eval"]["eval_accuracy"] == metrics["eval_accuracy"] and saved["arguments"]["augmentation"]["mixup"] == 0.8
    # The fine-tuned model is a plain transformers classifier with the dataset's label names.
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out")
    assert model.config.num_labels == 10 and model.config.id2label[9] == "Ankle boot"
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).logits.shape == (2, 10)


@pytest.mark.slow
def test_run_finetune__end_to_end_subprocess(tiny_backbone_dir, tmp_path):
    output = tmp_path / "finetune.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "scripts" / "run_finetune.py"), *_flags(tiny_backbone_dir, tmp_path / "out"),
               "--label_smoothing", "0.1", "--output_file", str(output)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test top-1" in result.stdout
    saved = json.loads(output.read_text())
    assert 0.0 <= saved["eval"]["eval_accuracy"] <= 1.0 and saved["train"]["train_loss"] > 0


def test_train_transform__randaugment_posterize_at_full_magnitude_runs_with_the_installed_pillow(tmp_path):
    """timm's PosterizeIncreasing asks for 0 bits near magnitude 10; Pillow >= 10 raises on that."""
    import random

    from PIL import Image
    from timm.data import auto_augment

    from hf_sslviews.evaluation.finetune import train_transform_for

    transform = train_transform_for({"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bicubic", "crop_pct": 1.0}, randaugment=True)
    posterize = [op for t in transform.transforms for op in getattr(t, "ops", ()) if op.name == "PosterizeIncreasing"]
    assert posterize, "the DeiT RandAugment policy has PosterizeIncreasing"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    op = posterize[0]
    bits = auto_augment.LEVEL_TO_ARG[op.name](10.0, op.hparams)[0]
    assert bits == 0  # what timm asks for at full magnitude...
    with pytest.raises(ValueError, match="bits"):
        auto_augment.posterize(image, bits)  # ...and what Pillow refuses
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10.0, 0.0
    out = np.asarray(op(image))
    assert np.all(out % 128 == 0)  # one bit kept: every channel is 0 or 128
    random.seed(0)
    for _ in range(200):  # the whole transform, every op drawn many times
        assert transform(image).shape == (3, 32, 32)


def test_pad_crop_transform__a_shift_of_at_most_the_padding_of_the_evaluation_image():
    """The small-image recipe keeps the evaluation geometry: every output is the evaluation tensor
    shifted by at most ``padding`` pixels (black, i.e. -mean/std, where the shift uncovers the
    border), possibly mirrored; over many draws every shift in [-2, 2] appears."""
    from PIL import Image

    from hf_sslviews.evaluation.finetune import pad_crop_transform_for

    image = Image.fromarray(np.random.default_rng(0).integers(1, 255, (16, 16, 3), dtype=np.uint8))
    reference = eval_transform_for(CFG)(image)
    transform = pad_crop_transform_for(CFG, padding=2)
    black = (0.0 - 0.5) / 0.25
    shifts = set()
    torch.manual_seed(0)
    for _ in range(300):
        out = transform(image)
        assert out.shape == (3, 16, 16) and out.dtype == torch.float32
        found = None
        for flipped in (reference, reference.flip(-1)):
            padded = F.pad(flipped, (2, 2, 2, 2), value=black)
            for dy in range(5):
                for dx in range(5):
                    if torch.allclose(padded[:, dy:dy + 16, dx:dx + 16], out, atol=1e-5):
                        found = (dy - 2, dx - 2)
        assert found is not None, "not a shifted (or mirrored) copy of the evaluation image"
        shifts.add(found)
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    with pytest.raises(ValueError, match="padding must be >= 0"):
        pad_crop_transform_for(CFG, padding=-1)


def test_run_finetune__validation_split_pad_crop_and_random_init(tiny_backbone_dir, tmp_path, capsys):
    """--train_val_split scores a stratified held-out part of train (no test split read), and
    --random_init trains the same network from its random initialisation (the supervised floor)."""
    from safetensors.torch import load_file

    script = load_script("run_finetune")
    flags = [flag for flag in _flags(tiny_backbone_dir, tmp_path / "out") if flag not in ("--max_test_samples", "12")]
    flags += ["--learning_rate", "0", "--train_val_split", "0.1", "--train_augmentation", "pad_crop", "--crop_padding", "3",
              "--random_init", "True", "--seed", "5", "--output_file", str(tmp_path / "ft.json")]
    metrics = script.main(flags)
    assert "train held-out 0.1 top-1" in capsys.readouterr().out
    saved = json.loads((tmp_path / "ft.json").read_text())
    assert saved["arguments"]["data"]["train_val_split"] == 0.1 and saved["arguments"]["augmentation"]["train_augmentation"] == "pad_crop"
    # 10% of the 3,000 sample images held out (stratified) and evaluated; --max_train_samples caps the other 2,700.
    assert (saved["num_train_examples"], saved["num_eval_examples"]) == (16, 300) and 0 <= metrics["eval_accuracy"] <= 1
    # A learning rate of 0: the weights are exactly the seeded random initialisation, not the export's.
    from hf_sslviews.evaluation.features import load_backbone

    weights = load_file(str(tmp_path / "out" / "model.safetensors"))
    random_init = load_backbone(str(tiny_backbone_dir), random_init=True, seed=5).timm_model.state_dict()
    pretrained = load_backbone(str(tiny_backbone_dir)).timm_model.state_dict()
    (key,) = [name for name in weights if name.endswith("patch_embed.proj.weight")]
    assert torch.equal(weights[key], random_init["patch_embed.proj.weight"]) and not torch.equal(weights[key], pretrained["patch_embed.proj.weight"])
    with pytest.raises(ValueError, match="--randaugment and --re_prob belong to --train_augmentation random_resized_crop"):
        script.main([*flags, "--randaugment"])


def test_run_finetune__never_writes_over_an_export_or_the_users_files(tiny_backbone_dir, tmp_path):
    # The slip --output_dir runA/backbone: the Trainer wrote the classifier's config.json and
    # model.safetensors over the export, exit 0.
    from hf_sslviews.atomic import ForeignFolderError

    script = load_script("run_finetune")
    export = tmp_path / "runA" / "backbone"
    export_tiny_backbone(export)
    before = {path.name: path.read_bytes() for path in export.iterdir()}
    with pytest.raises(ForeignFolderError, match=r"runA/backbone holds files this command did not write \(config.json, model.safetensors\).*--overwrite_output_dir"):
        script.main(_flags(tiny_backbone_dir, export))
    assert {path.name: path.read_bytes() for path in export.iterdir()} == before
    # With the flag the export is moved aside, whole; a second fine-tune into the first one's folder needs no flag.
    script.main([*_flags(tiny_backbone_dir, export), "--overwrite_output_dir", "True"])
    (aside,) = (tmp_path / "runA").glob("backbone.replaced-*")
    assert {path.name: path.read_bytes() for path in aside.iterdir()} == before
    script.main(_flags(tiny_backbone_dir, export))


def test_run_finetune__checkpoints_are_safetensors_and_json_and_resume(tiny_backbone_dir, tmp_path):
    # The stock Trainer pickled optimizer.pt, scheduler.pt, rng_state.pth and training_args.bin.
    script = load_script("run_finetune")
    flags = [*_flags(tiny_backbone_dir, tmp_path / "out"), "--save_strategy", "steps", "--save_steps", "1"]
    script.main(flags)
    written = {path.suffix for path in (tmp_path / "out").rglob("*") if path.is_file()}
    assert written <= {".json", ".safetensors", ".md"}, written
    assert (tmp_path / "out" / "checkpoint-2" / "optimizer.safetensors").is_file()
    resumed = script.main([*flags[:flags.index("--max_steps")], "--max_steps", "3", *flags[flags.index("--max_steps") + 2:], "--resume_from_checkpoint", str(tmp_path / "out" / "checkpoint-2")])
    assert 0.0 <= resumed["eval_accuracy"] <= 1.0
