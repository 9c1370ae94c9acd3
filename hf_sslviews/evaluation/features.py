"""A frozen backbone's features: load it, the evaluation transform it was exported with, extract, cache.

Shared by the kNN and linear-probe evaluations, the kNN monitor during pretraining and the
fine-tuning script. Backbones are either a transformers ``TimmWrapperModel``
(``AutoModel.from_pretrained`` of an exported backbone; its ``pooler_output`` is the feature) or
anything callable returning ``[B, D]`` (a timm model built with ``num_classes=0``, a plain function).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import timm.data
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..data.labels import class_index
from ..modeling import is_method_model_type
from ..safetensors_files import check_safetensors_files
from ..views.decode import ImageDecodeError, decode_image, describe_bad_image

logger = logging.getLogger(__name__)


class NonFiniteFeaturesError(ValueError):
    """A backbone produced NaN or infinite features: every score computed on them would be meaningless."""


def check_finite_features(features: torch.Tensor, what: str = "features") -> None:
    """Raise :class:`NonFiniteFeaturesError` when any row of ``features [N, D]`` holds NaN or inf.

    One NaN feature turns a linear probe's weights to NaN and a kNN vote into noise, and both
    still return a number; the check comes before either.
    """
    finite_rows = torch.isfinite(features).all(dim=-1) if features.ndim == 2 else torch.isfinite(features)
    if not bool(finite_rows.all()):
        bad = int((~finite_rows).sum())
        first = int((~finite_rows).nonzero()[0, 0])
        raise NonFiniteFeaturesError(
            f"{bad} of {features.shape[0]} {what} rows are not finite (NaN or inf; the first is row {first}): the backbone's "
            f"weights are corrupt or its training diverged, and no score on them would mean anything. Check the run's loss "
            f"curve, or evaluate an earlier checkpoint."
        )


def pretrained_cfg_of(source: Any) -> dict:
    """Find timm's ``pretrained_cfg`` (input size, mean, std, crop) in any of its homes."""
    if isinstance(source, Mapping):
        return dict(source.get("pretrained_cfg", source))
    if isinstance(source, (str, Path)):
        config_file = Path(source) / "config.json"
        if not config_file.is_file():
            raise ValueError(f"{str(source)!r} has no config.json; pass an exported backbone folder, a model or a pretrained_cfg dict")
        config = json.loads(config_file.read_text())
        if "pretrained_cfg" not in config:
            raise ValueError(f"{config_file} has no 'pretrained_cfg' entry: it is not a timm-format backbone export")
        return dict(config["pretrained_cfg"])
    for owner in (getattr(source, "config", None), source):  # TimmWrapperModel.config, TimmWrapperConfig, timm model
        cfg = getattr(owner, "pretrained_cfg", None)
        if cfg:
            return dict(cfg)
    raise ValueError(f"cannot find a timm pretrained_cfg on a {type(source).__name__}; pass the exported backbone folder instead")


def eval_transform_for(model_dir_or_pretrained_cfg: Any) -> Callable:
    """timm's evaluation transform (resize, center crop, to tensor, normalise) for a backbone.

    Args:
        model_dir_or_pretrained_cfg: an exported backbone folder (its ``config.json`` holds
            ``pretrained_cfg``), a ``pretrained_cfg`` dict (or a dict holding one), a
            ``TimmWrapperModel`` / ``TimmWrapperConfig``, or a timm model.

    Returns:
        A callable ``PIL.Image (RGB) -> float32 [3, H, W]``.
    """
    pretrained_cfg = pretrained_cfg_of(model_dir_or_pretrained_cfg)
    data_config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg)
    return timm.data.create_transform(**data_config, is_training=False)


def _refuse_pretraining_folder(model_name_or_path: str) -> None:
    """A run folder (or checkpoint) holds the whole pretraining model, which AutoModel does not
    know ("Unrecognized configuration class"): point at its exported backbone instead."""
    config_file = Path(model_name_or_path) / "config.json"
    if not config_file.is_file():
        return
    try:
        model_type = json.loads(config_file.read_text()).get("model_type", "")
    except (json.JSONDecodeError, AttributeError):
        return
    if is_method_model_type(model_type):
        backbone = Path(model_name_or_path) / "backbone"
        hint = (
            f"pass {backbone} (the backbone run_pretrain.py exported)" if (backbone / "config.json").is_file()
            else f"export its backbone first: python scripts/export_backbone.py --model_name_or_path {model_name_or_path} --output_dir {backbone}"
        )
        raise ValueError(f"{model_name_or_path} holds a whole pretraining model ({model_type}), not an exported backbone; {hint}")


