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

from huggingface_hub import CommitInfo, HfApi, ModelCard, ModelCardData

from ..atomic import atomic_directory

logger = logging.getLogger("hf_sslviews")

BACKBONE_REQUIRED = ("config.json", "model.safetensors")
# Everything a pretraining repo receives (weights may also be sharded: model-0000x-of-0000y.safetensors).
PRETRAINING_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "run_args.json", "results.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")
_CHECKPOINT = re.compile(r"checkpoint-\d+")


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
    _check_not_inside(staging_dir, output_dir)
    with atomic_directory(staging_dir) as tmp:
        for path in files:
            shutil.copy2(path, tmp / path.name)
        if card is not None:
            (tmp / "README.md").write_text(card)
    return staging_dir


def _backbone_files_and_card(output_dir: Path, repo_id: Optional[str]) -> tuple[list[Path], Optional[str]]:
    if _is_backbone_folder(output_dir):
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
    full_model = run_dir is not None and _is_pretraining_folder(run_dir)
    if card_text is not None and (repo_id is None or card_repo_id(ModelCard(card_text)) == repo_id):
        return files, card_text
    if full_model:
        from .loading import load_pretraining_model

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
    if not _is_pretraining_folder(output_dir):
        raise FileNotFoundError(
            f"{output_dir} holds no full pretraining model (a config.json with an sslviews_* model_type): "
            "pass the --output_dir of a run_pretrain.py run or one of its checkpoint-N folders"
        )
    files, skipped = [], []
    for path in sorted(output_dir.iterdir()):
        if path.is_dir():
            if _CHECKPOINT.fullmatch(path.name):
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
    run_args, results = _read_json(output_dir / "run_args.json"), _read_json(output_dir / "results.json")
    repo_id = repo_id or f"{default_repo_id(config)}-pretraining"
    backbone_repo_id = backbone_repo_id or repo_id.removesuffix("-pretraining")
    return files, str(render_pretraining_card(config, repo_id, backbone_repo_id, run_args, results))


def _is_backbone_folder(path: Path) -> bool:
    config = _read_json(path / "config.json")
    return "architecture" in config and "model_type" not in config


def _is_pretraining_folder(path: Path) -> bool:
    return str(_read_json(path / "config.json").get("model_type", "")).startswith("sslviews_")


def _refuse_pickles(folder: Path) -> None:
    pickles = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} contains pickle files {pickles}: hf_sslviews writes and uploads safetensors only "
            "(a pickle runs code when loaded). Remove them, or re-export the folder with scripts/export_backbone.py"
        )


def _check_not_inside(staging_dir: Path, output_dir: Path) -> None:
    staging, source = staging_dir.resolve(), output_dir.resolve()
    if staging == source or staging in source.parents:
        raise ValueError(f"the staging / dry-run folder {staging_dir} would replace the run folder {output_dir}: pick another folder")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# ---------------------------------------------------------------------------- cards


def card_repo_id(card: ModelCard) -> Optional[str]:
    """The repo id a card was rendered for: its metadata ``model_name``, else its snippets' id."""
    if card.data.model_name:
        return card.data.model_name
    match = re.search(r'from_pretrained\("([^"]+)"', card.text)
    return match.group(1) if match else None


def retarget_card(card_text: str, repo_id: str) -> str:
    """Re-point a rendered card at ``repo_id`` without the model: metadata, title and snippets.

    Used when the full pretraining model is not at hand to re-render the card
    (:func:`render_run_card` does that when it is).
    """
    card = ModelCard(card_text)
    old = card_repo_id(card)
    card.data.model_name = repo_id
    if old and old != repo_id:
        old_title, new_title = f"# {old.split('/')[-1]}", f"# {repo_id.split('/')[-1]}"
        # The id stands alone (in quotes, after "hf-hub:"): never rewrite it inside a longer name.
        standalone = re.compile(rf"(?<![\w./-]){re.escape(old)}(?![\w./-])")
        lines = [new_title if line == old_title else standalone.sub(repo_id, line) for line in card.text.split("\n")]
        card.text = "\n".join(lines)
    return str(card)


