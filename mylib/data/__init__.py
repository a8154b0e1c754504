"""Datasets (raw arrays), the official DeepLab training augmentation, and label colour palettes."""
from .augment import AugmentedDataset, TrainAugmentation
from .datasets import DATASETS, DatasetError, DatasetInfo, SegmentationDataset, get_dataset, train_aug_names
from .palettes import palette

__all__ = ['AugmentedDataset', 'DATASETS', 'DatasetError', 'DatasetInfo', 'SegmentationDataset', 'TrainAugmentation',
           'get_dataset', 'palette', 'train_aug_names']
