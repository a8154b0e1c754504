"""Datasets (raw arrays), the official DeepLab training augmentation, and each dataset's facts."""
from ..errors import DatasetError
from .augment import AugmentedDataset, TrainAugmentation
from .datasets import SegmentationDataset, get_dataset, train_aug_names
from .specs import DATASETS, IGNORE_LABEL, DatasetSpec, palette, spec_for

__all__ = ['AugmentedDataset', 'DATASETS', 'DatasetError', 'DatasetSpec', 'IGNORE_LABEL', 'SegmentationDataset',
           'TrainAugmentation', 'get_dataset', 'palette', 'spec_for', 'train_aug_names']
