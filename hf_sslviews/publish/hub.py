"""Push a pretraining run to the Hugging Face Hub: the backbone, and optionally the full checkpoint.

A run of ``scripts/run_pretrain.py`` leaves two things worth sharing:

- ``<output_dir>/backbone``: the exported backbone in timm's Hub format with its model card. This
  is the repo people use (``AutoModel.from_pretrained("org/aps-vit-small")``, no custom code).
- ``<output_dir>`` itself: the full pretraining model (heads, target network, queues), which
  reloads only after ``import hf_sslviews``. It can go to a second repo
  (``org/aps-vit-small-pretraining``) so pretraining can be continued from it.

:func:`prepare_upload_folder` stages exactly the files one repo receives (never the intermediate
``checkpoint-*`` folders, optimizer states or pickles); :func:`push_folder` uploads a staged folder
with ``HfApi.create_repo`` + ``HfApi.upload_folder``, or, with ``dry_run_dir``, writes it to disk and
uploads nothing. :func:`push_run` does both kinds for one run (``scripts/push_to_hub.py``,
``run_pretrain.py --push_to_hub``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from huggingface_hub import CommitInfo, HfApi, ModelCard

from ..atomic import atomic_directory
from .cards import card_repo_id, default_repo_id, render_pretraining_card, render_run_card, retarget_card
from .loading import load_pretraining_model
from .run_folder import ARGUMENTS_FILE, CHECKPOINT_NAME, RESULTS_FILE, RunRecord, check_not_inside, is_backbone_folder, is_pretraining_folder

logger = logging.getLogger("hf_sslviews")

BACKBONE_REQUIRED = ("config.json", "model.safetensors")
# Everything a pretraining repo receives (weights may also be sharded: model-0000x-of-0000y.safetensors).
PRETRAINING_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", ARGUMENTS_FILE, RESULTS_FILE)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")


# ---------------------------------------------------------------------------- staging


def prepare_upload_folder(
    output_dir: str | os.PathLike,
    kind: str = "backbone",
    staging_dir: Optional[str | os.PathLike] = None,
    repo_id: Optional[str] = None,
    backbone_repo_id: Optional[str] = None,
) -> Path:
    """Write to ``staging_dir`` exactly the files one Hub repo would receive.

    Args:
        output_dir: a ``run_pretrain.py`` output folder (or, for ``kind="backbone"``, an exported
            backbone folder itself).
        kind: ``"backbone"``: the contents of ``<output_dir>/backbone`` (``config.json``,
            ``model.safetensors``, ``README.md``). ``"pretraining"``: the full model
            (``config.json``, ``model.safetensors``, ``run_args.json``, ``results.json``) and a card
            for it; ``checkpoint-*`` folders and pickles (``training_args.bin``) are skipped.
        staging_dir: destination, replaced whole (written atomically). Default: a new temporary folder.
        repo_id: the repo the folder is for. The card names its repo id in its snippets and
            metadata; a card written for another id is re-rendered for this one.
        backbone_repo_id: ``kind="pretraining"`` only: the backbone repo its card links to
            (default: ``repo_id`` without a ``-pretraining`` suffix).

    Returns:
        The staged folder.

    Raises:
        FileNotFoundError: the backbone folder or a required file is missing.
        ValueError: an unknown ``kind``, or pickled weights (this library writes safetensors only).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir} is not a folder: pass the --output_dir of a run_pretrain.py run")
    staging_dir = Path(staging_dir) if staging_dir is not None else Path(tempfile.mkdtemp(prefix=f"sslviews-{kind}-"))
    if kind == "backbone":
        files, card = _backbone_files_and_card(output_dir, repo_id)
    elif kind == "pretraining":
        files, card = _pretraining_files_and_card(output_dir, repo_id, backbone_repo_id)
    else:
        raise ValueError(f"kind must be 'backbone' or 'pretraining', got {kind!r}")
    check_not_inside(staging_dir, output_dir)
    with atomic_directory(staging_dir, flag=None) as tmp:
        for path in files:
            shutil.copy2(path, tmp / path.name)
        if card is not None:
            (tmp / "README.md").write_text(card)
    return staging_dir


