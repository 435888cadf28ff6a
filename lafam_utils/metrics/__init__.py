"""The paper's six Quantus metrics, batched in torch (``compute``), per-object coverage, and the
metrics that query the model: randomisation sanity checks and faithfulness (``model_metrics``)."""

from .coverage import best_covered, coverage_table, least_covered, object_coverage, two_object_coverage
from .localisation import HIGHER_IS_BETTER, METRIC_NAMES, METRICS, Metric, check_maps_and_masks, compute, select
from .model_metrics import (
    MODEL_METRIC_COLUMNS,
    MODEL_METRICS,
    ModelMetric,
    compute_model_metrics,
    metric_columns,
    metric_settings,
    split_metric_names,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "METRIC_NAMES",
    "MODEL_METRICS",
    "MODEL_METRIC_COLUMNS",
    "Metric",
    "ModelMetric",
    "best_covered",
    "check_maps_and_masks",
    "compute",
    "compute_model_metrics",
    "coverage_table",
    "least_covered",
    "metric_columns",
    "metric_settings",
    "object_coverage",
    "select",
    "split_metric_names",
    "two_object_coverage",
]
