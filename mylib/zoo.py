"""The official DeepLab model zoo by name: every release downloaded once, converted once, loaded.

    from mylib import zoo
    net = zoo.get_model('xception65_coco_voc_trainaug')        # DeepLab v3+ on Xception-65, 21 classes
    net = zoo.get_model('mobilenetv3_large_cityscapes_trainfine')
    print(zoo.format_release_list())                             # what --list-models prints

Files are cached in MXNet's model folder, `$MXNET_HOME/models/deeplab` (by default
`~/.mxnet/models/deeplab`): the release archive as published, and `<name>.params` + `<name>.json`
converted from it (the conversion reads the checkpoint with TensorFlow, once). `$DEEPLAB_GLUON_MIRROR`
(a base URL, `file://` too) fetches the same archive file names from a mirror instead.

The facts of the releases (archive URLs, published results and their evaluation settings, sizes) are
those of the official pages of tensorflow/models: research/deeplab/g3doc/model_zoo.md (its newest stored
version, commit d318246c, with the MobileNet-v3 and EdgeTPU tables), research/deeplab/g3doc/quantize.md
for the 8-bit releases, and research/slim/nets/mobilenet/README.md for the MobileNet-v2 ImageNet
checkpoints that model_zoo.md refers to; the dataset facts are from research/deeplab/datasets/
data_generator.py and the dataset pages beside model_zoo.md (mylib.data.DATASETS).
"""
import gzip
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import OrderedDict, namedtuple
from contextlib import contextmanager

import mxnet as mx
from tqdm import tqdm

from converters.convert import CONVERTER_VERSION, convert

from .data.specs import CITYSCAPES_SCALES, DATASETS, SINGLE_SCALE, VOC_SCALES
from .errors import ConversionError, ZooError
from .fileio import atomic_path, sha256_of, write_json
from .models.spec import CLASSIFICATION, FAMILIES, SEGMENTATION
from .weights import load_model, metadata_path

logger = logging.getLogger(__name__)

MIRROR_VARIABLE = 'DEEPLAB_GLUON_MIRROR'
USER_AGENT = 'deeplab-gluon (mylib.zoo)'
CHUNK = 1 << 20
RETRY_HTTP_CODES = (408, 429, 500, 502, 503, 504)  # answers that may go away if asked again


class Release(namedtuple('Release', ['name', 'url', 'model_variant', 'depth_multiplier', 'task', 'num_classes',
                                     'dataset', 'results', 'size', 'notes', 'archive_size', 'sha256'],
                         defaults=('', (), None, None))):
    """An official release archive and what it holds.

    model_variant: the official `--model_variant` (a key of mylib.models.spec.FAMILIES); depth_multiplier:
    the official `--depth_multiplier` (MobileNets; 1.0 elsewhere). task: 'segmentation' (DeepLab) or
    'classification' (an ImageNet checkpoint, to start training from). num_classes: the classes of its
    logits; None where nobody published them (the converted checkpoint's own are then taken).
    dataset: 'voc', 'cityscapes', 'ade20k' (whose facts, such as the evaluation crop, are in
    mylib.data.DATASETS) or 'imagenet'. results: the published Result(s), with their evaluation settings.
    size: the archive size as the page rounds it ('439MB'). notes: what a user needs that the checkpoint
    does not record. archive_size (bytes) and sha256 (hex) of the archive: None where not published
    (the pages give only rounded sizes).
    """
    __slots__ = ()

    @property
    def family(self):
        """'xception', 'resnet' or 'mobilenet'."""
        return FAMILIES[self.model_variant]

    @property
    def variant(self):
        """The model variant with its depth multiplier where not 1: 'mobilenet_v2 x0.5'."""
        return self.model_variant + ('' if self.depth_multiplier == 1.0 else ' x%g' % self.depth_multiplier)


Result = namedtuple('Result', ['output_stride', 'scales', 'flip', 'miou', 'split', 'pixel_accuracy'],
                    defaults=(None,))
Result.__doc__ = """One published evaluation: mIoU (percent) on `split` ('val' or 'test') at `output_stride`
with the input `scales` and left-right `flip` averaged; pixel_accuracy (percent) where published."""

_MODELS = 'http://download.tensorflow.org/models/'  # the links of model_zoo.md, as published (http)
_MOBILENET_V2 = 'https://storage.googleapis.com/mobilenet_v2/checkpoints/'  # slim's mobilenet/README.md
XCEPTION71_TRAINVAL_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # model_zoo.md: [0.75:0.25:2]
IMAGENET_CLASSES = (1000, 1001)  # ImageNet logits: 1000 classes, or 1001 with class 0 = background

# What a checkpoint does not record, said in the notes of the releases it concerns.
_TRAINVAL = ('trained on train_aug + trainval: the val images were seen in training; the published result is on '
             'the test server')
_QUANTIZED = ('quantization-aware (8-bit) release, quantize.md: the checkpoint holds float weights, converted and '
              'run here in float32; the published mIoU is that of the 8-bit model (official quantized inference is '
              'single scale only), so float inference differs slightly; the archive\'s .tflite is not used')
_IMAGENET_1001 = 'ImageNet classifier, 1001 classes (0 = background), to start training from; no segmentation head'
_UNPUBLISHED_CLASSES = ('ImageNet classifier, to start training from; its number of classes is not published: '
                        'the converted checkpoint\'s own is taken')


def _single(output_stride, miou, split='val', pixel_accuracy=None):
    """A result of the tables' single-scale protocol: scale 1.0, no flip."""
    return Result(output_stride, SINGLE_SCALE, False, miou, split, pixel_accuracy)


