"""Write a folder whole or not at all, and never over a folder of the user's."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

logger = logging.getLogger(__name__)

# Everything an export, a staged upload or a dry run of this library writes into its folder.
OWN_OUTPUT_FILES = frozenset({"config.json", "model.safetensors", "README.md", "run_args.json", "results.json", ".gitattributes"})


class ForeignFolderError(ValueError):
    """The folder a command would replace holds files it did not write."""


def is_own_output(folder: Path) -> bool:
    """Whether ``folder`` holds only what this library's exports and staged uploads write.

    That is files named in :data:`OWN_OUTPUT_FILES`, hidden leftovers of an interrupted atomic
    write, and at most one level of sub-folders that hold only such files (a dry run's
    ``backbone/`` and ``pretraining/``). A run folder (``checkpoint-*``, ``run_identity.json``) or a
    folder with any other file is not.
    """
    def plain(entry: Path) -> bool:
        return entry.is_file() and (entry.name in OWN_OUTPUT_FILES or entry.name.startswith("."))

    for entry in folder.iterdir():
        if plain(entry) or entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink() and all(plain(inner) for inner in entry.iterdir()):
            continue
        return False
    return True


def claim_folder(target: str | os.PathLike, force: bool = False, flag: Optional[str] = "--overwrite_output_dir",
                 own: Callable[[Path], bool] = is_own_output, consequence: str = "would be replaced whole") -> Optional[Path]:
    """Check that replacing ``target`` loses nothing of the user's; with ``force``, move it aside first.

    A missing or empty folder, or one ``own`` recognises (default: holding only this library's
    outputs, :func:`is_own_output`), may be used. Anything else is refused with a
    :class:`ForeignFolderError` that names the folder, what is in it, ``consequence`` and
    ``flag``; with ``force`` the folder is renamed to ``<target>.replaced-<time>`` (kept, not
    deleted) and its new name returned. ``flag`` is the command's option that sets ``force``
    (``None``: the command has none).
    """
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return None
    if not target.is_dir() or target.is_symlink():
        raise ForeignFolderError(f"{target} is {'a link' if target.is_symlink() else 'a file'}, not a folder this command can write; choose another path")
    entries = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in target.iterdir())
    if not entries or own(target):
        return None
    if not force:
        listing = ", ".join(entries[:6]) + (f" and {len(entries) - 6} more" if len(entries) > 6 else "")
        way_out = f", or pass {flag} to move it aside (to {target.name}.replaced-<time>, next to it) first" if flag else ""
        raise ForeignFolderError(f"{target} holds files this command did not write ({listing}) and {consequence}. Choose another folder{way_out}.")
    aside = target.with_name(f"{target.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(target, aside)
    logger.warning("%s held files this command did not write: moved to %s (%s)", target, aside, flag)
    return aside


def claim_results_file(path: str | os.PathLike, flag: str = "--output_file") -> None:
    """Check, before any work, that writing a results file at ``path`` replaces nothing of the user's.

    A missing file, or a JSON object with an ``"arguments"`` entry (what the evaluation scripts
    write), may be replaced; anything else (the user's notes, another tool's output, a folder) is
    refused naming it and ``flag``.
    """
    path = Path(path)
    if not path.exists():
        return
    own = False
    if path.is_file():
        try:
            own = isinstance(record := json.loads(path.read_text()), dict) and "arguments" in record
        except (UnicodeDecodeError, json.JSONDecodeError, OSError):
            own = False
    if not own:
        raise ForeignFolderError(f"{flag} {path} exists and was not written by this library's evaluation scripts; choose another path (it would be replaced).")


def claim_run_folder(target: str | os.PathLike, marker: str, force: bool = False, flag: str = "--overwrite_output_dir") -> Optional[Path]:
    """:func:`claim_folder` for a command that writes into ``target`` over time (a training run).

    Stricter than the default: such a command writes ``config.json`` and ``model.safetensors``
    over whatever is there, so an export of this library (the slip ``--output_dir runA/backbone``)
    is as much the user's as their notes. Only a folder holding ``marker`` (the command's own
    earlier run) is the command's.
    """
    return claim_folder(target, force, flag, own=lambda folder: (folder / marker).is_file(),
                        consequence="would get config.json and model.safetensors written over them")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, force: bool = False, flag: Optional[str] = "--overwrite_output_dir") -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it replaces ``target``.

    Files are written into a sibling temporary folder (same file system, so the final rename is
    atomic). If the block raises, the temporary folder is removed and ``target`` is untouched: a
    crash never leaves a half-written folder under the final name. A ``target`` that holds
    anything but this library's outputs is refused before anything is written, or moved aside
    with ``force`` (:func:`claim_folder`).
    """
    target = Path(target)
    claim_folder(target, force=force, flag=flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    # mkdtemp makes the folder private (0700); the result must have the mode any folder made
    # by mkdir gets (0755 under the usual umask), or nobody else can read an export.
    os.chmod(tmp, 0o777 & ~_current_umask())
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, and the folder itself, to disk (before a rename publishes it)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_dir(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is moved aside first and then removed.

    The rename is atomic on one file system: ``target`` is at every moment either the old folder
    or the new one, never a mix.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: whole or not at all."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
