"""Dataset resolution: one function turns a name, a folder or nothing into a ``datasets`` dataset.

:func:`load_image_dataset` resolves, in this order:

1. ``train_dir``: an image folder, read with ``load_dataset("imagefolder", data_dir=...)``
   (class sub-folders become a ``label`` column).
2. ``"sample"`` (the default when nothing is given): the Fashion-MNIST sample embedded in the
   package (3,000 train / 1,000 test images, class-balanced; see
   ``resources/FASHION_MNIST_SAMPLE.md``). Works offline, in every install.
3. ``"fashion_mnist"``: the full Fashion-MNIST (60,000 / 10,000) from Debian's
   ``dataset-fashion-mnist`` package, read from ``/usr/share/datasets/fashion-mnist``.
4. A local path: a ``save_to_disk`` folder (``load_from_disk``), otherwise
   ``load_dataset(path)`` (a folder of data files or a loading script).
5. Anything else: a Hub dataset, ``load_dataset(name, config, split=split)``.

Fashion-MNIST comes out as RGB ``PIL`` images (timm's and transformers' image processors do not
convert grayscale) in an ``image`` column and a ``ClassLabel`` ``label`` column, with splits
``"train"`` and ``"test"``.

Before a view transform is attached, :func:`prepare_for_views` switches the image column to
``Image(decode=False)``, so the transform decodes each image itself and an undecodable file is
a counted skip (``image_ok=False``) instead of an exception inside ``datasets``.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
from pathlib import Path
from typing import Optional, Union

import datasets
import numpy as np
from PIL import Image
from safetensors.numpy import load_file

from ..views.base import SAMPLE_INDEX_COLUMN
from .image_folder import check_image_folder, is_split_layout, load_class_folders

logger = logging.getLogger(__name__)

AnyDataset = Union[datasets.Dataset, datasets.IterableDataset]

SAMPLE_NAME = "sample"
FASHION_MNIST_NAME = "fashion_mnist"
SAMPLE_PATH = Path(__file__).parents[1] / "resources" / "fashion_mnist_sample.safetensors"
# Debian's dataset-fashion-mnist installs here; the environment variable lets a user with the
# original Zalando .gz files elsewhere point at them.
FASHION_MNIST_DIR = Path(os.environ.get("HF_SSLVIEWS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Label order of Zalando Research's README (label 0 .. 9).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# IDX type codes (third byte of the magic number) -> numpy big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------------------------
# Raw arrays: IDX files and the embedded sample
# --------------------------------------------------------------------------------------------


def read_idx(path: Union[str, Path]) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    Args:
        path: the ``.gz`` or plain IDX file.

    Returns:
        The array with the shape and dtype recorded in the header (native byte order).

    Raises:
        ValueError: if the header is not an IDX header or the data is truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but {len(data) - header_end} bytes follow")
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def load_fashion_mnist_arrays(split: str = "train", data_dir: Union[str, Path, None] = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the full Fashion-MNIST from the Debian package's IDX files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        data_dir: folder holding the four ``*-idx?-ubyte.gz`` files; defaults to
            ``/usr/share/datasets/fashion-mnist`` (or ``$HF_SSLVIEWS_FASHION_MNIST_DIR``).

    Returns:
        ``images`` uint8 ``[N, 28, 28]`` and ``labels`` int64 ``[N]``.

    Raises:
        ValueError: for an unknown split.
        FileNotFoundError: when the files are absent, naming the Debian package to install.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST has splits {sorted(FASHION_MNIST_FILES)}, got split={split!r}")
    data_dir = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    image_file, label_file = (data_dir / name for name in FASHION_MNIST_FILES[split])
    missing = [str(path) for path in (image_file, label_file) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {missing}. Install them with "
            f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
            f"HF_SSLVIEWS_FASHION_MNIST_DIR to a folder holding the Zalando .gz files, or use "
            f"dataset_name='sample' for the embedded 4,000-image sample."
        )
    images, labels = read_idx(image_file), read_idx(label_file).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{image_file} has {images.shape[0]} images but {label_file} has {labels.shape[0]} labels")
    return images, labels


def load_sample_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read one split of the embedded Fashion-MNIST sample (safetensors, shipped in the package).

    Args:
        split: ``"train"`` (3,000 images, 300 per class) or ``"test"`` (1,000, 100 per class).

    Returns:
        ``images`` uint8 ``[N, 28, 28]`` and ``labels`` int64 ``[N]``.
    """
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"the embedded sample has splits {sorted(FASHION_MNIST_FILES)}, got split={split!r}")
    tensors = load_file(str(SAMPLE_PATH))
    return tensors[f"{split}_images"], tensors[f"{split}_labels"]