def _multi(output_stride, scales, miou, split='val', pixel_accuracy=None):
    """A result of the tables' multi-scale protocol: the scales averaged with left-right flips."""
    return Result(output_stride, scales, True, miou, split, pixel_accuracy)


def _segmentation(name, archive, variant, dataset, results, size, depth_multiplier=1.0, notes=()):
    return Release(name, _MODELS + archive, variant, depth_multiplier, SEGMENTATION, DATASETS[dataset].num_classes,
                   dataset, tuple(results), size, tuple(notes))


def _classifier(name, url, variant, num_classes, size, depth_multiplier=1.0, notes=()):
    return Release(name, url, variant, depth_multiplier, CLASSIFICATION, num_classes, 'imagenet', (), size,
                   tuple(notes))


_VOVNET = 'https://www.dropbox.com/s/'  # VoVNet-DeepLabV3 README.md's links
_TORCHVISION = 'https://download.pytorch.org/models/'
_VOVNET_NOTE = ('VoVNet-DeepLabV3 (stigma0617), a PyTorch training checkpoint; its evaluation pads each image to '
                '513x513 with the mean colour, as evaluate.py does by default')
_TORCHVISION_NOTE = ('torchvision DeepLabV3 (COCO_WITH_VOC_LABELS_V1: 21 VOC classes, trained on COCO); its published '
                     'result is on COCO val2017 (VOC categories), evaluated with the images resized to 520 on the '
                     'short side')
# Hosts whose links open a page for a person, not the file: the zoo says where to get the file instead.
MANUAL_HOSTS = ('pan.baidu.com',)


def _pytorch(name, url, variant, dataset, results, notes):
    """A PyTorch DeepLab release: its .pth at the original host; it converts with converters/torch_mapping."""
    return Release(name, url, variant, 1.0, SEGMENTATION, DATASETS[dataset].num_classes, dataset, tuple(results), '',
                   tuple(notes))


def _mobilenet_v2_imagenet(multiplier, top1, top5):
    """slim's MobileNet-v2 ImageNet checkpoint `mobilenet_v2_<multiplier>_224` (mobilenet_v2.py: 1001 classes)."""
    name = 'mobilenet_v2_%s_224' % multiplier
    return _classifier(name, _MOBILENET_V2 + name + '.tgz', 'mobilenet_v2', 1001, '', float(multiplier), (
        _IMAGENET_1001, 'trained at 224x224: ImageNet top-1 %.1f%%, top-5 %.1f%% (slim mobilenet/README.md)'
        % (top1, top5)))


