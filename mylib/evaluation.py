"""The one evaluation path, used by evaluate.py and by validation during training.

The official protocol: each image is padded at the bottom and right to the crop (513 x 513 for VOC)
with the mean pixel, its label with the ignore label 255; the padded image goes through the network
(multi-scale + flip if asked, `mylib.inference`); one confusion matrix is accumulated over the split.
"""
import time

import mxnet as mx
import numpy as np
from tqdm import tqdm

from .data.specs import DEFAULT_CROP, IGNORE_LABEL
from .errors import DatasetError
from .inference import OWN_SIZE, LogitsRunner, average_probabilities, pad_to_crop
from .metrics import ConfusionMatrix
from .models.layers import mean_pixel


def canvas_size(images, crop_size):
    """The padded size of a batch: the crop, grown to the largest image where needed."""
    return (max([crop_size[0]] + [image.shape[0] for image in images]),
            max([crop_size[1]] + [image.shape[1] for image in images]))


def predict_batch(runner, images, ctxs, scales=(1.0,), flip=False, crop_size=DEFAULT_CROP):
    """Labels (list of H x W int arrays) for a list of H x W x 3 uint8 images, split over `ctxs`.
    With crop OWN_SIZE each image runs alone at its size (never padded to a bigger one of its batch)."""
    if tuple(crop_size) == OWN_SIZE and len({image.shape[:2] for image in images}) > 1:
        return [label for image in images
                for label in predict_batch(runner, [image], ctxs, scales, flip, crop_size)]
    size = canvas_size(images, crop_size)
    value = mean_pixel(runner.view.net.spec.input_normalization)
    canvases = np.stack([pad_to_crop(image, size, value) for image in images])
    parts = np.array_split(np.arange(len(images)), min(len(ctxs), len(images)))
    outputs = []
    for ctx, part in zip(ctxs, parts):  # launched on every device before any result is read
        probabilities = average_probabilities(runner, mx.nd.array(canvases[part], ctx=ctx), scales, flip)
        outputs.append(probabilities.argmax(axis=1))
    labels = np.concatenate([output.asnumpy().astype(np.int64) for output in outputs])
    return [label[:image.shape[0], :image.shape[1]] for label, image in zip(labels, images)]


def evaluate(net, dataset, ctxs=None, scales=(1.0,), flip=False, crop_size=DEFAULT_CROP, batch_size=1,
             num_classes=None, progress=True, limit=None, fuse=True):
    """Evaluate `net` on `dataset` (items: H x W x 3 uint8 image, H x W uint8 label, 255 = ignore).

    The network's parameters must be on every context of `ctxs` (default CPU); a batch is split over them.
    Returns {'miou', 'pixel_accuracy', 'iou': [per class], 'images', 'seconds', 'confusion': matrix}.
    """
    num_classes = num_classes or net.num_classes
    ctxs = ctxs or [mx.cpu()]
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise DatasetError('no images to evaluate in %r' % (dataset,))
    runner = LogitsRunner(net, fuse=fuse)  # built anew for the current weights
    spec = getattr(dataset, 'spec', None)
    matrix = ConfusionMatrix(num_classes, spec.ignore_label if spec else IGNORE_LABEL)
    start = time.perf_counter()
    bar = tqdm(total=count, desc='evaluating', unit='image', disable=not progress, dynamic_ncols=True)
    for first in range(0, count, batch_size):
        items = [dataset[index] for index in range(first, min(first + batch_size, count))]
        images, labels = [item[0] for item in items], [item[1] for item in items]
        for label, predicted in zip(labels, predict_batch(runner, images, ctxs, scales, flip, crop_size)):
            matrix.update(label, predicted)
        bar.update(len(items))
        bar.set_postfix(mIoU='%.2f%%' % (100 * matrix.mean_iou()))
    bar.close()
    return {'miou': matrix.mean_iou(), 'pixel_accuracy': matrix.pixel_accuracy(), 'iou': matrix.iou().tolist(),
            'images': count, 'seconds': time.perf_counter() - start, 'confusion': matrix.counts.tolist()}


def iou_table(results, names):
    """Per-class IoU as a text table, with the mean and the pixel accuracy."""
    width = max(len(name) for name in names)
    lines = ['%-*s  %7s' % (width, 'class', 'IoU %'), '-' * (width + 9)]
    for name, iou in zip(names, results['iou']):
        lines.append('%-*s  %7s' % (width, name, '-' if iou != iou else '%.2f' % (100 * iou)))
    lines += ['-' * (width + 9), '%-*s  %7.2f' % (width, 'mean IoU', 100 * results['miou']),
              '%-*s  %7.2f' % (width, 'pixel accuracy', 100 * results['pixel_accuracy'])]
    return '\n'.join(lines)
