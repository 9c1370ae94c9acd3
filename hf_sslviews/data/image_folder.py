"""A look over an image folder before ``datasets`` reads it: what it would fail on or drop.

``load_dataset("imagefolder")`` dies on a file name that is not UTF-8 (an Arrow string cannot
hold it) and blocks forever on a FIFO named like an image; and it drops the class labels
without a word when images lie at different depths (a stray image in a sub-folder of one
class). One walk over the folder (names and file types only, no image is opened) finds all
three, so the first two become an error naming the files and the third a warning naming the
depths.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_SHOWN = 5  # files named per problem; the rest are counted


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
                continue
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)  # follows links: a broken link is not regular
            except OSError:
                regular = False
            if not regular:
                scan.not_regular.append(os.fsdecode(path))
                continue
            scan.images += 1
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
    class_folders = [path for path in Path(root).iterdir() if path.is_dir()]
    if len(scan.depths) > 1 and class_folders:
        depths = ", ".join(f"{count} at depth {depth} (e.g. {scan.example_at_depth[depth]})" for depth, count in sorted(scan.depths.items()))
        logger.warning(
            "the images of %s lie at different depths (%s): datasets' imagefolder then adds no label column, so "
            "class folders are not used as labels (kNN / linear evaluation need them). Put every image directly "
            "in its class folder to keep the labels.", root, depths,
        )
    return scan


__all__ = ["FolderScan", "check_image_folder", "scan_image_folder"]