RELEASES = OrderedDict((release.name, release) for release in (
    # --- PASCAL VOC 2012 (model_zoo.md, "DeepLab models trained on PASCAL VOC 2012"; 21 classes:
    # data_generator.py _PASCAL_VOC_SEG_INFORMATION). MobileNet-v2: no ASPP, no decoder (the checkpoint says so).
    # model_zoo.md: 70.19% (val) at OS16 [1.0] no flip; "7.6MB"; Depth-Multiplier = 0.5.
    _segmentation('mobilenetv2_dm05_coco_voc_trainaug', 'deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz',
                  'mobilenet_v2', 'voc', [_single(16, 70.19)], '7.6MB', 0.5),
    # model_zoo.md: 71.83% (test) at OS8 [1.0] no flip, the only published result; "7.6MB".
    _segmentation('mobilenetv2_dm05_coco_voc_trainval', 'deeplabv3_mnv2_dm05_pascal_trainval_2018_10_01.tar.gz',
                  'mobilenet_v2', 'voc', [_single(8, 71.83, 'test')], '7.6MB', 0.5, [_TRAINVAL]),
    # model_zoo.md: 75.32% (val) at OS16 [1.0] no flip, 77.33 (val) at OS8 [0.5:0.25:1.75] with flip; "23MB".
    _segmentation('mobilenetv2_coco_voc_trainaug', 'deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz',
                  'mobilenet_v2', 'voc', [_single(16, 75.32), _multi(8, VOC_SCALES, 77.33)], '23MB'),
    # model_zoo.md: 80.25% (test) at OS8 [0.5:0.25:1.75] with flip, the only published result; "23MB".
    _segmentation('mobilenetv2_coco_voc_trainval', 'deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz',
                  'mobilenet_v2', 'voc', [_multi(8, VOC_SCALES, 80.25, 'test')], '23MB', notes=[_TRAINVAL]),
    # model_zoo.md: 82.20% (val) at OS16 [1.0] no flip, 83.58% (val) at OS8 [0.5:0.25:1.75] with flip; "439MB".
    _segmentation('xception65_coco_voc_trainaug', 'deeplabv3_pascal_train_aug_2018_01_04.tar.gz',
                  'xception_65', 'voc', [_single(16, 82.20), _multi(8, VOC_SCALES, 83.58)], '439MB'),
    # model_zoo.md: 87.80% (test) at OS8 [0.5:0.25:1.75] with flip, the only published result; "439MB".
    _segmentation('xception65_coco_voc_trainval', 'deeplabv3_pascal_trainval_2018_01_04.tar.gz',
                  'xception_65', 'voc', [_multi(8, VOC_SCALES, 87.80, 'test')], '439MB', notes=[_TRAINVAL]),
    # quantize.md, "Quantized model on PASCAL VOC": 69.65% (val) at OS16 [1.0] no flip, Quantize Yes; folder
    # "8.2MB" (TFLite 751.1KB).
    _segmentation('mobilenetv2_dm05_coco_voc_trainaug_8bit',
                  'deeplabv3_mnv2_dm05_pascal_train_aug_8bit_2019_04_26.tar.gz',
                  'mobilenet_v2', 'voc', [_single(16, 69.65)], '8.2MB', 0.5, [_QUANTIZED]),
    # quantize.md: 74.26% (val) at OS16 [1.0] no flip, Quantize Yes; folder "24MB" (TFLite 2.2MB).
    _segmentation('mobilenetv2_coco_voc_trainaug_8bit', 'deeplabv3_mnv2_pascal_train_aug_8bit_2019_04_26.tar.gz',
                  'mobilenet_v2', 'voc', [_single(16, 74.26)], '24MB', notes=[_QUANTIZED]),

    # --- Cityscapes (model_zoo.md, "DeepLab models trained on Cityscapes"; 19 classes: _CITYSCAPES_INFORMATION).
    # model_zoo.md: 70.71% (val) at OS16 [1.0] no flip, 73.57% (val) at OS8 [0.75:0.25:1.25] with flip; "23MB".
    _segmentation('mobilenetv2_coco_cityscapes_trainfine', 'deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz',
                  'mobilenet_v2', 'cityscapes', [_single(16, 70.71), _multi(8, CITYSCAPES_SCALES, 73.57)], '23MB'),
    # model_zoo.md: 72.41% (val) at OS32 [1.0] no flip; "17MB". Its flags (image pooling window of 769x769
    # crops, stride 4,5; sum-merge decoder at OS8; ...) are the MobileNet-v3 flags of model_zoo.md, recorded by
    # the converter (mylib.models.spec.RELEASE_FLAGS).
    _segmentation('mobilenetv3_large_cityscapes_trainfine',
                  'deeplab_mnv3_large_cityscapes_trainfine_2019_11_15.tar.gz',
                  'mobilenet_v3_large_seg', 'cityscapes', [_single(32, 72.41)], '17MB'),
    # model_zoo.md: 68.99% (val) at OS32 [1.0] no flip; "5MB".
    _segmentation('mobilenetv3_small_cityscapes_trainfine',
                  'deeplab_mnv3_small_cityscapes_trainfine_2019_11_15.tar.gz',
                  'mobilenet_v3_small_seg', 'cityscapes', [_single(32, 68.99)], '5MB'),
    # model_zoo.md, "EdgeTPU-DeepLab models on Cityscapes" (--model_variant=mobilenet_edgetpu, the MobileNet-v2
    # flags, no decoder; the slim one --depth_multiplier=0.75 --aspp_convs_filters=128): 70.6% (val) at OS32 and
    # 74.1% (val) at OS16, [1.0]; slim 70.0% / 73.2%. No file size is published.
    _segmentation('EdgeTPU-DeepLab', 'edgetpu-deeplab_2020_03_09.tar.gz', 'mobilenet_edgetpu', 'cityscapes',
                  [_single(32, 70.6), _single(16, 74.1)], ''),
    _segmentation('EdgeTPU-DeepLab-slim', 'edgetpu-deeplab-slim_2020_03_09.tar.gz', 'mobilenet_edgetpu', 'cityscapes',
                  [_single(32, 70.0), _single(16, 73.2)], '', depth_multiplier=0.75),
    # model_zoo.md: 78.79% (val) at OS16 [1.0] no flip, 80.42% (val) at OS8 [0.75:0.25:1.25] with flip; "439MB".
    _segmentation('xception65_cityscapes_trainfine', 'deeplabv3_cityscapes_train_2018_02_06.tar.gz',
                  'xception_65', 'cityscapes', [_single(16, 78.79), _multi(8, CITYSCAPES_SCALES, 80.42)], '439MB'),
    # model_zoo.md: Xception-71 + dense prediction cell, 80.31% (val) at OS16 [1.0] no flip; "445MB".
    _segmentation('xception71_dpc_cityscapes_trainfine', 'deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz',
                  'xception_71', 'cityscapes', [_single(16, 80.31)], '445MB'),
    # model_zoo.md: 82.66% (test) at OS8 [0.75:0.25:2] with flip, the only published result; "446MB";
    # pretrained on "Cityscapes trainval_fine and coarse set".
    _segmentation('xception71_dpc_cityscapes_trainval',
                  'deeplab_cityscapes_xception71_trainvalfine_2018_09_08.tar.gz',
                  'xception_71', 'cityscapes', [_multi(8, XCEPTION71_TRAINVAL_SCALES, 82.66, 'test')], '446MB',
                  notes=['trained on trainval_fine and the coarse set: the val images were seen in training; the '
                         'published result is on the test server']),

    # --- ADE20K (model_zoo.md, "DeepLab models trained on ADE20K"; 151 classes (150 + "ignore" 0):
    # data_generator.py _ADE20K_INFORMATION).
    # model_zoo.md: 32.04% mIoU and 75.41% pixel accuracy (val) at OS16 [1.0] no flip; "24.8MB"; decoder at
    # OS4; "Input size 257x257": inputs resized so that the longest side is 257.
    _segmentation('mobilenetv2_ade20k_train', 'deeplabv3_mnv2_ade20k_train_2018_12_03.tar.gz',
                  'mobilenet_v2', 'ade20k', [_single(16, 32.04, pixel_accuracy=75.41)], '24.8MB',
                  notes=['evaluated on inputs resized so that their longest side is 257 (a 257x257 input, '
                         'model_zoo.md), not the 513 of the Xception-65 release']),
    # model_zoo.md: 45.65% mIoU and 82.52% pixel accuracy (val) at OS8 [0.5:0.25:1.75] with flip, the only
    # published result; "439MB"; input size 513x513.
    _segmentation('xception65_ade20k_train', 'deeplabv3_xception_ade20k_train_2018_05_29.tar.gz',
                  'xception_65', 'ade20k', [_multi(8, VOC_SCALES, 45.65, pixel_accuracy=82.52)], '439MB'),

    # --- ImageNet (model_zoo.md, "Checkpoints pretrained on ImageNet", named as in its newest version; the
    # older names, such as xception_65, are ALIASES). No accuracy published, no evaluation crop.
    # model_zoo.md: xception_41_imagenet "288MB".
    _classifier('xception_41_imagenet', _MODELS + 'xception_41_2018_05_09.tar.gz', 'xception_41', None, '288MB',
                notes=[_UNPUBLISHED_CLASSES]),
    # model_zoo.md: xception_65_imagenet "447MB". 1001 classes (1000 + background 0): not in model_zoo.md;
    # from ../shared/reference/README.md, and checked against the checkpoint on conversion.
    _classifier('xception_65_imagenet', _MODELS + 'deeplabv3_xception_2018_01_04.tar.gz', 'xception_65', 1001,
                '447MB', notes=[_IMAGENET_1001]),
    # model_zoo.md: xception_71_imagenet "474MB".
    _classifier('xception_71_imagenet', _MODELS + 'xception_71_2018_05_09.tar.gz', 'xception_71', None, '474MB',
                notes=[_UNPUBLISHED_CLASSES]),
    # model_zoo.md: resnet_v1_50_beta_imagenet "274MB"; resnet_v1_101_beta_imagenet "477MB".
    _classifier('resnet_v1_50_beta_imagenet', _MODELS + 'resnet_v1_50_2018_05_04.tar.gz', 'resnet_v1_50_beta', None,
                '274MB', notes=[_UNPUBLISHED_CLASSES]),
    _classifier('resnet_v1_101_beta_imagenet', _MODELS + 'resnet_v1_101_2018_05_04.tar.gz', 'resnet_v1_101_beta',
                None, '477MB', notes=[_UNPUBLISHED_CLASSES]),
    # model_zoo.md refers mobilenet_v2 to slim's MobileNet-V2: research/slim/nets/mobilenet/README.md, "Mobilenet V2
    # Imagenet Checkpoints", the 224x224 checkpoint of each depth multiplier (top-1, top-5 as published there; no
    # sizes published). The checkpoints at the lower resolutions (96-192) of the same table are not listed.
    _mobilenet_v2_imagenet('1.4', 75.0, 92.5),
    _mobilenet_v2_imagenet('1.3', 74.4, 92.1),
    _mobilenet_v2_imagenet('1.0', 71.8, 91.0),
    _mobilenet_v2_imagenet('0.75', 69.8, 89.6),
    _mobilenet_v2_imagenet('0.5', 65.4, 86.4),
    _mobilenet_v2_imagenet('0.35', 60.3, 82.9),
    # EdgeTPU-DeepLab's backbone, slim mobilenet/README.md "Edge TPU checkpoints": MobilenetEdgeTPU dm=1 (8-bit),
    # top-1 75.6%, mobilenet_edgetpu_224_1.0.tgz (linked at storage.cloud.google.com, which asks a browser to sign
    # in: the same public object at storage.googleapis.com). Its dm=0.75 checkpoint keeps Conv_1 at 1280 channels
    # (mobilenet_v3.edge_tpu_075, finegrain_classification_mode) where DeepLab's x0.75 backbone has 960: not listed.
    _classifier('mobilenet_edgetpu_224_1.0', 'https://storage.googleapis.com/mobilenet_edgetpu/checkpoints/'
                'mobilenet_edgetpu_224_1.0.tgz', 'mobilenet_edgetpu', 1001, '', notes=(
                    _IMAGENET_1001, 'an 8-bit (quantization-aware) checkpoint: its float weights are converted, the '
                    'quantization ranges skipped',
                    'trained at 224x224: ImageNet top-1 75.6% (slim mobilenet/README.md)')),

    # --- PyTorch DeepLabs, converted from their .pth files without PyTorch (converters/torch_mapping.py) ---
    # stigma0617/VoVNet-DeepLabV3 README.md: VOC 2012 val mIoU of its DeepLabV3 (output stride 16, ASPP 6/12/18,
    # evaluated at one scale on images padded to 513x513), Dropbox links (`?dl=1` fetches the file itself).
    _pytorch('vovnet39_voc', _VOVNET + 'oqqozntgrowmfb1/deeplab_vovnet39_pascal_v3_bn_lr7e-3_epoch50.pth?dl=1',
             'vovnet_39', 'voc', [_single(16, 75.71)], [_VOVNET_NOTE]),
    _pytorch('vovnet57_voc', _VOVNET + 'ykfj7enw9x5fhv6/deeplab_vovnet57_pascal_v3_bn_lr7e-3_epoch50.pth?dl=1',
             'vovnet_57', 'voc', [_single(16, 77.4)], [_VOVNET_NOTE]),
    _pytorch('resnet50_vovnet_voc', _VOVNET + 'djru33qnugcw0p7/deeplab_resnet50_pascal_v3_bn_lr7e-3_epoch50.pth?dl=1',
             'resnet_50', 'voc', [_single(16, 74.27)], [_VOVNET_NOTE]),
    _pytorch('densenet161_vovnet_voc', _VOVNET + 't3au8o1n7u6ijk6/deeplab_densenet161_pascal_v3_bn_lr7e-3_epoch50.pth'
             '?dl=1', 'densenet_161', 'voc', [_single(16, 76.13)], [_VOVNET_NOTE]),
    _pytorch('densenet201_vovnet_voc', _VOVNET + 'xsqbfbbpoh479kl/deeplab_densenet201_pascal_v3_bn_lr7e-3_epoch50.pth'
             '?dl=1', 'densenet_201', 'voc', [_single(16, 75.63)], [_VOVNET_NOTE]),
    _pytorch('resnet101_vovnet_voc', _VOVNET + 'vqpifempofpujvr/deeplab_resnet101_pascal_v3_bn_lr7e-3_epoch50.pth'
             '?dl=1', 'resnet_101', 'voc', [_single(16, 76.81)], [_VOVNET_NOTE]),
    # CoinCheung/DeepLab-v3-plus-cityscapes README.md: "the mIOU is 70.54" (Cityscapes val, its evaluate.py:
    # scales 0.5-1.75 with flips; earlier versions of the README said 80.12, before its author corrected the
    # mIoU computation); model_final.pth on Baidu pan, extraction code 3i4g.
    _pytorch('resnet101_cityscapes_deeplabv3plus', 'https://pan.baidu.com/s/1vbFxwchQybi77drB6divww',
             'resnet_101', 'cityscapes', [_multi(16, (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), 70.54)],
             ['DeepLab-v3-plus-cityscapes (CoinCheung): download model_final.pth by hand from Baidu pan (extraction '
              'code 3i4g), then: python converters/extract_weights.py model_final.pth']),
    # torchvision's weights (DeepLabV3_ResNet50/101_Weights.COCO_WITH_VOC_LABELS_V1): COCO val2017 images of the
    # 20 VOC categories; mIoU / pixel accuracy 66.4 / 92.4, 67.4 / 92.4 and, for MobileNet-v3-large
    # (DeepLabV3_MobileNet_V3_Large_Weights), 60.3 / 91.2 (torchvision's model documentation).
    _pytorch('torchvision_deeplabv3_resnet50', _TORCHVISION + 'deeplabv3_resnet50_coco-cd0a2569.pth', 'resnet_50',
             'voc', [_single(8, 66.4, 'coco-val2017', 92.4)], [_TORCHVISION_NOTE]),
    _pytorch('torchvision_deeplabv3_resnet101', _TORCHVISION + 'deeplabv3_resnet101_coco-586e9e4e.pth', 'resnet_101',
             'voc', [_single(8, 67.4, 'coco-val2017', 92.4)], [_TORCHVISION_NOTE]),
    _pytorch('torchvision_deeplabv3_mobilenet_v3_large', _TORCHVISION + 'deeplabv3_mobilenet_v3_large-fc3c493d.pth',
             'mobilenet_v3_large', 'voc', [_single(16, 60.3, 'coco-val2017', 91.2)], [_TORCHVISION_NOTE]),
))