def _backbone_files_and_card(output_dir: Path, repo_id: Optional[str]) -> tuple[list[Path], Optional[str]]:
    if is_backbone_folder(output_dir):
        backbone_dir, run_dir = output_dir, None
    else:
        backbone_dir, run_dir = output_dir / "backbone", output_dir
        if not backbone_dir.is_dir():
            raise FileNotFoundError(
                f"no exported backbone at {backbone_dir}. Export it first: "
                f"python scripts/export_backbone.py --model_name_or_path {output_dir} --output_dir {backbone_dir}"
            )
    _refuse_pickles(backbone_dir)
    for name in BACKBONE_REQUIRED:
        if not (backbone_dir / name).is_file():
            raise FileNotFoundError(
                f"{backbone_dir} has no {name}: it is not a complete backbone export. Re-export it: "
                f"python scripts/export_backbone.py --model_name_or_path <run output_dir> --output_dir {backbone_dir}"
            )
    files = [path for path in sorted(backbone_dir.iterdir()) if path.is_file() and not path.name.startswith(".") and path.name != "README.md"]
    card_path = backbone_dir / "README.md"
    card_text = card_path.read_text() if card_path.is_file() else None
    full_model = run_dir is not None and is_pretraining_folder(run_dir)
    if card_text is not None and (repo_id is None or card_repo_id(ModelCard(card_text)) == repo_id):
        return files, card_text
    if full_model:
        # The card's numbers come from the run's files; re-rendering keeps them and changes the id.
        model = load_pretraining_model(run_dir)
        target = repo_id or (card_repo_id(ModelCard(card_text)) if card_text else None) or default_repo_id(model.config)
        return files, str(render_run_card(model, run_dir, target, existing_card=card_text))
    if card_text is None:
        raise FileNotFoundError(
            f"{backbone_dir} has no README.md model card and no full pretraining model next to it to render one from. "
            f"Re-export with python scripts/export_backbone.py --model_name_or_path <run output_dir> --output_dir {backbone_dir}"
        )
    return files, retarget_card(card_text, repo_id)


def _pretraining_files_and_card(output_dir: Path, repo_id: Optional[str], backbone_repo_id: Optional[str]) -> tuple[list[Path], str]:
    if not is_pretraining_folder(output_dir):
        raise FileNotFoundError(
            f"{output_dir} holds no full pretraining model (a config.json with an sslviews_* model_type): "
            "pass the --output_dir of a run_pretrain.py run or one of its checkpoint-N folders"
        )
    files, skipped = [], []
    for path in sorted(output_dir.iterdir()):
        if path.is_dir():
            if CHECKPOINT_NAME.fullmatch(path.name):
                skipped.append(f"{path.name}/ (intermediate checkpoint with optimizer state)")
            elif path.name == "backbone":
                skipped.append("backbone/ (it is pushed as its own repo)")
            elif not path.name.startswith("."):
                skipped.append(f"{path.name}/")
        elif path.suffix in PICKLE_SUFFIXES:
            skipped.append(f"{path.name} (a pickle: hf_sslviews writes and uploads safetensors only)")
        elif path.name in PRETRAINING_FILES or _SHARD.fullmatch(path.name):
            files.append(path)
        elif not path.name.startswith("."):
            skipped.append(path.name)
    names = {path.name for path in files}
    if "model.safetensors" not in names and "model.safetensors.index.json" not in names:
        pickled = sorted(path.name for path in output_dir.iterdir() if path.suffix in PICKLE_SUFFIXES)
        raise ValueError(
            f"{output_dir} has no model.safetensors{f' (only pickled weights: {pickled})' if pickled else ''}. "
            "hf_sslviews writes safetensors only and does not upload pickles: re-save the model with "
            "model.save_pretrained(dir) (safe_serialization is the default)"
        )
    if skipped:
        logger.info("not uploaded from %s: %s", output_dir, ", ".join(skipped))
    config = json.loads((output_dir / "config.json").read_text())
    repo_id = repo_id or f"{default_repo_id(config)}-pretraining"
    backbone_repo_id = backbone_repo_id or repo_id.removesuffix("-pretraining")
    return files, str(render_pretraining_card(config, repo_id, backbone_repo_id, RunRecord.read(output_dir)))


def _refuse_pickles(folder: Path) -> None:
    pickles = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} contains pickle files {pickles}: hf_sslviews writes and uploads safetensors only "
            "(a pickle runs code when loaded). Remove them, or re-export the folder with scripts/export_backbone.py"
        )


