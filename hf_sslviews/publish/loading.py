"""Strict loading of a full pretraining checkpoint (model, heads, target network, queues).

``AutoModelForPreTraining.from_pretrained`` only *reports* unexpected and missing weights
(a missing tensor is silently re-initialised at random), and a ``config.json`` whose
``model_type`` was edited to another registered architecture loads that architecture with
random weights. :func:`load_pretraining_model` is the strict door for checkpoints this
library writes:

- the config must name one of hf_sslviews' methods (``model_type`` ``"sslviews_<method>"``);
  the config class then validates every field (a negative temperature or an unknown backbone
  raises its own ``ValueError``);
- only ``model.safetensors`` is read (``use_safetensors=True``: a pickled ``.bin`` is never
  unpickled) and ``trust_remote_code`` is off (nothing here needs code from the checkpoint);
- with ``strict=True`` (default) any unexpected, missing or wrongly shaped tensor raises a
  ``ValueError`` listing them, instead of a model with re-initialised parts.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Union

from safetensors import SafetensorError
from transformers import AutoModelForPreTraining, PretrainedConfig

from ..modeling import PRETRAINING_MODELS
from ..safetensors_files import check_safetensors_files

_SHOWN = 8  # names listed per kind of problem; the rest are counted
# Written by other transformers versions into every config.json; not fields of a method.
_LEGACY_CONFIG_KEYS = {"torch_dtype", "transformers_version", "_attn_implementation_autoset", "use_cache", "tie_word_embeddings"}


def _known_model_types() -> list[str]:
    return sorted(PRETRAINING_MODELS)


def _listing(names) -> str:
    names = sorted(str(name) for name in names)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _check_config_keys(config_file: Path, model_type: str) -> None:
    """A key the config class does not have (a typo such as ``loss_temprature``) is an error.

    ``from_pretrained`` would keep it as an unused attribute and build the model with the
    default value of the field meant.
    """
    config_class = PRETRAINING_MODELS[model_type][0]
    known = set(config_class().to_dict()) | set(vars(PretrainedConfig())) | _LEGACY_CONFIG_KEYS
    unknown = sorted(set(json.loads(config_file.read_text())) - known)
    if unknown:
        fields = sorted(set(config_class().to_dict()) - set(PretrainedConfig().to_dict()))
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise ValueError(
            f"{config_file} has keys that {config_class.__name__} does not know: {', '.join(hints)}. An edited or "
            f"misspelled field would be ignored and its default used; fix the key, remove it, or pass strict=False."
        )


def load_pretraining_model(path: Union[str, os.PathLike], strict: bool = True, **kwargs):
    """Load a pretraining checkpoint saved by ``save_pretrained`` / ``Trainer.save_model``.

    Args:
        path: folder holding ``config.json`` and ``model.safetensors`` (a local folder or,
            through ``from_pretrained``, a Hub repository id).
        strict: raise when the weights do not match the architecture the config describes
            (unexpected, missing or wrongly shaped tensors). ``False`` reproduces
            ``from_pretrained``'s lenient behaviour (a logged report only).
        **kwargs: passed to ``AutoModelForPreTraining.from_pretrained`` (``torch_dtype``,
            ``revision``, ...). ``trust_remote_code`` and ``use_safetensors`` are fixed.

    Returns:
        The ``<Method>ForPreTraining`` model.

    Raises:
        ValueError: the config is not an hf_sslviews method config, one of its fields is invalid,
            or (``strict``) the weights do not match it. The message names the problem and the fix.
    """
    for fixed in ("trust_remote_code", "use_safetensors", "output_loading_info"):
        if fixed in kwargs:
            raise ValueError(f"load_pretraining_model sets {fixed} itself; do not pass it")
    config_file = Path(path) / "config.json"
    check_safetensors_files(path)
    if config_file.is_file():
        try:
            model_type = json.loads(config_file.read_text()).get("model_type")
        except json.JSONDecodeError as error:
            raise ValueError(f"{config_file} is not valid JSON ({error}); the checkpoint is damaged, save it again") from error
        if model_type not in _known_model_types():
            raise ValueError(
                f"{config_file} has model_type {model_type!r}, which is not an hf_sslviews method "
                f"(expected one of {_known_model_types()}). The config was edited or the folder holds another "
                f"model (an exported backbone loads with transformers.AutoModel instead); restore the config "
                f"that was saved with the weights."
            )
        if strict:
            _check_config_keys(config_file, model_type)
    try:
        model, info = AutoModelForPreTraining.from_pretrained(
            path,
            trust_remote_code=False,
            use_safetensors=True,
            output_loading_info=True,
            ignore_mismatched_sizes=strict,  # so that every mismatch is collected and reported below
            **kwargs,
        )
    except SafetensorError as error:
        raise ValueError(
            f"{Path(path) / 'model.safetensors'} cannot be read ({error}): the file is truncated or damaged. Restore it, or "
            f"load an earlier checkpoint-N of the run."
        ) from error
    except (OSError, EnvironmentError) as error:
        raise ValueError(
            f"could not load a safetensors checkpoint from {str(path)!r}: {str(error).rstrip('.')}. hf_sslviews reads only "
            f"model.safetensors (never pickled .bin files); save the model with save_pretrained."
        ) from error
    if strict:
        problems = []
        if info.get("unexpected_keys"):
            problems.append(f"unexpected tensors not in the model: {_listing(info['unexpected_keys'])}")
        if info.get("missing_keys"):
            problems.append(f"tensors missing from the checkpoint: {_listing(info['missing_keys'])}")
        if info.get("mismatched_keys"):
            shapes = [f"{name} {tuple(ckpt)} in the file vs {tuple(model_shape)} from config.json" for name, ckpt, model_shape in info["mismatched_keys"]]
            problems.append(f"tensors whose shape does not match config.json: {_listing(shapes)}")
        if problems:
            raise ValueError(
                f"the checkpoint in {str(path)!r} does not match the {type(model).__name__} its config.json describes: "
                + "; ".join(problems)
                + ". The config or the weights were changed after saving, or they come from different runs: restore "
                "the config.json saved with model.safetensors (or pass strict=False to load the matching part at your own risk)."
            )
    return model


__all__ = ["load_pretraining_model"]