def arrays_to_dataset(images: np.ndarray, labels: np.ndarray, class_names=FASHION_MNIST_CLASSES, split: str = "train") -> datasets.Dataset:
    """Turn grayscale uint8 images ``[N, H, W]`` and int labels ``[N]`` into an image dataset.

    Each image is stored as an RGB PNG (three equal channels): timm's and transformers' image
    processors expect three channels and do not convert grayscale themselves.

    Args:
        images: uint8 ``[N, H, W]``.
        labels: integer ``[N]`` in ``[0, len(class_names))``.
        class_names: names of the ``ClassLabel`` feature.
        split: the split name recorded in the dataset info.

    Returns:
        A ``Dataset`` with columns ``image`` (``Image()``) and ``label`` (``ClassLabel``).
    """
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names))})
    encoded = []
    for gray in images:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(gray), mode="L").convert("RGB").save(buffer, format="PNG", compress_level=1)
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    return datasets.Dataset.from_dict(
        {"image": encoded, "label": np.asarray(labels, dtype=np.int64).tolist()},
        features=features,
        split=datasets.NamedSplit(split),
    )


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def _pick_split(loaded: Union[AnyDataset, datasets.DatasetDict, datasets.IterableDatasetDict], split: str, source: str) -> AnyDataset:
    """Return ``loaded[split]`` for a dict of splits, ``loaded`` itself for a single dataset."""
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in loaded:
            raise ValueError(f"{source} has splits {sorted(loaded)}, not {split!r}; pass one of them as the split")
        return loaded[split]
    return loaded


