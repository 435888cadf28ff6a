"""Models by name (``load_model``), safe checkpoint reading, downloads and the self-supervised releases."""

from .checkpoints import CheckpointError, TrainingRecord, read_checkpoint
from .downloads import DownloadError, fetch
from .predictions import predict
from .registry import load_model

__all__ = ["CheckpointError", "DownloadError", "TrainingRecord", "fetch", "load_model", "predict", "read_checkpoint"]