# ---------------------------------------------------------------------------- upload


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: Optional[str] = None,
    private: Optional[bool] = False,
    revision: Optional[str] = None,
    commit_message: str = "Upload with hf_sslviews",
    dry_run_dir: Optional[str | os.PathLike] = None,
) -> CommitInfo | Path:
    """Upload ``folder`` as the whole content of model repo ``repo_id`` (created if needed).

    Args:
        folder: a staged folder (:func:`prepare_upload_folder`). Pickle files are refused; a card
            naming another repo id is re-pointed at ``repo_id`` in the uploaded copy.
        repo_id: ``org/name``.
        token: Hub token; default: ``HF_TOKEN`` or the cached ``hf auth login`` token.
        private: create the repo private (None: the namespace default; an existing repo keeps its visibility).
        revision: branch to push to (created from main if missing); default: main.
        commit_message: the commit's message.
        dry_run_dir: write the folder that would be uploaded there (replaced whole) and upload nothing.

    Returns:
        The ``CommitInfo`` of the upload (``.commit_url``), or the dry-run folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to upload: {folder} is not a folder")
    _refuse_pickles(folder)
    if not any(path.is_file() for path in folder.iterdir()):
        raise FileNotFoundError(f"nothing to upload: {folder} is empty")
    card_path = folder / "README.md"
    card_text = card_path.read_text() if card_path.is_file() else None
    fixed_card = None
    if card_text is not None and card_repo_id(ModelCard(card_text)) != repo_id:
        logger.info("the model card in %s names %s: re-pointing it at %s", folder, card_repo_id(ModelCard(card_text)), repo_id)
        fixed_card = retarget_card(card_text, repo_id)

    if dry_run_dir is not None:
        dry_run_dir = Path(dry_run_dir)
        if dry_run_dir.resolve() == folder.resolve():
            if fixed_card is not None:
                card_path.write_text(fixed_card)
            return dry_run_dir
        check_not_inside(dry_run_dir, folder)
        with atomic_directory(dry_run_dir, flag=None) as tmp:
            _copy_tree(folder, tmp, fixed_card)
        logger.info("dry run: %s holds what would be uploaded to %s; nothing was uploaded", dry_run_dir, repo_id)
        return dry_run_dir

    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(repo_url, "repo_id", None) or repo_id  # "name" alone resolves to the user's namespace
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="sslviews-upload-") as tmp:
        source = folder
        if fixed_card is not None:
            source = Path(tmp) / "upload"
            _copy_tree(folder, source, fixed_card)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(source), commit_message=commit_message, revision=revision, repo_type="model")
    logger.info("pushed %s to %s", folder, getattr(commit, "commit_url", repo_id))
    return commit


def _copy_tree(source: Path, destination: Path, card: Optional[str]) -> None:
    shutil.copytree(source, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    if card is not None:
        (destination / "README.md").write_text(card)


def push_run(
    output_dir: str | os.PathLike,
    hub_model_id: str,
    pretraining_hub_model_id: Optional[str] = None,
    push_pretraining: bool = False,
    token: Optional[str] = None,
    private: Optional[bool] = False,
    revision: Optional[str] = None,
    dry_run_dir: Optional[str | os.PathLike] = None,
) -> dict:
    """Push a run's backbone to ``hub_model_id`` and, optionally, its full model to a second repo.

    Args:
        output_dir: a ``run_pretrain.py`` output folder (or a backbone folder alone).
        hub_model_id: the backbone repo, ``org/name``.
        pretraining_hub_model_id: the full-checkpoint repo; giving it pushes the checkpoint.
        push_pretraining: push the checkpoint to ``pretraining_hub_model_id`` or, when that is
            not given, to ``<hub_model_id>-pretraining``.
        token, private, revision: as in :func:`push_folder`.
        dry_run_dir: upload nothing; write ``<dry_run_dir>/backbone`` (and
            ``<dry_run_dir>/pretraining``) holding exactly what each repo would receive.

    Returns:
        ``{"backbone": CommitInfo or dry-run Path, "pretraining": ... (when pushed)}``.
    """
    if not hub_model_id:
        raise ValueError("pushing needs a repo id: --hub_model_id org/name")
    if pretraining_hub_model_id or push_pretraining:
        pretraining_hub_model_id = pretraining_hub_model_id or f"{hub_model_id}-pretraining"
        if pretraining_hub_model_id == hub_model_id:
            raise ValueError(f"the pretraining checkpoint needs its own repo, not the backbone's {hub_model_id!r}")
    jobs = [("backbone", hub_model_id, "Upload the backbone exported by hf_sslviews")]
    if pretraining_hub_model_id:
        jobs.append(("pretraining", pretraining_hub_model_id, "Upload the full hf_sslviews pretraining checkpoint"))
    pushed = {}
    with tempfile.TemporaryDirectory(prefix="sslviews-staging-") as tmp:
        for kind, repo_id, message in jobs:
            # A dry run stages straight into its folder: the staged folder is what would be uploaded.
            staged = Path(dry_run_dir) / kind if dry_run_dir is not None else Path(tmp) / kind
            prepare_upload_folder(output_dir, kind, staged, repo_id=repo_id, backbone_repo_id=hub_model_id)
            pushed[kind] = push_folder(
                staged, repo_id, token=token, private=private, revision=revision, commit_message=message,
                dry_run_dir=staged if dry_run_dir is not None else None,
            )
    return pushed
