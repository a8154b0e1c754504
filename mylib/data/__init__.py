"""Datasets (raw arrays), the official DeepLab training augmentation, and each dataset's facts.

The facts (`specs`) import at once; the datasets and the augmentation (OpenCV, SciPy, MXNet) when first
asked for (PEP 562 `__getattr__`).
"""
from ..errors import DatasetError
from .specs import DATASETS, IGNORE_LABEL, DatasetSpec, palette, spec_for

__all__ = ['AugmentedDataset', 'DATASETS', 'DatasetError', 'DatasetSpec', 'IGNORE_LABEL', 'SegmentationDataset',
           'TrainAugmentation', 'get_dataset', 'palette', 'spec_for', 'train_aug_names']


def __getattr__(name):
    if name in ('AugmentedDataset', 'TrainAugmentation'):
        from . import augment
        return getattr(augment, name)
    if name in ('SegmentationDataset', 'get_dataset', 'train_aug_names'):
        from . import datasets
        return getattr(datasets, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
