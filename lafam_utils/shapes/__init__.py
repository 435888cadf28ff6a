"""The synthetic shapes benchmark: images with exact object masks, and small CNNs trained on them.

``SyntheticShapes`` renders the images (``dataset``); ``ShapesNet`` (``network``) is trained from
the ``RECIPES`` (``training``) and shipped with the package (``shipped``, weights in ``weights/``);
``quality`` measures a model on held-out images, ``retrain`` (``make models``) reproduces the
shipped files.
"""

from .dataset import SHAPE_CLASSES, SyntheticShapes
from .network import ShapesNet
from .shipped import SHAPES_MODELS, ShippedModelError, load_shapes_model
from .training import RECIPES, TrainConfig

__all__ = [
    "RECIPES",
    "SHAPES_MODELS",
    "SHAPE_CLASSES",
    "ShapesNet",
    "ShippedModelError",
    "SyntheticShapes",
    "TrainConfig",
    "load_shapes_model",
]