def default_repo_id(config) -> str:
    """``<method>-<backbone>``: the local name ``run_pretrain.py`` uses without ``--hub_model_id``."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    return f"{str(get('model_type')).removeprefix('sslviews_')}-{get('backbone')}"


def read_run_metadata(model_dir: str | os.PathLike) -> dict:
    """Preset, data set label, kNN results and training budget of a run or one of its checkpoints.

    From ``run_args.json`` (the run's folder), ``results.json`` (the final model only: a
    ``checkpoint-N`` was not the model the run evaluated) and ``trainer_state.json`` (checkpoints).
    """
    from .cards import dataset_reference

    model_dir = Path(model_dir)
    is_checkpoint = bool(_CHECKPOINT.fullmatch(model_dir.name)) and not (model_dir / "run_args.json").exists()
    run_args = _read_json((model_dir.parent if is_checkpoint else model_dir) / "run_args.json")
    results = {} if is_checkpoint else _read_json(model_dir / "results.json")
    data = run_args.get("data", {})
    dataset_id, dataset = dataset_reference(data.get("dataset_name"), data.get("train_dir")) if data else (None, "not recorded")
    state = _read_json(model_dir / "trainer_state.json")
    if state:
        budget = f"{state.get('global_step')} optimizer steps ({float(state.get('epoch') or 0):.2f} epochs) at batch {state.get('train_batch_size')} per device"
    elif "epoch" in results.get("train", {}):
        budget = f"{float(results['train']['epoch']):.2f} epochs"
    else:
        budget = "not recorded"
    return {
        "preset": run_args.get("model", {}).get("preset") or results.get("preset"),
        "dataset": dataset,
        "dataset_id": dataset_id,
        "knn": results.get("knn"),
        "knn_k": run_args.get("eval", {}).get("knn_k", 20),
        "budget": budget,
    }


def render_run_card(model, model_dir: str | os.PathLike, repo_id: str, existing_card: Optional[str] = None) -> ModelCard:
    """The backbone card of a saved run (``render_model_card`` with what the run's files record).

    Args:
        model: the ``<M>ForPreTraining`` loaded from ``model_dir``.
        model_dir: the run's output folder or one of its ``checkpoint-N`` folders.
        repo_id: the repo id the card names.
        existing_card: a card rendered earlier for this model; its budget line is kept (the output
            folder itself does not record the number of steps).
    """
    from .cards import render_model_card
    from ..methods import get_recipe

    recipe = get_recipe(model.config.model_type.removeprefix("sslviews_"))
    meta = read_run_metadata(model_dir)
    budget = meta["budget"]
    if existing_card:
        match = re.search(r"^- Budget: (.+)$", existing_card, flags=re.MULTILINE)
        budget = match.group(1) if match else budget
    return render_model_card(
        model, recipe, meta["preset"] or recipe.default_preset, repo_id=repo_id, dataset=meta["dataset"],
        budget=budget, knn=meta["knn"], knn_k=meta["knn_k"], dataset_id=meta["dataset_id"], base_model=getattr(model.config, "base_model", None),
    )


PRETRAINING_CARD = """---
{{ card_data }}
---

# {{ model_name }}

The full **{{ method_title }}** pretraining checkpoint behind
[{{ backbone_repo_id }}](https://huggingface.co/{{ backbone_repo_id }}): the {{ backbone }} backbone
together with the method's heads (and target network or queues, when the method has them), saved
by the `hf_sslviews` library to continue or study pretraining.

**For features, fine-tuning or the `image-feature-extraction` pipeline use
[{{ backbone_repo_id }}](https://huggingface.co/{{ backbone_repo_id }})**: it loads with plain
`transformers` and `timm`. This checkpoint does not: its model type `{{ model_type }}` is registered
with the Auto classes only when `hf_sslviews` is imported.

## How to use

```python
import hf_sslviews  # pip install hf-sslviews; registers the sslviews_* model types
from transformers import AutoModelForPreTraining

model = AutoModelForPreTraining.from_pretrained("{{ repo_id }}")   # {{ model_class }}
```

Continue pretraining from it:

```bash
python scripts/run_pretrain.py --method {{ method }} --model_name_or_path {{ repo_id }} --output_dir out
```

Files: `config.json` and `model.safetensors` (the full model), `run_args.json` (the run's script
arguments), `results.json` (training metrics and the kNN evaluation of the exported backbone).

## Evaluation

{% if knn %}Weighted kNN (k={{ knn_k }}, DINO protocol) of the exported backbone, train split -> test split of
{{ dataset }}:

| backbone | kNN top-1 | kNN top-5 |
|---|---|---|
{% for name, scores in knn.items() %}| {{ name }} | {{ "%.2f" | format(100 * scores.top1) }}% | {{ "%.2f" | format(100 * scores.top5) }}% |
{% endfor %}
{% else %}No evaluation was recorded for this run.
{% endif %}
## Training

- Method: {{ method_title }}, preset `{{ preset }}`
- Data: {{ dataset }}

## Citation

```bibtex
{{ citation }}
```

License: Apache-2.0.
"""


def render_pretraining_card(config: dict, repo_id: str, backbone_repo_id: str, run_args: dict, results: dict) -> ModelCard:
    """The card of a full pretraining checkpoint repo: what it is, that it needs ``import hf_sslviews``."""
    from .cards import dataset_reference, knn_eval_results, method_title
    from ..methods import get_recipe

    method = str(config["model_type"]).removeprefix("sslviews_")
    try:
        citation = get_recipe(method).citation
    except (KeyError, ValueError):
        citation = ""
    meta = {"dataset": "not recorded", "dataset_id": None, "preset": None, "knn": results.get("knn"), "knn_k": run_args.get("eval", {}).get("knn_k", 20)}
    if run_args:
        data = run_args.get("data", {})
        meta["dataset_id"], meta["dataset"] = dataset_reference(data.get("dataset_name"), data.get("train_dir"))
        meta["preset"] = run_args.get("model", {}).get("preset")
    dataset = meta["dataset"]
    knn = meta["knn"]
    eval_results = knn_eval_results(knn, meta["knn_k"], meta["dataset_id"], dataset, task_name="kNN classification of the backbone")
    card_data = ModelCardData(
        # Not "transformers": the Hub's transformers snippet (plain AutoModel) cannot load this checkpoint.
        library_name="hf-sslviews",
        license="apache-2.0",
        tags=["self-supervised-learning", "hf-sslviews", method, "pretraining-checkpoint", "timm", "transformers"],
        datasets=[meta["dataset_id"]] if meta["dataset_id"] else None,
        model_name=repo_id,
        eval_results=eval_results,
    )
    return ModelCard.from_template(
        card_data,
        template_str=PRETRAINING_CARD,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        backbone_repo_id=backbone_repo_id,
        backbone=config.get("backbone"),
        method=method,
        method_title=method_title(method),
        model_type=config["model_type"],
        model_class=(config.get("architectures") or ["the method's ForPreTraining model"])[0],
        knn=knn,
        knn_k=meta["knn_k"],
        dataset=dataset,
        preset=meta["preset"] or "not recorded",
        citation=citation,
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
        _check_not_inside(dry_run_dir, folder)
        with atomic_directory(dry_run_dir) as tmp:
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


def export_run_backbone(model_name_or_path: str | os.PathLike, output_dir: Optional[str | os.PathLike] = None, repo_id: Optional[str] = None) -> Path:
    """Export the backbone of a saved run (or ``checkpoint-N``) with a rendered model card.

    Args:
        model_name_or_path: a ``run_pretrain.py`` output folder or one of its ``checkpoint-N``.
        output_dir: the backbone folder to write (replaced whole); default ``<model_name_or_path>/backbone``.
        repo_id: the repo id the card names; default: the id of the card already in ``output_dir``,
            else ``<method>-<backbone>``.
    """
    import hf_sslviews  # noqa: F401  (registers the sslviews_* model types)

    from .export import export_backbone
    from .loading import load_pretraining_model

    source = Path(model_name_or_path)
    output_dir = Path(output_dir) if output_dir is not None else source / "backbone"
    _check_not_inside(output_dir, source)
    if not _is_pretraining_folder(source):
        raise FileNotFoundError(f"{source} holds no hf_sslviews pretraining model (config.json with an sslviews_* model_type)")
    # Strict: an edited config.json or weights missing a part would export a partly random backbone.
    model = load_pretraining_model(source).eval()
    existing = (output_dir / "README.md").read_text() if (output_dir / "README.md").is_file() else None
    repo_id = repo_id or (card_repo_id(ModelCard(existing)) if existing else None) or default_repo_id(model.config)
    # A card in a backbone folder elsewhere may describe another run: keep its budget line only when it is this run's.
    same_run = existing is not None and output_dir.resolve() == (source / "backbone").resolve()
    card = render_run_card(model, source, repo_id, existing_card=existing if same_run else None)
    return export_backbone(model, output_dir, model_card=str(card))
