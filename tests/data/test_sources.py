"""Tests of hf_sslviews.data.sources: the embedded sample, Fashion-MNIST, folders, saved datasets, errors."""

from __future__ import annotations

import collections
import gzip
import io
import os
import re
from pathlib import Path

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file

from hf_sslviews.data import sources as data
from hf_sslviews.data.image_folder import scan_image_folder
from hf_sslviews.data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist_arrays, load_image_dataset, prepare_for_views, read_idx, split_train_eval
from hf_sslviews.views.base import ViewTransform

from ..helpers import load_script

REPO = Path(__file__).resolve().parents[2]
DEBIAN_FILES = [data.FASHION_MNIST_DIR / name for pair in data.FASHION_MNIST_FILES.values() for name in pair]
# The only allowed skip: the Debian package is not installed (.ci/run installs it).
requires_debian = pytest.mark.skipif(
    not all(path.is_file() for path in DEBIAN_FILES),
    reason="Debian dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)


def _png(color, size=(8, 6), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


# ---------------------------------------------------------------------------- embedded sample


@pytest.mark.parametrize("split, per_class", [("train", 300), ("test", 100)])
def test_load_image_dataset__sample_sizes_classes_rgb(split, per_class):
    dataset = load_image_dataset("sample", split=split, label_column="label")
    assert len(dataset) == 10 * per_class
    assert dataset.features["label"].names == list(FASHION_MNIST_CLASSES)
    assert collections.Counter(dataset["label"]) == {c: per_class for c in range(10)}
    image = dataset[5]["image"]
    assert image.mode == "RGB" and image.size == (28, 28)
    # Pixels are the stored grayscale values repeated on three channels, not altered.
    stored = load_file(str(data.SAMPLE_PATH))
    pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels, np.repeat(stored[f"{split}_images"][5][:, :, None], 3, axis=2))
    assert dataset[5]["label"] == int(stored[f"{split}_labels"][5])


def test_load_image_dataset__sample_is_the_default():
    dataset = load_image_dataset(max_samples=7)
    assert len(dataset) == 7
    assert dataset.features["label"].names == list(FASHION_MNIST_CLASSES)


def test_sample_file__stores_uint8_and_int64_tensors():
    stored = load_file(str(data.SAMPLE_PATH))
    assert {key: (value.dtype, value.shape) for key, value in stored.items()} == {
        "train_images": (np.uint8, (3000, 28, 28)),
        "train_labels": (np.int64, (3000,)),
        "test_images": (np.uint8, (1000, 28, 28)),
        "test_labels": (np.int64, (1000,)),
    }
    assert (REPO / "hf_sslviews" / "resources" / "FASHION_MNIST_SAMPLE.md").read_text().count("MIT") >= 2


@requires_debian
def test_make_embedded_sample__rebuild_equals_shipped_file():
    module = load_script("make_embedded_sample")
    rebuilt, shipped = module.build_sample(), load_file(str(data.SAMPLE_PATH))
    assert rebuilt.keys() == shipped.keys()
    for key in shipped:
        np.testing.assert_array_equal(rebuilt[key], shipped[key])
    # Every sampled test image is a real t10k image with its own label.
    images, labels = load_fashion_mnist_arrays("test")
    row = int(np.flatnonzero((images == shipped["test_images"][0]).all(axis=(1, 2)))[0])
    assert labels[row] == shipped["test_labels"][0]


def test_load_image_dataset__streaming_sample():
    stream = load_image_dataset("sample", split="test", streaming=True, max_samples=4)
    assert isinstance(stream, datasets.IterableDataset)
    rows = list(stream)
    expected = load_image_dataset("sample", split="test", max_samples=4)
    assert [row["label"] for row in rows] == expected["label"]
    assert rows[0]["image"].mode == "RGB"


# ---------------------------------------------------------------------------- Fashion-MNIST


def test_read_idx__round_trips_and_rejects_bad_files(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)
    wide = np.array([1, -2, 70000], dtype=np.int32)
    _write_idx(tmp_path / "b.gz", wide, type_code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), wide)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    with gzip.open(tmp_path / "short.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 9)
    with pytest.raises(ValueError, match="10 bytes"):
        read_idx(tmp_path / "short.gz")


def test_load_fashion_mnist__reads_idx_files_from_a_folder(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([9, 0, 3, 3, 1], dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    dataset = load_image_dataset("fashion_mnist", split="test")
    assert dataset["label"] == [9, 0, 3, 3, 1]
    assert dataset.features["label"].int2str(9) == "Ankle boot"
    np.testing.assert_array_equal(np.asarray(dataset[2]["image"])[:, :, 1], images[2])
    assert dataset[2]["image"].mode == "RGB"


def test_load_fashion_mnist__missing_files_name_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_image_dataset("fashion_mnist")
    with pytest.raises(ValueError, match="splits"):
        load_fashion_mnist_arrays("validation")


@requires_debian
def test_load_fashion_mnist__debian_test_split():
    raw_images, raw_labels = load_fashion_mnist_arrays("test")
    assert raw_images.shape == (10000, 28, 28) and raw_images.dtype == np.uint8
    assert np.bincount(raw_labels).tolist() == [1000] * 10
    dataset = load_image_dataset("fashion_mnist", split="test", max_samples=50)
    assert len(dataset) == 50 and dataset.split == "test"
    assert dataset["label"] == raw_labels[:50].tolist()
    image = dataset[49]["image"]
    assert image.mode == "RGB" and image.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(image)[:, :, 0], raw_images[49])


# ---------------------------------------------------------------------------- other sources


def test_load_image_dataset__image_folder(tmp_path):
    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "pets" / label / f"{i}.png").write_bytes(_png(color))
    dataset = load_image_dataset(train_dir=str(tmp_path / "pets"), label_column="label", cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 6
    assert dataset.features["label"].names == ["cat", "dog"]
    for row in dataset:
        expected = (255, 0, 0) if row["label"] == 0 else (0, 0, 255)
        assert row["image"].getpixel((0, 0)) == expected


def _pets(root: Path) -> Path:
    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(_png(color))
    return root


def test_load_image_dataset__a_file_name_that_is_not_utf8_is_named(tmp_path):
    # datasets dies on it with a bare DatasetGenerationError.
    root = _pets(tmp_path / "pets")
    (Path(os.fsdecode(os.fsencode(root / "cat") + b"/caf\xe9.png"))).write_bytes(_png((0, 0, 0)))
    with pytest.raises(ValueError, match=r"1 file name\(s\) in .* are not UTF-8.*caf\\xe9\.png.*convmv"):
        load_image_dataset(train_dir=str(root), cache_dir=str(tmp_path / "cache"))


@pytest.mark.timeout(120)  # a regression would block on the FIFO: fail instead of hanging the suite
def test_load_image_dataset__a_fifo_named_like_an_image_is_named_not_read(tmp_path):
    # Reading it would block forever.
    root = _pets(tmp_path / "pets")
    os.mkfifo(root / "dog" / "pipe.png")
    (root / "dog" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(ValueError, match=r"2 path\(s\) .* not regular files.*(pipe\.png.*gone\.jpg|gone\.jpg.*pipe\.png)"):
        load_image_dataset(train_dir=str(root), cache_dir=str(tmp_path / "cache"))


def test_load_image_dataset__an_image_one_level_deeper_keeps_every_label(tmp_path):
    # datasets' imagefolder dropped the label column of the whole folder for this one image.
    root = _pets(tmp_path / "pets")
    (root / "dog" / "puppies").mkdir()
    (root / "dog" / "puppies" / "0.png").write_bytes(_png((0, 0, 255)))
    dataset = load_image_dataset(train_dir=str(root), label_column="label", cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 7 and dataset.features["label"].names == ["cat", "dog"]
    assert dataset["label"] == [0, 0, 0, 1, 1, 1, 1]
    assert scan_image_folder(root).depths == {2: 6, 3: 1}
    for row in dataset:
        assert row["image"].getpixel((0, 0)) == ((255, 0, 0) if row["label"] == 0 else (0, 0, 255))


def test_load_image_dataset__class_folders_named_like_splits_are_classes(tmp_path):
    # datasets took train/ and test/ for splits: 3 of 12 images, every label None.
    root = tmp_path / "things"
    colours = {"cat": (255, 0, 0), "train": (0, 255, 0), "test": (0, 0, 255), "val_set": (9, 9, 9)}
    for label, colour in colours.items():
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(_png(colour))
    dataset = load_image_dataset(train_dir=str(root), label_column="label", cache_dir=str(tmp_path / "cache"))
    names = dataset.features["label"].names
    assert len(dataset) == 12 and names == sorted(colours)
    assert all(row["image"].getpixel((0, 0)) == colours[names[row["label"]]] for row in dataset)
    assert len(load_image_dataset(train_dir=str(root), split="train[:25%]")) == 3
    with pytest.raises(ValueError, match=r"has one split, 'train'.*not 'test'"):
        load_image_dataset(train_dir=str(root), split="test")


def test_load_image_dataset__a_folder_of_splits_is_still_read_by_split(tmp_path):
    root = tmp_path / "splits"
    _pets(root / "train")
    _pets(root / "test")
    (root / "test" / "cat" / "0.png").unlink()
    train = load_image_dataset(train_dir=str(root), split="train", cache_dir=str(tmp_path / "cache"))
    test = load_image_dataset(train_dir=str(root), split="test", cache_dir=str(tmp_path / "cache"))
    assert (len(train), len(test)) == (6, 5) and test.features["label"].names == ["cat", "dog"]


def test_load_image_dataset__loose_images_beside_class_folders_leave_no_labels_and_say_so(tmp_path, caplog):
    root = _pets(tmp_path / "pets")
    (root / "stray.png").write_bytes(_png((1, 2, 3)))
    with caplog.at_level("WARNING", logger="hf_sslviews.data.image_folder"):
        dataset = load_image_dataset(train_dir=str(root), cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 7 and "label" not in dataset.column_names
    assert re.search(r"1 image\(s\) lie directly in .*stray\.png.*no label column", caplog.text)


def test_load_image_dataset__train_dir_must_exist(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        load_image_dataset(train_dir=str(tmp_path / "missing"))


def test_load_image_dataset__save_to_disk_folder_and_splits(tmp_path):
    features = datasets.Features({"img": datasets.Image(), "y": datasets.Value("int64")})
    rows = {"img": [{"bytes": _png((i, i, i)), "path": None} for i in range(4)], "y": [0, 1, 2, 3]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(tmp_path / "dd")
    dataset = load_image_dataset(str(tmp_path / "dd"), image_column="img", label_column="y", max_samples=3)
    assert dataset["y"] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"has splits \['train'\], not 'test'"):
        load_image_dataset(str(tmp_path / "dd"), split="test", image_column="img")


def test_load_image_dataset__unknown_hub_name_offline(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="could not load dataset 'no-such-user/no-such-dataset'.*--train_dir"):
        load_image_dataset("no-such-user/no-such-dataset")


# ---------------------------------------------------------------------------- user errors


def test_load_image_dataset__missing_image_column_lists_columns():
    with pytest.raises(ValueError, match=r"image column 'img' not found.*\['image', 'label'\].*--image_column_name"):
        load_image_dataset("sample", image_column="img")


def test_load_image_dataset__missing_label_column_lists_columns():
    with pytest.raises(ValueError, match=r"label column 'labels' not found.*\['image', 'label'\].*--label_column_name"):
        load_image_dataset("sample", label_column="labels")
    assert len(load_image_dataset("sample", split="test", label_column=None)) == 1000  # not asked for: no check


def test_load_image_dataset__empty_dataset(tmp_path):
    empty = datasets.Dataset.from_dict({"image": [], "label": []}, features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    empty.save_to_disk(tmp_path / "empty", num_shards=1)  # 0 shards would not reload (a datasets limitation)
    with pytest.raises(ValueError, match="split 'train' is empty"):
        load_image_dataset(str(tmp_path / "empty"))
    (tmp_path / "no_images").mkdir()
    with pytest.raises(ValueError, match="contains no image files"):
        load_image_dataset(train_dir=str(tmp_path / "no_images"), cache_dir=str(tmp_path / "cache"))


def test_load_image_dataset__max_samples_must_be_positive():
    with pytest.raises(ValueError, match="max_samples"):
        load_image_dataset("sample", max_samples=0)


# ---------------------------------------------------------------------------- views, splitting


class _MeanView(ViewTransform):
    output_keys = ("mean",)

    def make_views(self, image: torch.Tensor) -> dict:
        return {"mean": image.float().mean()}


def test_prepare_for_views__undecoded_dicts_and_counted_bad_image():
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [{"bytes": _png((10, 20, 30)), "path": None}, {"bytes": b"not an image", "path": None}], "label": [0, 1]}
    dataset = prepare_for_views(datasets.Dataset.from_dict(rows, features=features))
    assert dataset.features["image"].decode is False
    first = dataset[0]["image"]
    assert isinstance(first, dict) and first["bytes"].startswith(b"\x89PNG")
    out = dataset.with_transform(_MeanView())[:2]
    assert out["image_ok"] == [True, False]
    assert out["mean"][0].item() == pytest.approx(20.0) and out["mean"][1] is None


def test_prepare_for_views__sample_and_missing_column():
    dataset = prepare_for_views(load_image_dataset("sample", max_samples=2))
    assert set(dataset[0]["image"]) == {"bytes", "path"}
    with pytest.raises(ValueError, match="--image_column_name"):
        prepare_for_views(dataset, image_column="pixels")


def test_split_train_eval__stratified_and_deterministic():
    dataset = load_image_dataset("sample", split="test")
    train, held = split_train_eval(dataset, eval_size=0.2, seed=1, stratify_by_column="label")
    assert (len(train), len(held)) == (800, 200)
    assert collections.Counter(held["label"]) == {c: 20 for c in range(10)}
    _, again = split_train_eval(dataset, eval_size=0.2, seed=1, stratify_by_column="label")
    assert held["label"] == again["label"]
    with pytest.raises(ValueError, match="cannot split"):
        split_train_eval(dataset.select([0]))
