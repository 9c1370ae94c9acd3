"""Render the Hub model card of an exported backbone (``README.md`` with valid metadata)."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Optional

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..model_cards import method_card
from ..modeling import method_of
from .run_folder import RunRecord, read_json


def method_title(method: str) -> str:
    """The method's title as its card spells it (``"MoCo v3"``), else its ``--method`` name."""
    card = method_card(method)
    return card.title if card is not None else method


def method_citation(method: str) -> str:
    """The BibTeX of the method's paper, from its card (empty for a method without one)."""
    card = method_card(method)
    return card.citation if card is not None else ""


def _get(config, key: str, default=None):
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def describe_architecture(config, num_features: Optional[int] = None) -> str:
    """The backbone as built, not as its timm name suggests: the name, the arguments that changed
    it, the input size (and the feature width). ``vit_tiny_patch16_224`` alone reads as ViT-Tiny/16
    at 224 px for a 4-block network with 4 px patches at 28 px."""
    changes = {key: value for key, value in (_get(config, "backbone_kwargs") or {}).items() if key != "pretrained"}
    details = [f"changed to {', '.join(f'{key}={value}' for key, value in sorted(changes.items()))}"] if changes else []
    details.append(f"{_get(config, 'image_size')} px input")
    if num_features:
        details.append(f"{num_features}-d features")
    return f"`{_get(config, 'backbone')}` ({'; '.join(details)})"


def architecture_variant(config) -> str:
    """The changed geometry as a name suffix (``-depth4-patch4-28px``); empty for the timm model as named."""
    kwargs = _get(config, "backbone_kwargs") or {}
    parts = [f"{label}{kwargs[key]}" for key, label in (("depth", "depth"), ("embed_dim", "dim"), ("patch_size", "patch")) if key in kwargs]
    if parts or "img_size" in kwargs:
        parts.append(f"{_get(config, 'image_size')}px")
    return "".join(f"-{part}" for part in parts)


def method_section(method: str, config=None) -> str:
    """The method's own card text (``model_cards/<method>.md``), rendered with the run's ``config``.

    The text is a Jinja template, so sizes a run can change (head widths, patch counts) are
    written from the config the backbone was trained with, not from the paper's defaults. Its
    citation is left out: the card template has the one citation section.
    """
    card = method_card(method)
    if card is None:
        return ""
    return jinja2.Template(card.text, undefined=jinja2.StrictUndefined).render(config=config) if config is not None else card.text


def dataset_reference(dataset_name: Optional[str] = None, train_dir: Optional[str] = None) -> tuple[Optional[str], str]:
    """``(id, label)`` of a training data source: the id for card metadata, the label for people.

    The id is a Hub dataset id (``fashion_mnist`` for the embedded sample and Debian's copy, the
    name itself for a Hub dataset) or ``None`` for an image folder or a local dataset, which have
    no id anyone else could resolve.
    """
    if train_dir:
        return None, f"image folder {Path(train_dir).name}"
    name = dataset_name or "sample"
    if name == "sample":
        return "fashion_mnist", "Fashion-MNIST (hf_sslviews' embedded 3,000-image subset)"
    if name == "fashion_mnist":
        return "fashion_mnist", "Fashion-MNIST"
    if Path(name).expanduser().exists():
        return None, f"local dataset {Path(name).name}"
    return name, name


def knn_eval_results(knn: Optional[dict], knn_k: int, dataset_id: Optional[str], dataset_label: str, task_name: str = "kNN classification") -> Optional[list[EvalResult]]:
    """The ``model-index`` entries of a measured kNN: top-1 and top-5 on the test split.

    ``dataset_type`` must be a dataset id for the Hub to link it; a data set without one (an
    image folder) is typed ``imagefolder``. The readable label goes in ``dataset_name``.
    """
    if not knn or "pretrained" not in knn:
        return None
    return [
        EvalResult(
            task_type="image-classification", task_name=f"{task_name} (k={knn_k}, frozen features)",
            dataset_type=dataset_id or "imagefolder", dataset_name=dataset_label, dataset_split="test",
            metric_type=metric, metric_name=f"kNN {key}", metric_value=round(float(knn["pretrained"][key]), 4),
        )
        for metric, key in (("accuracy", "top1"), ("top_5_accuracy", "top5"))
    ]