def load_backbone(model_name_or_path: str, random_init: bool = False, seed: int = 0) -> torch.nn.Module:
    """Load an exported backbone with ``AutoModel``, or a randomly initialised copy of it.

    The random copy is the kNN floor: the same architecture (from the export's config) with the
    initialisation pretraining starts from. For a timm-format export that is timm's own
    initialisation (``timm.create_model(architecture, **model_args)``), not transformers'
    generic ``_init_weights``, which draws e.g. the patch embedding differently.

    Args:
        model_name_or_path: an exported backbone folder or a Hub id.
        random_init: return the randomly initialised copy instead of the trained weights.
        seed: the ``torch`` seed of the random initialisation.

    Returns:
        The backbone (a ``TimmWrapperModel`` for timm-format exports), in eval mode.
    """
    from transformers import AutoConfig, AutoModel

    _refuse_pretraining_folder(model_name_or_path)
    check_safetensors_files(model_name_or_path)
    if not random_init:
        return AutoModel.from_pretrained(model_name_or_path).eval()
    config = AutoConfig.from_pretrained(model_name_or_path)
    torch.manual_seed(seed)
    if getattr(config, "model_type", None) != "timm_wrapper":
        return AutoModel.from_config(config).eval()
    fresh = timm.create_model(config.architecture, pretrained=False, num_classes=0, **(config.model_args or {}))
    model = AutoModel.from_config(config)
    model.timm_model.load_state_dict(fresh.state_dict())
    return model.eval()


def embed(model: Callable, pixel_values: torch.Tensor) -> torch.Tensor:
    """One batch of features ``[B, D]`` from a ``TimmWrapperModel`` or a callable returning ``[B, D]``.

    Args:
        model: the backbone.
        pixel_values: ``float32 [B, 3, H, W]``.

    Returns:
        The pooled features ``[B, D]`` as returned by the model (device and dtype unchanged).
    """
    output = model(pixel_values)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        output = pooled
    elif not isinstance(output, torch.Tensor) and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"the backbone returned {shape}, expected pooled features [batch, dim]; use a timm model "
            f"with num_classes=0 or a TimmWrapperModel with do_pooling=True"
        )
    return output


def _model_device_dtype(model: Any, device: Union[str, torch.device, None]) -> tuple[torch.device, Optional[torch.dtype]]:
    parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    if device is None:
        device = parameter.device if parameter is not None else "cpu"
    return torch.device(device), (parameter.dtype if parameter is not None and parameter.is_floating_point() else None)