# The names of the ImageNet checkpoints in the earlier versions of model_zoo.md (and of this module).
ALIASES = {'xception_41': 'xception_41_imagenet', 'xception_65': 'xception_65_imagenet',
           'xception_71': 'xception_71_imagenet', 'resnet_v1_50_beta': 'resnet_v1_50_beta_imagenet',
           'resnet_v1_101_beta': 'resnet_v1_101_beta_imagenet'}

# Official releases of model_zoo.md that this project cannot build, and why (their names there).
NOT_SUPPORTED = {
    # model_zoo.md: xception_65_coco_pretrained_2018_10_02.tar.gz, "292MB": the page says neither its task nor its
    # classes (an Xception-65 pretrained on ImageNet and COCO, to start training from).
    'xception_65_imagenet_coco': 'its task and classes are not published (an Xception-65 pretrained on ImageNet '
                                 'and COCO, to start training from); convert its archive with '
                                 'converters/extract_weights.py if the converter recognises it',
}

DATASET_TITLES = OrderedDict((
    ('voc', 'PASCAL VOC 2012'), ('cityscapes', 'Cityscapes'), ('ade20k', 'ADE20K'),
    ('imagenet', 'ImageNet (classifiers, to start training from)')))

DEFAULT_MODEL = 'xception65_coco_voc_trainaug'


