"""``evaluate`` metric modules shipped with hf_sslviews, loaded by path (works offline).

Each sub-folder ``<name>/<name>.py`` is an ``evaluate`` module with its metric card
``<name>/README.md``; :func:`load_metric` loads one without touching the Hub. A module may have
named configurations: ``top_k_accuracy`` is the ``accuracy`` module's ``"top_k"`` configuration.
"""

from __future__ import annotations

from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).parent
# Metric name -> (module folder, configuration name).
CONFIGURATIONS = {"top_k_accuracy": ("accuracy", "top_k")}


def available_metrics() -> list[str]:
    """Names of the metrics shipped here (``["accuracy", "top_k_accuracy"]``)."""
    modules = {path.parent.name for path in METRICS_DIR.glob("*/*.py") if path.stem == path.parent.name}
    return sorted(modules | {name for name, (module, _) in CONFIGURATIONS.items() if module in modules})


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """Load a shipped metric by path: ``evaluate.load(<this folder>/<name>)``.

    Args:
        name: a metric name, ``"accuracy"`` or ``"top_k_accuracy"``.
        **kwargs: passed on to ``evaluate.load`` (``experiment_id``, ``keep_in_memory``, ...).

    Returns:
        The ``evaluate`` module.

    Raises:
        ValueError: if no such metric ships with hf_sslviews.
    """
    if name not in available_metrics():
        raise ValueError(f"no metric {name!r} ships with hf_sslviews; available: {available_metrics()}")
    module, config_name = CONFIGURATIONS.get(name, (name, None))
    if config_name is not None:
        kwargs = {**kwargs, "config_name": config_name}
    return evaluate.load(str(METRICS_DIR / module), **kwargs)


__all__ = ["available_metrics", "load_metric"]
