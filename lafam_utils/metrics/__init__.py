"""The paper's six Quantus metrics, batched in torch (``compute``), and per-object coverage."""

from .coverage import best_covered, coverage_table, least_covered, object_coverage, two_object_coverage
from .localisation import HIGHER_IS_BETTER, METRIC_NAMES, METRICS, Metric, check_maps_and_masks, compute, select

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "METRIC_NAMES",
    "Metric",
    "best_covered",
    "check_maps_and_masks",
    "compute",
    "coverage_table",
    "least_covered",
    "object_coverage",
    "select",
    "two_object_coverage",
]
