"""The one home of each dataset's facts: classes and their names, colours, crops, ignore label, scales.

Read by evaluation, prediction, training, export and the zoo (`DATASETS['voc'].eval_crop`, ...).
Sources: the official DeepLab flags and pages (research/deeplab/datasets/data_generator.py for the
classes and the ignore label; g3doc/pascal.md, cityscapes.md, ade20k.md and model_zoo.md for the crops
and the evaluation scales); default roots are gluoncv's (checked in tests/test_data.py).
"""
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Tuple

import numpy as np

from ..errors import DatasetError
from .palettes import ade20k_palette, cityscapes_palette, voc_palette

IGNORE_LABEL = 255  # official ignore_label of every DeepLab dataset (ADE20K's "other", 0, is mapped to it)
MAX_CLASSES = 255  # label 255 is the ignore label, so class ids are 0..254

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')
# the 19 Cityscapes trainIds (cityscapesScripts helpers/labels.py)
CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
                      'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
                      'motorcycle', 'bicycle')
# ADE20K SceneParsing (objectInfo150.csv, the first name of each class) after "other" (0, ignored in training)
ADE20K_CLASSES = (
    'other', 'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass', 'cabinet',
    'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk',
    'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column', 'signboard',
    'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path',
    'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase',
    'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel', 'light',
    'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth', 'television receiver', 'airplane',
    'dirt track', 'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster',
    'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool',
    'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture',
    'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor',
    'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')

# Official evaluation scales of the model zoo tables, written there as [start:step:end] (end included)
SINGLE_SCALE = (1.0,)
VOC_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # [0.5:0.25:1.75], also ADE20K's
CITYSCAPES_SCALES = (0.75, 1.0, 1.25)  # [0.75:0.25:1.25]
DEFAULT_CROP = (513, 513)  # the official crop of VOC and ADE20K, and of the official demo


@dataclass(frozen=True)
class DatasetSpec:
    """What the official code and the data say of one dataset.

    class_names: one per class id. palette: () -> 256 x 3 uint8 colours by label (255 = ignore).
    eval_crop / train_crop: (height, width) of the official evaluation and training crops.
    scales: the official multi-scale evaluation scales. train_split: the official training split.
    default_root, splits, how_to_get: where the data is looked for, its splits, and what to tell a user
    who does not have it.
    """
    name: str
    class_names: Tuple[str, ...]
    palette: Callable[[], np.ndarray]
    eval_crop: Tuple[int, int]
    train_crop: Tuple[int, int]
    scales: Tuple[float, ...]
    train_split: str = 'train'
    default_root: str = None
    splits: Tuple[str, ...] = ()
    how_to_get: str = ''
    ignore_label: int = IGNORE_LABEL

    @property
    def num_classes(self):
        return len(self.class_names)


DATASETS = MappingProxyType({
    # 21 classes: data_generator.py _PASCAL_VOC_SEG_INFORMATION; crops 513x513: g3doc/pascal.md
    'voc': DatasetSpec(
        'voc', VOC_CLASSES, voc_palette, DEFAULT_CROP, DEFAULT_CROP, VOC_SCALES, 'train_aug',
        os.path.expanduser('~/.mxnet/datasets/voc'), ('train', 'val', 'trainval', 'train_aug'),
        "Run gluoncv's scripts/datasets/pascal_voc.py (it puts VOC2012/ and the SBD as VOCaug/ under "
        "~/.mxnet/datasets/voc), or pass --data-root DIR where DIR holds VOC2012/ (and VOCaug/ for train_aug)."),
    # 19 classes: _CITYSCAPES_INFORMATION; eval crop 1025x2049, train crop 769x769: g3doc/cityscapes.md
    'cityscapes': DatasetSpec(
        'cityscapes', CITYSCAPES_CLASSES, cityscapes_palette, (1025, 2049), (769, 769), CITYSCAPES_SCALES, 'train',
        os.path.expanduser('~/.mxnet/datasets/citys'), ('train', 'val'),
        'Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com (login '
        'needed) and unzip both into ~/.mxnet/datasets/citys, or pass --data-root DIR where DIR holds '
        'leftImg8bit/ and gtFine/.'),
    # 151 classes (150 + "other"): _ADE20K_INFORMATION; crops 513x513: g3doc/ade20k.md and model_zoo.md
    # (another page says 1601 for evaluation: the crop grows to fit larger images, --crop-size overrides)
    'ade20k': DatasetSpec(
        'ade20k', ADE20K_CLASSES, ade20k_palette, DEFAULT_CROP, DEFAULT_CROP, VOC_SCALES, 'train',
        os.path.expanduser('~/.mxnet/datasets/ade'), ('train', 'val'),
        "Run gluoncv's scripts/datasets/ade20k.py (it unzips ADEChallengeData2016.zip into ~/.mxnet/datasets/ade), "
        'or pass --data-root DIR where DIR holds ADEChallengeData2016/.'),
})

FOLDER_HOW_TO = ('A folder dataset has the VOC layout: DIR/JPEGImages/<id>.jpg (or .png), '
                 'DIR/SegmentationClass/<id>.png (index PNGs: pixel value = class, 255 = ignore) and '
                 'DIR/ImageSets/Segmentation/<split>.txt (one id per line).')


def folder_spec(num_classes):
    """The spec of your own data with `num_classes` classes: 'class <i>' names, the VOC colours, the VOC crops."""
    check_num_classes(num_classes)
    return DatasetSpec('folder', tuple('class %d' % index for index in range(num_classes)), voc_palette,
                       DEFAULT_CROP, DEFAULT_CROP, SINGLE_SCALE, how_to_get=FOLDER_HOW_TO)


def check_num_classes(num_classes):
    """DatasetError unless `num_classes` can be the classes of a dataset."""
    if num_classes is None:
        raise DatasetError('your own data (a folder dataset) needs its number of classes: --num-classes N')
    if not 1 <= num_classes <= MAX_CLASSES:
        raise DatasetError('num_classes must be in 1..%d (label %d means ignore), got %r'
                           % (MAX_CLASSES, IGNORE_LABEL, num_classes))


def spec_for(dataset=None, num_classes=None):
    """The DatasetSpec of `dataset` ('voc', 'cityscapes', 'ade20k' or 'folder' with `num_classes`).

    Without a dataset name (weights whose dataset nobody recorded), the known dataset with
    `num_classes` classes (21 VOC, 19 Cityscapes, 151 ADE20K), else a folder spec of that many classes.
    """
    if dataset == 'folder':
        return folder_spec(num_classes)
    if dataset is not None:
        if dataset not in DATASETS:
            raise DatasetError('unknown dataset %r: choose one of %s, or folder' % (dataset, ', '.join(DATASETS)))
        spec = DATASETS[dataset]
        if num_classes is not None and num_classes != spec.num_classes:
            raise DatasetError('%s has %d classes, not %d' % (dataset, spec.num_classes, num_classes))
        return spec
    for spec in DATASETS.values():
        if spec.num_classes == num_classes:
            return spec
    return folder_spec(num_classes)


def palette(num_classes):
    """256 x 3 uint8 colours for label maps of `num_classes` classes: those of `spec_for(num_classes=...)`."""
    return spec_for(num_classes=num_classes).palette()