def render_model_card(
    model,
    preset: str,
    repo_id: str,
    dataset: str,
    budget: str,
    knn: Optional[dict] = None,
    knn_k: int = 20,
    dataset_id: Optional[str] = None,
    base_model: Optional[str] = None,
    embedding_quality: Optional[dict] = None,
) -> ModelCard:
    """Build the card: metadata (library, tags, pipeline tag, datasets, model-index) and body.

    Args:
        model: the ``<M>ForPreTraining`` whose backbone is exported (its method's card,
            ``model_cards/<method>.md``, gives the title, the method section and the citation).
        preset: the preset name the run used.
        repo_id: the Hub id the card describes (``org/aps-vit-small``) or a local name.
        dataset: the training data set's readable name (:func:`dataset_reference`'s label).
        budget: a line saying how long it trained (epochs, steps, batch).
        knn: ``{"pretrained": {"top1", "top5"}, "random_init": {...}}`` as measured, or None.
        knn_k: neighbours of the kNN evaluation.
        dataset_id: the data set's Hub id for the metadata (``datasets:``, ``model-index``), if it has one.
        base_model: the Hub id of the weights pretraining started from, if any (``base_model:``).
        embedding_quality: the label-free measures at the end of training (``{"step", "rankme",
            "alignment", "uniformity"}``, :mod:`hf_sslviews.evaluation.embedding_quality`), or None.
    """
    config = model.config
    method = method_of(config.model_type)
    card_data = ModelCardData(
        library_name="timm",
        license="apache-2.0",
        pipeline_tag="image-feature-extraction",
        tags=["image-feature-extraction", "self-supervised-learning", "hf-sslviews", method, "timm", "transformers"],
        datasets=[dataset_id] if dataset_id else None,
        base_model=base_model,
        model_name=repo_id,
        eval_results=knn_eval_results(knn, knn_k, dataset_id, dataset),
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(resources.files("hf_sslviews.model_cards") / "template.md"),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        backbone=config.backbone,
        architecture=describe_architecture(config, model.backbone.num_features),
        method_title=method_title(method),
        num_features=model.backbone.num_features,
        image_size=config.image_size,
        image_mean=[round(v, 4) for v in config.image_mean],
        image_std=[round(v, 4) for v in config.image_std],
        knn=knn,
        knn_k=knn_k,
        embedding_quality=embedding_quality,
        dataset=dataset,
        preset=preset,
        budget=budget,
        config_json=json.dumps(config.to_diff_dict(), indent=2, default=str),
        method_section=method_section(method, config),
        citation=method_citation(method),
    )


# ---------------------------------------------------------------------------- cards of a saved run


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
    """``<method>-<backbone><variant>``: the local name ``run_pretrain.py`` uses without ``--hub_model_id``
    (``aps-vit_tiny_patch16_224-depth4-patch4-28px``; see :func:`architecture_variant`)."""
    return f"{method_of(_get(config, 'model_type'))}-{_get(config, 'backbone')}{architecture_variant(config)}"


def read_run_metadata(model_dir: str | os.PathLike) -> dict:
    """Preset, data set label, kNN results and training budget of a run or one of its checkpoints.

    From the run's :class:`~hf_sslviews.publish.run_folder.RunRecord` and, for a checkpoint,
    ``trainer_state.json``.
    """
    model_dir = Path(model_dir)
    record = RunRecord.read(model_dir)
    data = record.data
    dataset_id, dataset = dataset_reference(data.get("dataset_name"), data.get("train_dir")) if data else (None, "not recorded")
    state = read_json(model_dir / "trainer_state.json")
    if state:
        budget = f"{state.get('global_step')} optimizer steps ({float(state.get('epoch') or 0):.2f} epochs) at batch {state.get('train_batch_size')} per device"
    elif "epoch" in record.results.get("train", {}):
        budget = f"{float(record.results['train']['epoch']):.2f} epochs"
    else:
        budget = "not recorded"
    history = record.results.get("embedding_quality") or []
    return {"preset": record.preset, "dataset": dataset, "dataset_id": dataset_id, "knn": record.knn, "knn_k": record.knn_k, "budget": budget,
            "embedding_quality": history[-1] if history else None}


def render_run_card(model, model_dir: str | os.PathLike, repo_id: str, existing_card: Optional[str] = None) -> ModelCard:
    """The backbone card of a saved run (``render_model_card`` with what the run's files record).

    Args:
        model: the ``<M>ForPreTraining`` loaded from ``model_dir``.
        model_dir: the run's output folder or one of its ``checkpoint-N`` folders.
        repo_id: the repo id the card names.
        existing_card: a card rendered earlier for this model; its budget line is kept (the output
            folder itself does not record the number of steps).
    """
    meta = read_run_metadata(model_dir)
    budget = meta["budget"]
    if existing_card:
        match = re.search(r"^- Budget: (.+)$", existing_card, flags=re.MULTILINE)
        budget = match.group(1) if match else budget
    return render_model_card(
        model, meta["preset"] or "not recorded", repo_id=repo_id, dataset=meta["dataset"],
        budget=budget, knn=meta["knn"], knn_k=meta["knn_k"], dataset_id=meta["dataset_id"], base_model=getattr(model.config, "base_model", None),
        embedding_quality=meta["embedding_quality"],
    )




def render_pretraining_card(config: dict, repo_id: str, backbone_repo_id: str, record: RunRecord) -> ModelCard:
    """The card of a full pretraining checkpoint repo: what it is, that it needs ``import hf_sslviews``."""
    method = method_of(config["model_type"])
    meta = {"dataset": "not recorded", "dataset_id": None, "preset": None, "knn": record.knn, "knn_k": record.knn_k}
    if record.arguments:
        meta["dataset_id"], meta["dataset"] = dataset_reference(record.data.get("dataset_name"), record.data.get("train_dir"))
        meta["preset"] = record.arguments.get("model", {}).get("preset")
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
        template_path=str(resources.files("hf_sslviews.model_cards") / "pretraining_checkpoint.md"),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        backbone_repo_id=backbone_repo_id,
        backbone=config.get("backbone"),
        architecture=describe_architecture(config),
        method=method,
        method_title=method_title(method),
        model_type=config["model_type"],
        model_class=(config.get("architectures") or ["the method's ForPreTraining model"])[0],
        knn=knn,
        knn_k=meta["knn_k"],
        dataset=dataset,
        preset=meta["preset"] or "not recorded",
        citation=method_citation(method),
    )
