"""Image folders: a look before anything is read, and the class-folder layout read right.

``load_dataset("imagefolder")`` dies on a file name that is not UTF-8 (an Arrow string cannot
hold it) and blocks forever on a FIFO named like an image. One walk over the folder (names and
file types only, no image is opened) finds both and turns them into an error naming the files.

The same walk decides who reads the folder. ``datasets`` reads a folder of splits
(``root/train/<class>/...``, ``root/test/...``) and one with a metadata file. A folder of class
folders (``root/<class>/<image>``) is read here, by :func:`load_class_folders`, because
``imagefolder`` gets two of its cases wrong without a word: a class folder whose name contains a
split keyword (``train/``, ``test/``, ``val_set/``, ...) is taken for a split, so the other classes
are dropped and every label is ``None``; and one image in a sub-folder of a class folder drops
the labels of the whole folder. Here the label of an image is always its top-level folder.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_SHOWN = 5  # files named per problem; the rest are counted
_METADATA_EXTENSIONS = frozenset({".csv", ".jsonl", ".json", ".parquet"})  # imagefolder's metadata files


def _split_keywords() -> frozenset[str]:
    """The folder names ``datasets`` reads as splits (``train``, ``training``, ``val``, ``test``, ...)."""
    from datasets.data_files import SPLIT_KEYWORDS

    return frozenset(keyword for keywords in SPLIT_KEYWORDS.values() for keyword in keywords)


def _image_extensions() -> frozenset[str]:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return frozenset(extension.lower() for extension in ImageFolder.EXTENSIONS)


@dataclass
class FolderScan:
    """What one walk over an image folder found.

    Attributes:
        images: number of image files (by extension) that ``datasets`` can read.
        undecodable_names: paths (``bytes``, shown with escapes) whose name is not UTF-8.
        not_regular: image-named paths that are not regular files (FIFO, socket, device,
            broken link): reading one blocks or fails.
        depths: image count per depth below the root (1 = directly in the root, 2 = in a
            class folder, ...).
        example_at_depth: one image path per depth, for messages.
    """

    images: int = 0
    paths: list[str] = field(default_factory=list)
    metadata_files: list[str] = field(default_factory=list)
    undecodable_names: list[bytes] = field(default_factory=list)
    not_regular: list[str] = field(default_factory=list)
    depths: dict[int, int] = field(default_factory=dict)
    example_at_depth: dict[int, str] = field(default_factory=dict)


def scan_image_folder(root: str | os.PathLike) -> FolderScan:
    """Walk ``root`` (following no directory links, as ``datasets`` does not need them)."""
    extensions = _image_extensions()
    scan = FolderScan()
    root_bytes = os.fsencode(root)
    for directory, _, names in os.walk(root_bytes):
        depth = len(os.path.relpath(directory, root_bytes).split(os.sep.encode())) if directory != root_bytes else 0
        for name in names:
            extension = os.path.splitext(name)[1].lower()
            try:
                extension_text = extension.decode("utf-8")
            except UnicodeDecodeError:
                extension_text = ""
            path = os.path.join(directory, name)
            try:
                name.decode("utf-8")
                directory.decode("utf-8")
            except UnicodeDecodeError:
                scan.undecodable_names.append(path)
                continue
            if extension_text not in extensions:
                if name.decode("utf-8").startswith("metadata.") and extension_text in _METADATA_EXTENSIONS:
                    scan.metadata_files.append(os.fsdecode(path))
                continue
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)  # follows links: a broken link is not regular
            except OSError:
                regular = False
            if not regular:
                scan.not_regular.append(os.fsdecode(path))
                continue
            scan.images += 1
            scan.paths.append(os.fsdecode(path))
            scan.depths[depth + 1] = scan.depths.get(depth + 1, 0) + 1
            scan.example_at_depth.setdefault(depth + 1, os.fsdecode(path))
    return scan


def _listing(paths: list) -> str:
    shown = [repr(path) if isinstance(path, bytes) else path for path in paths[:_SHOWN]]
    more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
    return ", ".join(shown) + more


def check_image_folder(root: str | os.PathLike) -> FolderScan:
    """Refuse what ``datasets`` would crash or hang on; warn when it would drop the labels.

    Raises:
        ValueError: file names that are not UTF-8, or image-named paths that are not regular
            files; the message names them and the fix.
    """
    scan = scan_image_folder(root)
    if scan.undecodable_names:
        raise ValueError(
            f"{len(scan.undecodable_names)} file name(s) in {str(root)!r} are not UTF-8, which datasets cannot store: "
            f"{_listing(scan.undecodable_names)}. Rename them (e.g. `convmv -f latin1 -t utf8 -r --notest {root}`) or move them out."
        )
    if scan.not_regular:
        raise ValueError(
            f"{len(scan.not_regular)} path(s) in {str(root)!r} are named like images but are not regular files (a FIFO, "
            f"socket, device or broken link; reading one would block or fail): {_listing(scan.not_regular)}. Remove them or "
            "replace them with the image files."
        )
    return scan


def is_split_layout(root: str | os.PathLike, scan: FolderScan) -> bool:
    """Whether ``datasets`` should read ``root``: a folder of splits, or one with a metadata file.

    A folder of splits has only folders named exactly like splits at its top (``train/``,
    ``validation/``, ``test/``, ...); one split-named folder beside class folders is a class
    (logged), and so is a folder whose name merely contains a split keyword (``train_images/``),
    which ``datasets``' own patterns would take for a split.
    """
    if scan.metadata_files:
        return True
    folders = sorted(path.name for path in Path(root).iterdir() if path.is_dir())
    keywords = _split_keywords()
    splits = [name for name in folders if name.lower() in keywords]
    if splits and len(splits) == len(folders):
        return True
    if splits:
        logger.info("%s: the folders %s are read as classes (beside %d other class folders), not as splits", root, splits, len(folders) - len(splits))
    return False


def load_class_folders(root: str | os.PathLike, scan: FolderScan, split: str = "train", streaming: bool = False):
    """``root/<class>/.../<image>`` as a dataset: ``image`` (``Image``) and, with two or more class
    folders, ``label`` (a ``ClassLabel`` of the sorted folder names).

    An image's label is its top-level folder, however deep it lies below it. Images directly in
    ``root`` have no class: with them present there is no label column (logged), as a flat folder
    of images has none. The folder is one split, ``train``; ``split`` may slice it like
    ``load_dataset`` does (``"train[:80%]"``, ``"train[100:]"``).
    """
    import datasets
    from datasets.arrow_reader import ReadInstruction

    if not scan.paths:
        raise ValueError(f"image folder {str(root)!r} contains no image files; check the path")
    paths = sorted(scan.paths)
    relative = [Path(path).relative_to(root).parts for path in paths]
    classes = sorted({parts[0] for parts in relative if len(parts) > 1})
    columns: dict = {"image": paths}
    features = datasets.Features({"image": datasets.Image()})
    loose = sum(len(parts) == 1 for parts in relative)
    if len(classes) > 1 and not loose:
        index = {name: position for position, name in enumerate(classes)}
        columns["label"] = [index[parts[0]] for parts in relative]
        features["label"] = datasets.ClassLabel(names=classes)
    elif len(classes) > 1:
        logger.warning(
            "%d image(s) lie directly in %s, outside every class folder (e.g. %s): the folder gets no label column "
            "(kNN / linear evaluation need one). Move them into their class folders to keep the labels.",
            loose, root, next(path for path, parts in zip(paths, relative) if len(parts) == 1),
        )
    try:
        instructions = ReadInstruction.from_spec(split).to_absolute({"train": len(paths)})
    except (ValueError, AssertionError) as error:
        raise ValueError(f"image folder {str(root)!r} has one split, 'train' (a folder of class folders), not {split!r} ({error})") from error
    rows = [index for instruction in instructions for index in range(instruction.from_, instruction.to)]
    dataset = datasets.Dataset.from_dict({key: [values[i] for i in rows] for key, values in columns.items()}, features=features, split=datasets.NamedSplit("train"))
    return dataset.to_iterable_dataset() if streaming else dataset


__all__ = ["FolderScan", "check_image_folder", "is_split_layout", "load_class_folders", "scan_image_folder"]