# --- names, places ---------------------------------------------------------------------------------
def get_release(name):
    """The Release of `name` (an earlier name of ALIASES too); a Release passed in is returned as it is
    (e.g. one with another url). ZooError for other names, saying why for the NOT_SUPPORTED releases."""
    if isinstance(name, Release):
        return name
    name = ALIASES.get(name, name)
    if name in NOT_SUPPORTED:
        raise ZooError('%s is an official release that this project does not support: %s' % (name, NOT_SUPPORTED[name]))
    if name not in RELEASES:
        raise ZooError('unknown model %r; the known models are: %s' % (name, ', '.join(RELEASES)))
    return RELEASES[name]


def model_root(root=None):
    """The folder of cached archives and converted params: `root`, or `$MXNET_HOME/models/deeplab`
    (MXNet's usual model folder, ~/.mxnet/models by default, in a 'deeplab' subfolder)."""
    if root is not None:
        return os.path.abspath(os.path.expanduser(os.fspath(root)))
    return os.path.join(mx.base.data_dir(), 'models', 'deeplab')


def archive_name(release):
    """The file name of a release archive, as published (`deeplabv3_pascal_train_aug_2018_01_04.tar.gz`)."""
    return os.path.basename(urllib.parse.urlparse(release.url).path)


def release_url(release, mirror=None):
    """Where to fetch a release: its url, or its archive name under `mirror` (default $DEEPLAB_GLUON_MIRROR)."""
    mirror = os.environ.get(MIRROR_VARIABLE, '') if mirror is None else mirror
    if not mirror:
        return release.url
    return mirror.rstrip('/') + '/' + archive_name(release)