def extract_features(
    model: Callable,
    dataset,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 256,
    transform: Optional[Callable] = None,
    device: Union[str, torch.device, None] = None,
    progress: Optional[str] = None,
    split: Optional[str] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a frozen backbone over a labelled image dataset.

    The model is put in eval mode and run under ``torch.inference_mode()``. Images are decoded
    with :func:`~hf_sslviews.views.decode.decode_image` (any mode -> RGB), so the image column may
    be decoded or ``Image(decode=False)``. Undecodable images are skipped and counted in a
    warning; if every image fails, a ``ValueError`` is raised.

    Args:
        model: a ``TimmWrapperModel``, a timm model with ``num_classes=0``, or any callable
            ``float [B, 3, H, W] -> [B, D]``.
        dataset: a ``datasets.Dataset`` or ``IterableDataset`` with image and label columns.
        image_column: the image column's name.
        label_column: the integer label column's name.
        batch_size: images per forward pass.
        transform: ``PIL.Image -> float32 [3, H, W]``, usually :func:`eval_transform_for`'s;
            required.
        device: where to run the model; defaults to the model's own device.
        progress: show a progress bar with this label (e.g. ``"train features"``); ``None`` for none.
        split: the split's name, for error messages.

    Returns:
        ``features`` float32 ``[N, D]`` and ``labels`` int64 ``[N]``, on the CPU.

    Raises:
        ValueError: a label that is not a class index (``None``, negative, a fraction, a string),
            naming the column and the split; see :func:`~hf_sslviews.data.labels.class_index`.
    """
    if transform is None:
        raise ValueError("extract_features needs a transform; use eval_transform_for(model) for a timm backbone")
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        for column, flag in ((image_column, "--image_column_name"), (label_column, "--label_column_name")):
            if column not in columns:
                raise ValueError(f"column {column!r} not found; the dataset has columns {sorted(columns)}. Pass the right one with {flag}.")
    device, dtype = _model_device_dtype(model, device)
    if isinstance(model, torch.nn.Module):
        model.eval().to(device)
    features, labels, skipped, reasons = [], [], 0, []
    batches = dataset.iter(batch_size=batch_size)
    if progress is not None:
        from tqdm.auto import tqdm

        total = -(-len(dataset) // batch_size) if hasattr(dataset, "__len__") else None
        batches = tqdm(batches, total=total, desc=progress, unit="batch")
    with torch.inference_mode():
        for batch in batches:
            pixels, keep = [], []
            for value, label in zip(batch[image_column], batch[label_column]):
                index = class_index(label, label_column, split)
                try:
                    pixels.append(transform(decode_image(value)))
                    keep.append(index)
                except ImageDecodeError as error:
                    skipped += 1
                    if len(reasons) < 3:
                        reasons.append(describe_bad_image(value, error))
            if not pixels:
                continue
            pixel_values = torch.stack(pixels).to(device=device, dtype=dtype or torch.float32)
            features.append(embed(model, pixel_values).float().cpu())
            labels.append(torch.as_tensor(keep, dtype=torch.int64))
    why = f"; the first: {' | '.join(reasons)}" if reasons else ""
    if skipped:
        logger.warning("extract_features skipped %d undecodable image(s)%s", skipped, why)
    if not features:
        raise ValueError(f"no features extracted: the dataset is empty or none of its {skipped} image(s) could be decoded{why}")
    return torch.cat(features), torch.cat(labels)


# Feature cache: features of a frozen backbone kept as safetensors, keyed by everything they depend on.


def weights_fingerprint(model_name_or_path: str) -> str:
    """Size and modification time of a local export's weight files (a Hub id is returned as is).

    Part of the feature-cache key, so that a retrained backbone in the same folder does not reuse
    stale features.
    """
    path = Path(model_name_or_path)
    if not path.is_dir():
        return str(model_name_or_path)
    stats = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))]
    return f"{path.resolve()}|{'|'.join(stats)}"


def cached_features(
    cache_dir: Union[str, Path, None],
    name: str,
    key: Mapping[str, Any],
    extract: Callable[[], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels from ``<cache_dir>/<name>-<hash of key>.safetensors``, or ``extract()`` them.

    The file holds ``features`` float32 ``[N, D]`` and ``labels`` int64 ``[N]``; its metadata
    records ``key`` (as JSON) so a human can tell what it came from. Any change of ``key`` (model,
    weights, dataset, split, caps, transform) gives another file name, so a cache is never reused
    for something else.

    Args:
        cache_dir: the cache folder, or ``None`` to always extract.
        name: a readable prefix, e.g. the split name.
        key: JSON-serialisable description of everything the features depend on.
        extract: computes ``(features, labels)`` when the file is missing.

    Returns:
        ``(features, labels)`` on the CPU.
    """
    if cache_dir is None:
        return extract()
    key_json = json.dumps(dict(key), sort_keys=True, default=str)
    digest = hashlib.sha256(key_json.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{name}-{digest}.safetensors"
    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            features, labels = handle.get_tensor("features"), handle.get_tensor("labels")
        logger.info("loaded cached features %s from %s", tuple(features.shape), path)
        return features, labels
    features, labels = extract()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"features": features.float().contiguous(), "labels": labels.long().contiguous()}, str(tmp), metadata={"key": key_json})
    tmp.replace(path)  # a crash never leaves a half-written cache under the final name
    logger.info("cached features %s in %s", tuple(features.shape), path)
    return features, labels


__all__ = ["NonFiniteFeaturesError", "cached_features", "check_finite_features", "embed", "eval_transform_for", "extract_features", "load_backbone", "pretrained_cfg_of", "weights_fingerprint"]
