"""Render the Hub model card of an exported backbone (``README.md`` with valid metadata)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Optional

import jinja2

from huggingface_hub import EvalResult, ModelCard, ModelCardData

def method_title(method: str) -> str:
    """The method's title as its recipe spells it (``"MoCo v3"``), else its ``--method`` name."""
    from ..methods import RECIPES

    recipe = RECIPES.get(method)
    return recipe.title if recipe is not None and recipe.title else method


def method_section(method: str, config=None) -> str:
    """The method's own card text (``model_cards/<method>.md``), rendered with the run's ``config``.

    The text is a Jinja template, so sizes a run can change (head widths, patch counts) are
    written from the config the backbone was trained with, not from the paper's defaults.
    """
    path = resources.files("hf_sslviews.model_cards") / f"{method}.md"
    if not path.is_file():
        return ""
    return jinja2.Template(path.read_text(), undefined=jinja2.StrictUndefined).render(config=config) if config is not None else path.read_text()


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
    recipe,
    preset: str,
    repo_id: str,
    dataset: str,
    budget: str,
    knn: Optional[dict] = None,
    knn_k: int = 20,
    dataset_id: Optional[str] = None,
    base_model: Optional[str] = None,
) -> ModelCard:
    """Build the card: metadata (library, tags, pipeline tag, datasets, model-index) and body.

    Args:
        model: the ``<M>ForPreTraining`` whose backbone is exported.
        recipe: its :class:`~hf_sslviews.methods.base.MethodRecipe`.
        preset: the preset name the run used.
        repo_id: the Hub id the card describes (``org/aps-vit-small``) or a local name.
        dataset: the training data set's readable name (:func:`dataset_reference`'s label).
        budget: a line saying how long it trained (epochs, steps, batch).
        knn: ``{"pretrained": {"top1", "top5"}, "random_init": {...}}`` as measured, or None.
        knn_k: neighbours of the kNN evaluation.
        dataset_id: the data set's Hub id for the metadata (``datasets:``, ``model-index``), if it has one.
        base_model: the Hub id of the weights pretraining started from, if any (``base_model:``).
    """
    config = model.config
    method = recipe.name
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
        method_title=method_title(method),
        num_features=model.backbone.num_features,
        image_size=config.image_size,
        image_mean=[round(v, 4) for v in config.image_mean],
        image_std=[round(v, 4) for v in config.image_std],
        knn=knn,
        knn_k=knn_k,
        dataset=dataset,
        preset=preset,
        budget=budget,
        config_json=json.dumps(config.to_diff_dict(), indent=2, default=str),
        method_section=method_section(method, config),
        citation=recipe.citation,
    )