_SLICE = re.compile(r"^(?P<name>\w+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def split_slice(split: str) -> tuple[str, slice]:
    """``"train[50000:]"`` -> ``("train", slice(50000, None))``; a plain name -> the whole split.

    The ``datasets`` slice syntax with absolute indices, for the sources this module reads
    itself (the embedded sample and Debian's Fashion-MNIST); ``load_dataset`` sources parse their
    own (percentages included). It is what lets a held-out part of train serve as validation:
    pretrain on ``train[:50000]``, tune on ``train[50000:]``, never on ``test``.
    """
    match = _SLICE.match(split.replace(" ", ""))
    if match is None:
        return split, slice(None)
    bound = lambda text: int(text) if text else None  # noqa: E731
    return match["name"], slice(bound(match["start"]), bound(match["stop"]))


def _local_arrays(load, split: str, source: str) -> datasets.Dataset:
    name, rows = split_slice(split)
    images, labels = load(name)
    images, labels = images[rows], labels[rows]
    if len(images) == 0:
        raise ValueError(f"{source} split {split!r} selects no images; the {name!r} split has {len(load(name)[0])}")
    return arrays_to_dataset(images, labels, split=name)


def _load_named(dataset_name: str, dataset_config_name: Optional[str], split: str, streaming: bool, cache_dir: Optional[str]) -> AnyDataset:
    """Resolve steps 2-5 of the module docstring for a dataset name or path."""
    if dataset_name in (SAMPLE_NAME, FASHION_MNIST_NAME):
        load = load_sample_arrays if dataset_name == SAMPLE_NAME else load_fashion_mnist_arrays
        dataset = _local_arrays(load, split, f"dataset {dataset_name!r}")
        return dataset.to_iterable_dataset() if streaming else dataset
    path = Path(dataset_name).expanduser()
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        try:
            loaded = datasets.load_from_disk(str(path))
        except IndexError as error:
            # datasets cannot reload a folder with zero data shards, which is what save_to_disk
            # writes for an empty dataset; its own error is a bare "list index out of range".
            raise ValueError(
                f"saved dataset {str(path)!r} could not be read: it holds no data shards, as save_to_disk writes "
                f"for an empty dataset. Check that the dataset has examples before saving it (and the path)."
            ) from error
        dataset = _pick_split(loaded, split, f"saved dataset {str(path)!r}")
        return dataset.to_iterable_dataset() if streaming else dataset
    if path.exists():
        return datasets.load_dataset(str(path), dataset_config_name, split=split, streaming=streaming, cache_dir=cache_dir)
    try:
        return datasets.load_dataset(dataset_name, dataset_config_name, split=split, streaming=streaming, cache_dir=cache_dir)
    except (FileNotFoundError, ConnectionError, OSError, datasets.exceptions.DatasetNotFoundError) as error:
        raise ValueError(
            f"could not load dataset {dataset_name!r}: it is not {SAMPLE_NAME!r}, not {FASHION_MNIST_NAME!r}, "
            f"not an existing local path, and loading it from the Hugging Face Hub failed "
            f"({type(error).__name__}: {error}). Check the name and your connection, or pass "
            f"--train_dir with an image folder."
        ) from error


def check_columns(dataset: AnyDataset, image_column: str = "image", label_column: Optional[str] = None) -> None:
    """Raise a ``ValueError`` naming the fix when a needed column is missing.

    A streaming dataset whose columns are not known before iteration is not checked here; the
    view transform raises the same error on its first batch.

    Args:
        dataset: the dataset to check.
        image_column: the column that must hold the images.
        label_column: the column that must hold the labels, or ``None`` if labels are not needed.
    """
    columns = dataset.column_names
    if columns is None:
        return
    if image_column not in columns:
        raise ValueError(
            f"image column {image_column!r} not found; the dataset has columns {sorted(columns)}. "
            f"Pass the right one with --image_column_name (or image_column=...)."
        )
    if label_column is not None and label_column not in columns:
        raise ValueError(
            f"label column {label_column!r} not found; the dataset has columns {sorted(columns)}. "
            f"Pass the right one with --label_column_name (or label_column=...)."
        )


def load_image_dataset(
    dataset_name: Optional[str] = None,
    dataset_config_name: Optional[str] = None,
    train_dir: Optional[str] = None,
    split: str = "train",
    image_column: str = "image",
    label_column: Optional[str] = None,
    max_samples: Optional[int] = None,
    streaming: bool = False,
    cache_dir: Optional[str] = None,
) -> AnyDataset:
    """Load one split of an image dataset from wherever it lives (see the module docstring).

    Args:
        dataset_name: ``"sample"`` (the default when ``train_dir`` is not given either),
            ``"fashion_mnist"``, a local path, or a Hub dataset id such as ``"uoft-cs/cifar10"``.
        dataset_config_name: the Hub dataset's configuration, if it has several.
        train_dir: an image folder (``root/<class>/<image>`` or flat); takes precedence over
            ``dataset_name``.
        split: the split to load (``"train"``, ``"test"``, ``"validation"``), or a slice of one:
            ``"train[50000:]"`` for every source, ``"train[:10%]"`` for ``load_dataset`` sources.
        image_column: the column that must hold the images.
        label_column: the column that must hold the labels, or ``None`` if labels are not needed.
        max_samples: keep only the first ``max_samples`` examples (for quick runs).
        streaming: return an ``IterableDataset`` (the embedded and Debian sets are converted
            with ``to_iterable_dataset``; Hub and folder sources stream natively).
        cache_dir: the ``datasets`` cache folder for ``load_dataset`` sources.

    Returns:
        A ``datasets.Dataset``, or a ``datasets.IterableDataset`` when ``streaming=True``.

    Raises:
        ValueError: a missing column (listing the columns that exist), an empty dataset, an
            unknown split, or a name that resolves to nothing.
        FileNotFoundError: ``"fashion_mnist"`` without the Debian package installed.
    """
    if max_samples is not None and max_samples <= 0:
        raise ValueError(f"max_samples must be a positive number of examples, got {max_samples}")
    if train_dir is not None:
        if not Path(train_dir).is_dir():
            raise ValueError(f"train_dir {train_dir!r} is not a folder; pass a folder of images (one sub-folder per class)")
        scan = check_image_folder(train_dir)
        if not scan.images:
            raise ValueError(f"train_dir {train_dir!r} contains no image files; check the path")
        if is_split_layout(train_dir, scan):
            try:
                dataset = datasets.load_dataset("imagefolder", data_dir=train_dir, split=split, streaming=streaming, cache_dir=cache_dir)
            except datasets.data_files.EmptyDatasetError as error:
                raise ValueError(f"train_dir {train_dir!r} contains no image files ({error}); check the path") from error
        else:
            dataset = load_class_folders(train_dir, scan, split, streaming)
        source = f"image folder {train_dir!r}"
    else:
        dataset_name = dataset_name or SAMPLE_NAME
        dataset = _load_named(dataset_name, dataset_config_name, split, streaming, cache_dir)
        source = f"dataset {dataset_name!r}"
    check_columns(dataset, image_column, label_column)
    if isinstance(dataset, datasets.Dataset) and len(dataset) == 0:
        raise ValueError(f"{source} split {split!r} is empty; check the path, the split name and any filters")
    if max_samples is not None:
        if isinstance(dataset, datasets.Dataset):
            dataset = dataset.select(range(min(max_samples, len(dataset))))
        else:
            dataset = dataset.take(max_samples)
    return dataset


def _check_image_feature(features, image_column: str) -> None:
    """A column of numbers, booleans or labels cannot hold images: say so before training.

    Otherwise every row would be a counted skip and the run would stop on the bad-image rule
    after a few batches, naming no column type.
    """
    feature = None if features is None else features.get(image_column)
    if isinstance(feature, datasets.ClassLabel) or (isinstance(feature, datasets.Value) and feature.dtype not in ("string", "large_string", "binary", "large_binary")):
        kind = "class labels" if isinstance(feature, datasets.ClassLabel) else f"{feature.dtype} values"
        raise ValueError(
            f"image column {image_column!r} holds {kind}, not images (an Image feature, bytes, file paths or uint8 "
            f"arrays). Pass the column that holds the images with --image_column_name (or image_column=...); "
            f"the columns are {sorted(features)}."
        )


def prepare_for_views(dataset: AnyDataset, image_column: str = "image") -> AnyDataset:
    """Make a dataset ready for a view transform.

    - Image decoding goes to the view transform: an ``Image`` column is cast to
      ``decode=False``, so the transform receives ``{"bytes", "path"}`` dicts and decodes them
      with :func:`~hf_sslviews.views.decode.decode_image`, and a corrupt file becomes a counted skip
      (``image_ok=False``) rather than an exception raised inside ``datasets``. Columns that are
      not ``Image`` features (paths, raw bytes) are left as they are.
    - A map-style dataset gets a ``__sample_index__`` column (each row's position), which seeds
      each row's views per ``(seed, epoch, row)``: views that do not depend on loading order,
      workers or resume (see :class:`~hf_sslviews.views.base.ViewTransform`).

    Args:
        dataset: a dataset with an image column.
        image_column: the image column's name.

    Returns:
        The prepared dataset.
    """
    check_columns(dataset, image_column)
    features = dataset.features
    _check_image_feature(features, image_column)
    if features is not None and isinstance(features.get(image_column), datasets.Image) and features[image_column].decode:
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    if isinstance(dataset, datasets.Dataset) and SAMPLE_INDEX_COLUMN not in dataset.column_names:
        dataset = dataset.add_column(SAMPLE_INDEX_COLUMN, range(len(dataset)))
    return dataset


def split_train_eval(dataset: datasets.Dataset, eval_size: Union[int, float] = 0.1, seed: int = 0, stratify_by_column: Optional[str] = None) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out part of a dataset that has no evaluation split.

    Args:
        dataset: a map-style dataset.
        eval_size: a fraction in ``(0, 1)`` or a number of examples.
        seed: the shuffling seed (the split is deterministic for a given seed).
        stratify_by_column: a ``ClassLabel`` column to keep class proportions equal in both parts.

    Returns:
        ``(train, eval)`` datasets.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError("split_train_eval needs a map-style Dataset; a streaming dataset cannot be split by size")
    if len(dataset) < 2:
        raise ValueError(f"cannot split a dataset of {len(dataset)} example(s) into train and eval parts")
    parts = dataset.train_test_split(test_size=eval_size, seed=seed, stratify_by_column=stratify_by_column)
    return parts["train"], parts["test"]


__all__ = [
    "FASHION_MNIST_CLASSES",
    "arrays_to_dataset",
    "check_columns",
    "load_fashion_mnist_arrays",
    "load_image_dataset",
    "load_sample_arrays",
    "prepare_for_views",
    "read_idx",
    "split_train_eval",
]
