"""PASCAL VOC 2012 and ImageNet-S (919 classes, validation) with the paper's subsets.

Items are dicts: ``"image"`` (3, size, size) float, ImageNet-normalised; ``"mask"`` (size, size)
bool, the pixels of the image's object classes; ``"masks"`` (n_classes, size, size) bool, one per
class in the order of ``"labels"`` (class names) and ``"label_ids"`` (the dataset's class ids);
``"id"``. The synthetic benchmark's ``SyntheticShapes`` (``lafam_utils.shapes``) gives the same items.
"""

from .files import DataFileError
from .imagenet_s import ImageNetS, imagenet_categories, imagenet_s_wnids, imagenet_wnids
from .opening import open_dataset, stack_items
from .segmentation import SegmentationDataset
from .voc import VOC2012, VOC_CLASSES

__all__ = [
    "VOC_CLASSES",
    "DataFileError",
    "ImageNetS",
    "SegmentationDataset",
    "VOC2012",
    "imagenet_categories",
    "imagenet_s_wnids",
    "imagenet_wnids",
    "open_dataset",
    "stack_items",
]