def format_result(result):
    """'83.58% val (OS8, scales 0.5-1.75, flip)': a published result and its evaluation settings."""
    scales = ('scale %s' % result.scales[0] if len(result.scales) == 1
              else 'scales %s-%s' % (result.scales[0], result.scales[-1]))
    accuracy = ', pixel accuracy %.2f%%' % result.pixel_accuracy if result.pixel_accuracy is not None else ''
    return '%.2f%% %s (OS%d, %s%s)%s' % (result.miou, result.split, result.output_stride, scales,
                                        ', flip' if result.flip else '', accuracy)


def format_release_list(root=None, default=DEFAULT_MODEL):
    """The text of `--list-models`: a header naming the cache folder (`root`, default model_root()), then
    the releases grouped by dataset, one a line: name, family, model variant (with its depth multiplier),
    classes and the published results with their evaluation settings; `default` is marked."""
    releases = list(RELEASES.values())
    name_width = max(len(release.name) for release in releases)
    variant_width = max(len(release.variant) for release in releases)
    lines = ['official DeepLab releases (tensorflow/models research/deeplab/g3doc/model_zoo.md and quantize.md; '
             'MobileNet-v2 ImageNet: research/slim/nets/mobilenet) and PyTorch DeepLabs (VoVNet-DeepLabV3, '
             'DeepLab-v3-plus-cityscapes, torchvision), cached in %s:' % model_root(root)]
    for dataset, title in DATASET_TITLES.items():
        group = [release for release in releases if release.dataset == dataset]
        if group:
            lines.append('%s:' % title)
        for release in group:
            results = '; '.join(map(format_result, release.results)) or 'no published mIoU'
            lines.append('  %-*s  %-15s  %-*s  %4s classes  %s%s' % (
                name_width, release.name, release.family, variant_width, release.variant,
                release.num_classes or '?', results, '  (default)' if release.name == default else ''))
    lines.append('not supported: %s' % ', '.join(sorted(NOT_SUPPORTED)))
    return '\n'.join(lines)


# --- download --------------------------------------------------------------------------------------
class _TransferError(Exception):
    """A transfer that stopped early and may succeed when tried again (dropped connection, timeout, ...)."""


