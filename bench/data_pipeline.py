#!/usr/bin/env python
"""Training-data throughput: AugmentedDataset through gluon.data.DataLoader, in images/s, as a table.

    python bench/data_pipeline.py [--workers 0,1,2] [--images 96] [--epochs 2] [--threads 2]

Generated VOC-like data (500 x 375 JPEGs, palette PNG labels) in a temporary VOC tree, read with
get_dataset('voc', 'train'), augmented with the official TrainAugmentation (crop 513, scales 0.5 to
2.0, flips) and batched by the DataLoader (batch 4) with 0 (in the main process), 1 and 2 worker
processes. The first batch of each run (worker start-up) is not timed. A second table splits the
cost of one image in the main process: reading (JPEG + PNG decoding, label check) and augmenting.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import cpu_description, set_threads  # noqa: E402

IMAGE_SIZE = (375, 500)  # (height, width) of a typical PASCAL VOC image


def write_voc_tree(root, count, seed=0):
    """A VOC root (VOC2012/JPEGImages, SegmentationClass, ImageSets/Segmentation/train.txt) of `count` images."""
    import numpy as np
    from PIL import Image

    from mylib.data import palette
    rng = np.random.default_rng(seed)
    voc = os.path.join(root, 'VOC2012')
    for folder in ('JPEGImages', 'SegmentationClass', os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(voc, folder))
    colours = palette(21).ravel().tolist()
    names = ['2012_%06d' % index for index in range(count)]
    height, width = IMAGE_SIZE
    for name in names:
        coarse = rng.uniform(0, 255, (height // 16, width // 16, 3)).astype(np.uint8)
        photo = np.array(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
        noisy = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(os.path.join(voc, 'JPEGImages', name + '.jpg'), quality=90)
        blocks = rng.integers(0, 21, (height // 25 + 1, width // 25 + 1)).astype(np.uint8)
        label = np.kron(blocks, np.ones((25, 25), np.uint8))[:height, :width]
        label[::25] = 255  # void boundaries, as in the VOC PNGs
        image = Image.fromarray(label, 'P')
        image.putpalette(colours)
        image.save(os.path.join(voc, 'SegmentationClass', name + '.png'))
    with open(os.path.join(voc, 'ImageSets', 'Segmentation', 'train.txt'), 'w') as stream:
        stream.write(''.join(name + '\n' for name in names))


def loader_images_per_second(train, workers, batch_size, epochs):
    """Images/s of a DataLoader over `epochs` epochs of keys (the first batch, start-up, not timed)."""
    import numpy as np
    from mxnet import gluon
    keys = np.random.default_rng(0).permutation(epochs * len(train)).tolist()
    loader = gluon.data.DataLoader(train, batch_size=batch_size, sampler=keys, last_batch='discard',
                                   num_workers=workers)
    batches = iter(loader)
    next(batches)[0].wait_to_read()
    start = time.perf_counter()
    images = 0
    for data, label in batches:
        data.wait_to_read()
        label.wait_to_read()
        images += data.shape[0]
    return images / (time.perf_counter() - start)


def per_image_milliseconds(dataset, augmentation, count):
    """Median milliseconds to read one image and label, and to augment it, in this process."""
    import numpy as np
    reads, augments = [], []
    for index in range(count):
        start = time.perf_counter()
        image, label = dataset[index % len(dataset)]
        middle = time.perf_counter()
        augmentation(image, label, np.random.default_rng(index))
        reads.append(middle - start)
        augments.append(time.perf_counter() - middle)
    return 1000 * statistics.median(reads), 1000 * statistics.median(augments)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workers', default='0,1,2', help='comma-separated worker process counts (default 0,1,2)')
    parser.add_argument('--images', type=int, default=96, help='generated images (default 96)')
    parser.add_argument('--epochs', type=int, default=2, help='epochs per run (default 2)')
    parser.add_argument('--batch-size', type=int, default=4, help='default 4')
    parser.add_argument('--crop', type=int, default=513, help='crop size (default 513)')
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='OpenMP threads of the main process (default: all cores)')
    args = parser.parse_args()
    set_threads(args.threads)
    import cv2

    from mylib.data import AugmentedDataset, TrainAugmentation, get_dataset

    with tempfile.TemporaryDirectory(prefix='deeplab-bench.') as root:
        write_voc_tree(root, args.images)
        dataset = get_dataset('voc', 'train', root=root)
        augmentation = TrainAugmentation(crop_size=(args.crop, args.crop))
        train = AugmentedDataset(dataset, augmentation, seed=0)
        print('AugmentedDataset through gluon.data.DataLoader, %d generated %dx%d JPEGs, batch %d, crop %d, '
              '%d epochs; %s; main process OMP_NUM_THREADS=%d, OpenCV threads %d (decoding is single-threaded), '
              'each worker process single-threaded (numpy)\n'
              % (args.images, IMAGE_SIZE[1], IMAGE_SIZE[0], args.batch_size, args.crop, args.epochs, cpu_description(),
                 args.threads, cv2.getNumThreads()))
        print('| worker processes | images/s | images/s per worker process |')
        print('|---|---|---|')
        for workers in map(int, args.workers.split(',')):
            rate = loader_images_per_second(train, workers, args.batch_size, args.epochs)
            print('| %s | %.1f | %.1f |' % (workers if workers else '0 (main process)', rate, rate / max(workers, 1)))
        read, augment = per_image_milliseconds(dataset, augmentation, min(args.images, 48))
        print('\nOne image in the main process (median):\n')
        print('| read (JPEG + PNG) | augment (scale, pad, crop, flip) | total |')
        print('|---|---|---|')
        print('| %.1f ms | %.1f ms | %.1f ms |' % (read, augment, read + augment))


if __name__ == '__main__':
    main()
