"""Datasets x models x methods -> one results row per (image, model, method), resumable and shardable."""

from .evaluator import evaluate, load_results

__all__ = ["evaluate", "load_results"]