@contextmanager
def _exclusive(path):
    """Hold an exclusive lock on the lock file `path` (other processes wait); no lock without fcntl."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent downloads of the same file are not guarded
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(path):
    """The hidden lock file beside `path`."""
    return os.path.join(os.path.dirname(path), '.%s.lock' % os.path.basename(path))


def _size_of(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def _reason(error):
    """A short reason for a network error: 'timed out', 'Connection refused', ..."""
    reason = getattr(error, 'reason', None) or error
    return ' '.join(str(reason).split()) or type(error).__name__


def _content_range(header):
    """(first byte, total or None) of a Content-Range header `bytes A-B/T` or `bytes */T`."""
    match = re.match(r'bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)', header or '')
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    return first, int(match.group(2)) if match.group(2) != '*' else None


def _open(url, offset, timeout):
    """The response to GET `url` (from byte `offset` with a Range request); raises on HTTP errors."""
    headers = {'User-Agent': USER_AGENT}
    if offset:
        headers['Range'] = 'bytes=%d-' % offset
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _answer(url, partial, size, timeout):
    """Send one request for what `partial` lacks; return (response or None if `partial` is whole, offset).

    The offset is where the response's bytes go: the size of `partial`, or 0 if the server sends
    the whole file (ignoring Range; `partial` is then emptied).
    """
    offset = _size_of(partial)
    if size is not None and offset > size:  # longer than the release: not a prefix of it
        os.remove(partial)
        offset = 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing from `offset` on: whole already, or not a prefix
            if _content_range(error.headers.get('Content-Range'))[1] == offset:
                return None, offset
            os.remove(partial)
            raise _TransferError('the server refused to resume at byte %d (HTTP 416)' % offset) from None
        if error.code in RETRY_HTTP_CODES:
            raise _TransferError('HTTP %d %s' % (error.code, error.reason)) from None
        raise ZooError('%s: download failed: HTTP %d %s' % (url, error.code, error.reason)) from None
    except (http.client.HTTPException, OSError) as error:  # URLError, refused, timed out, reset
        raise _TransferError(_reason(error)) from None
    if getattr(response, 'status', None) == 206:  # file:// answers have no status before Python 3.9
        first, _ = _content_range(response.headers.get('Content-Range'))
        if first != offset:
            response.close()
            os.remove(partial)
            raise _TransferError('the server answered the range from byte %s, not %d' % (first, offset))
        return response, offset
    if offset:
        logger.warning('%s ignores Range requests: downloading all of it again', url)
    open(partial, 'wb').close()
    return response, 0


def _expected_total(response, offset):
    """The byte count the whole file has according to the response, None if it does not say."""
    _, total = _content_range(response.headers.get('Content-Range'))
    length = response.headers.get('Content-Length')
    if total is None and length is not None and length.isdigit():
        total = offset + int(length)
    return total


def _read(response):
    """The next chunk of a response; a connection that breaks is a _TransferError (tried again)."""
    try:
        return response.read(CHUNK)
    except (http.client.HTTPException, OSError) as error:  # IncompleteRead, reset, timed out
        raise _TransferError(_reason(error)) from None


def _transfer(url, partial, size, progress, timeout):
    """One request: append what `partial` lacks. Raises _TransferError if the transfer stops early."""
    response, offset = _answer(url, partial, size, timeout)
    if response is None:
        return
    with response:
        total = _expected_total(response, offset)
        if size is not None and total is not None and total != size:
            os.remove(partial)
            raise ZooError('%s: the server announces %d bytes, the release has %d bytes' % (url, total, size))
        total = size if total is None else total
        received = 0
        with open(partial, 'ab') as out, tqdm(total=total, initial=offset, unit='B', unit_scale=True,
                                              unit_divisor=1024, desc=os.path.basename(partial[:-len('.part')]),
                                              disable=not progress) as bar:
            for block in iter(lambda: _read(response), b''):
                out.write(block)  # a full disk raises OSError here: not a transfer to try again
                received += len(block)
                bar.update(len(block))
    if total is not None and offset + received < total:
        raise _TransferError('the connection closed after %d of %d bytes' % (offset + received, total))


def _fetch(url, partial, size, progress, timeout, retries, wait):
    """Complete `partial` from `url`, resuming after interruptions.

    An attempt that leaves `partial` longer than ever before is retried at once; at most `retries`
    attempts in a row may fail to, with waits of `wait`, 2 * `wait`, ... seconds between them.
    """
    failures, longest = 0, _size_of(partial)
    while True:
        try:
            _transfer(url, partial, size, progress, timeout)
            return
        except _TransferError as error:
            reached = _size_of(partial)
            failures, longest = (0, reached) if reached > longest else (failures + 1, longest)
            if failures > retries:
                kept = ('; %s keeps the %d bytes received, run again to resume' % (partial, reached)
                        if reached else '')
                raise ZooError('%s: download failed: %s (%d attempts in a row made no progress)%s'
                               % (url, error, failures, kept)) from None
            logger.warning('%s: %s; trying again from byte %d', url, error, reached)
            if failures:
                time.sleep(wait * 2 ** (failures - 1))


def _archive_problem(path, compressed):
    """Why the tar archive `path` is unusable (reading every byte, and the gzip check), or None."""
    names = []
    try:
        with (gzip.open if compressed else open)(path, 'rb') as stream:
            with tarfile.open(fileobj=stream, mode='r|') as tar:
                for member in tar:
                    names.append(member.name)
                    if member.isfile():
                        content = tar.extractfile(member)
                        while content.read(CHUNK):
                            pass
            while stream.read(CHUNK):  # to the end of the gzip stream, where its CRC is checked
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        return 'not a complete %s archive (%s)' % ('.tar.gz' if compressed else '.tar', _reason(error))
    if not any(name.endswith('.index') for name in names):
        return 'the archive holds no TF checkpoint (no .index file among %d files)' % len(names)
    return None


def _problem(path, checked_as, size, sha256):
    """Why the file `path` (named `checked_as`) is not the expected one, or None."""
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        return 'it has %d bytes, the release has %d' % (actual, size)
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256.lower():
            return 'its sha256 is %s, the release has %s' % (digest, sha256.lower())
    if re.search(r'\.(tar\.gz|tgz|tar)$', checked_as):
        return _archive_problem(path, compressed=not checked_as.endswith('.tar'))
    return None


def _matches(path, size, sha256):
    """True if the file at `path` has the known size and sha256 (each checked only when known)."""
    return ((size is None or os.path.getsize(path) == size)
            and (sha256 is None or sha256_of(path) == sha256.lower()))


def download(url, path, size=None, sha256=None, progress=True, timeout=60, retries=5, wait=1.0):
    """Download `url` to `path`, resumably, and rename it into place only once verified; return `path`.

    The bytes go to `<path>.part`; a retry after a dropped connection, or a later call, continues it
    with an HTTP Range request (and starts over if the server ignores Range). Verified before the
    rename: the byte count (Content-Length, and `size` in bytes if known), the `sha256` (hex) if known,
    and a .tar.gz / .tgz / .tar must read through completely and hold a TF checkpoint. A file that fails
    is deleted. An existing `path` of the known size and sha256 is returned without network access.
    timeout: seconds per socket operation. An interrupted attempt that made progress is retried at
    once; `retries` attempts in a row may make none, with waits of `wait`, 2 * `wait`, ... seconds.
    Raises ZooError naming the URL or file and the reason.
    """
    path = os.path.abspath(os.fspath(path))
    partial = path + '.part'
    with _exclusive(_lock_file(path)):
        if os.path.isfile(path):
            if _matches(path, size, sha256):
                return path
            logger.warning('%s is not the expected file (size or sha256): downloading it again', path)
            os.remove(path)
        _fetch(url, partial, size, progress, timeout, retries, wait)
        problem = _problem(partial, path, size, sha256)
        if problem:
            os.remove(partial)
            raise ZooError('%s: the file downloaded from %s is damaged: %s; deleted it, run again to download '
                           'it afresh' % (path, url, problem))
        with open(partial, 'rb+') as stream:
            os.fsync(stream.fileno())
        os.replace(partial, path)
    return path


# --- conversion, loading ---------------------------------------------------------------------------
def _differences(release, metadata):
    """What the converted checkpoint of `metadata` (the converter's JSON) holds that `release` does not
    say: ['model_variant mobilenet_v2 (the release: xception_65)', ...]; [] when it is the release."""
    model = metadata.get('model') if isinstance(metadata.get('model'), dict) else {}
    found = [('task', metadata.get('kind'), release.task),
             ('model_variant', model.get('model_variant'), release.model_variant),
             ('num_classes', metadata.get('num_classes'), release.num_classes)]
    differences = ['%s %s (the release: %s)' % (field, value, wanted) for field, value, wanted in found
                   if wanted is not None and value != wanted]
    multiplier = model.get('depth_multiplier', 1.0)
    if not isinstance(multiplier, (int, float)) or abs(multiplier - release.depth_multiplier) > 1e-6:
        differences.append('depth_multiplier %s (the release: %g)' % (multiplier, release.depth_multiplier))
    return differences


def _cache_state(release, params):
    """(metadata, None) of a usable cached conversion of `release` at `params`, else (None, why not)."""
    try:
        with open(metadata_path(params)) as stream:
            metadata = json.load(stream)
    except (OSError, ValueError):
        return None, 'not converted yet'
    if not os.path.isfile(params) or not isinstance(metadata, dict):
        return None, 'not converted yet'
    if metadata.get('converter_version') != CONVERTER_VERSION:
        return None, 'converted by converter version %s, this is version %d' % (metadata.get('converter_version'),
                                                                               CONVERTER_VERSION)
    if 'model' not in metadata:
        return None, '%s records no model specification' % metadata_path(params)
    differences = _differences(release, metadata)
    if differences:
        return None, '%s is not this release: %s' % (params, ', '.join(differences))
    return metadata, None


def _cached_metadata(release, params):
    """The metadata of a usable cached conversion of `release` at `params` (converted by this converter
    version, of the release's model_variant, task, classes and depth multiplier), or None."""
    return _cache_state(release, params)[0]


def _convert(release, archive, params, progress, log):
    """Convert the release archive into `params` (+ JSON) with the project's converter; check that it holds
    the release (model_variant, task, classes, depth multiplier), else delete it and say what differs."""
    try:
        metadata = convert(archive, params, progress=progress, log=log)
    except ConversionError as error:
        reason = ' '.join(str(error).split())
        if reason.startswith(archive + ': '):  # the converter names the archive too
            reason = reason[len(archive) + 2:]
        raise ZooError('%s: cannot convert %s: %s' % (release.name, archive, reason)) from None
    differences = _differences(release, metadata)
    if differences:
        for path in (params, metadata_path(params)):
            os.remove(path)
        raise ZooError('%s: %s is not this release: it holds %s; it differs in %s'
                       % (release.name, archive, metadata.get('description') or metadata.get('kind'),
                          ', '.join(differences)))
    extra = {'release': release.name, 'dataset': release.dataset}
    if release.notes:
        extra['release_notes'] = list(release.notes)
    write_json(metadata_path(params), dict(metadata, **extra))


def get_params_file(name, root=None, progress=True, log=None):
    """The path of the converted `.params` of a release (its `.json` beside it), made once and cached.

    name: a release name (see RELEASES) or a Release. root: the cache folder (default model_root()).
    The first call downloads the archive (see `download`) and converts it (needs TensorFlow); later
    calls return the cached file without touching the network. A cached conversion by another converter
    version, or of another model than the release says, is converted again (`log` says why).
    log: where messages go (default: the module's logger, at INFO).
    """
    release = get_release(name)
    log = log or logger.info
    root = model_root(root)
    params = os.path.join(root, release.name + '.params')
    metadata, problem = _cache_state(release, params)
    if metadata:
        return params
    if urllib.parse.urlparse(release.url).hostname in MANUAL_HOSTS:
        raise ZooError('%s cannot be downloaded here: %s' % (release.name, release.notes[-1]))
    archive = os.path.join(root, archive_name(release))
    url = release_url(release)
    if not os.path.isfile(archive):
        log('downloading %s from %s to %s' % (release.name, url, root))
    download(url, archive, release.archive_size, release.sha256, progress=progress)
    with _exclusive(_lock_file(params)):
        metadata, problem = _cache_state(release, params)  # another process may have converted it meanwhile
        if not metadata:
            log('converting %s (once; cached in %s)%s' % (archive, root, '' if problem == 'not converted yet'
                                                          else ': the cached conversion is stale: ' + problem))
            _convert(release, archive, params, progress, log)
    return params


def get_model(name, output_stride=None, ctx=None, root=None):
    """The network of a release with its official weights, built by `mylib.weights.load_model` from the
    converted specification: a DeepLab segmentation network (RGB 0-255 NCHW in, logits at the input size
    out) or, for the ImageNet releases, the classifier (N x classes logits).

    output_stride: None runs a segmentation network at the release's own output stride (the one its
    converted specification records, from the official release flags: 16, 32 for MobileNet-v3); 8, 16 or
    32 run it at another (the atrous rates follow). Classifiers always run as trained.
    ctx: an mx.Context or a list of them (default CPU). root: the cache folder (default model_root()).
    """
    release = get_release(name)
    params = get_params_file(release, root)
    return load_model(params, output_stride=output_stride, ctx=ctx)


def copy_params(name, output, root=None, progress=True, log=None):
    """Write the converted params of a release (and its JSON) to `output`, from the cache; return the metadata."""
    cached = get_params_file(name, root, progress, log)
    for source, target in ((cached, output), (metadata_path(cached), metadata_path(output))):
        if os.path.abspath(source) != os.path.abspath(target):
            with atomic_path(target) as temporary:
                shutil.copyfile(source, temporary)
    with open(metadata_path(cached)) as stream:
        return json.load(stream)
