#!/usr/bin/env python
"""Segment photos into coloured label maps (palette PNGs), optionally blended with the photo.

    python predict.py photo.jpg                         # the default official model, VOC classes
    python predict.py photos/ --weights voc.params --overlay --out masks/
    python predict.py a.jpg b.png --os 8 --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip

Each image is read upright (EXIF), as RGB (grayscale, palette, RGBA, 16-bit and CMYK are converted).
As the official demo does, a photo larger than the crop is shrunk so that its long side is 513, and
the labels are resized back; results are at the photo's original size. For IMAGE, <out>/IMAGE.png
holds the labels (palette PNG in the colours of the weights' dataset: as recorded beside the weights by
the zoo or training, else the dataset with their number of classes; --dataset chooses) and, with
--overlay, <out>/IMAGE_overlay.jpg the blend; photos whose names differ only by extension get distinct
masks (a_jpg.png, a_png.png). An unreadable file is reported and the others are still processed; the
exit status is 1 if any image failed.
"""
import os
import sys
from collections import Counter

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mylib import cli  # noqa: E402
from mylib.cli import scales_type, size_type  # noqa: E402
from mylib.data.specs import DATASETS, DEFAULT_CROP  # noqa: E402

PROG = 'predict.py'

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def build_parser():
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('inputs', nargs='+', metavar='IMAGES_OR_FOLDERS', help='image files, or folders of them')
    model = parser.add_argument_group('model')
    source = model.add_mutually_exclusive_group()
    source.add_argument('--weights', metavar='FILE.params', help='converted or trained DeepLab parameters (any family)')
    source.add_argument('--model', metavar='NAME', help='an official release (default: xception65_coco_voc_trainaug)')
    model.add_argument('--os', dest='output_stride', type=int, choices=(8, 16, 32), default=None,
                       help="output stride (default: the weights' own, 16 for most releases, 32 for MobileNet-v3)")
    protocol = parser.add_argument_group('protocol')
    protocol.add_argument('--scales', type=scales_type, default=(1.0,), help='comma-separated scales (default 1.0)')
    protocol.add_argument('--flip', action='store_true', help='add left-right flipped inputs')
    protocol.add_argument('--crop-size', type=size_type,
                          help='HxW the photo is padded to; a larger photo is shrunk to fit its long side '
                               '(default %dx%d, as the official demo; 769x769 for MobileNet-v3, whose image pooling '
                               'window is fixed; torchvision and DeepLab-v3-plus-cityscapes networks: each photo '
                               'unpadded at its own size, shrunk only beyond 2048 pixels)' % DEFAULT_CROP)
    output = parser.add_argument_group('output')
    output.add_argument('--out', default='predictions', metavar='DIR', help='output folder (default predictions/)')
    output.add_argument('--overlay', action='store_true', help='also write the photo blended with its labels')
    output.add_argument('--dataset', choices=tuple(DATASETS),
                        help="class names and colours (default: the weights' dataset, as recorded beside them by "
                             'the zoo or training, else the dataset with their number of classes)')
    output.add_argument('--gpus', default=None, help='a GPU id, or cpu (default: GPU 0 if there is one)')
    return parser


def list_images(inputs):
    """(image paths, problems): files as given, folders expanded to their images (sorted)."""
    paths, problems = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                problems.append('%s: no images in this folder (%s)' % (item, ', '.join(IMAGE_EXTENSIONS)))
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        else:
            problems.append('%s: no such file or folder' % item)
    return paths, problems


def output_names(paths):
    """A distinct output stem per input: its file name without extension (a.jpg -> a); where two inputs
    share that, with the extension (a_jpg, a_png); then numbered. Compared ignoring case, as some file
    systems do, so that no mask overwrites another."""
    names = [os.path.splitext(os.path.basename(path)) for path in paths]
    shared = Counter(base.lower() for base, _ in names)
    stems, taken = [], set()
    for base, extension in names:
        candidates = [base] if shared[base.lower()] == 1 else []
        candidates += [base + '_' + extension.lstrip('.')] if extension else []
        candidates += ['%s_%d' % (base, number) for number in range(1, len(paths) + 2)]
        stem = next(candidate for candidate in candidates if candidate.lower() not in taken)
        taken.add(stem.lower())
        stems.append(stem)
    return stems


def segment(net, runner, image, args):
    """H x W labels of an RGB photo at its own size (shrunk to the crop and back when larger)."""
    import numpy as np
    from PIL import Image

    from mylib.images import fit_within
    from mylib.inference import OWN_SIZE, OWN_SIZE_LIMIT, predict
    fitted = fit_within(image, OWN_SIZE_LIMIT if tuple(args.crop_size) == OWN_SIZE else min(args.crop_size))
    labels, _ = predict(net, fitted, args.scales, args.flip, args.crop_size, runner=runner)
    if fitted.shape != image.shape:
        resized = Image.fromarray(labels.astype(np.uint8)).resize(image.shape[1::-1], Image.NEAREST)
        labels = np.asarray(resized)
    return labels


@cli.command(PROG)
def main(argv=None):
    args = build_parser().parse_args(argv)
    import numpy as np

    from mylib import zoo
    from mylib.data import spec_for
    from mylib.devices import parse_devices
    from mylib.errors import ImageError, OptionError
    from mylib.images import label_image, overlay, read_rgb, save_image
    from mylib.inference import OWN_SIZE, LogitsRunner, cap_onednn_isa
    from mylib.weights import fitting_crop, load_segmentation, recorded_dataset, runs_unpadded
    cap_onednn_isa()  # before any oneDNN work: the faster CPU kernels for inference
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise OptionError('--out %s is a file; give a folder for the masks' % args.out)
    ctx = parse_devices(args.gpus)[:1]
    paths, problems = list_images(args.inputs)
    for problem in problems:
        print('%s: %s' % (PROG, problem), file=sys.stderr)
    if not paths:
        raise ImageError('no images to segment')
    weights = args.weights or zoo.get_params_file(args.model or zoo.DEFAULT_MODEL)
    net = load_segmentation(weights, args.output_stride, ctx=ctx)
    if args.crop_size is None and runs_unpadded(weights):  # as the original (torchvision, Cityscapes project)
        args.crop_size = OWN_SIZE
    else:
        args.crop_size = fitting_crop(net, args.crop_size or DEFAULT_CROP, args.crop_size is not None)
    spec = spec_for(args.dataset or recorded_dataset(weights, net.num_classes), net.num_classes)
    colours = spec.palette()
    runner = LogitsRunner(net)
    os.makedirs(args.out, exist_ok=True)
    failed = len(problems)
    for number, (path, stem) in enumerate(zip(paths, output_names(paths)), 1):
        try:
            image = read_rgb(path)
        except ImageError as error:
            print('%s: %s' % (PROG, error), file=sys.stderr)
            failed += 1
            continue
        labels = segment(net, runner, image, args)
        written = [os.path.join(args.out, stem + '.png')]
        save_image(label_image(labels, colours), written[0])
        if args.overlay:
            written.append(os.path.join(args.out, stem + '_overlay.jpg'))
            save_image(overlay(image, labels, colours), written[1], quality=92)
        found = [spec.class_names[index] for index in np.unique(labels) if index < spec.num_classes]
        print('[%d/%d] %s -> %s (%dx%d: %s)' % (number, len(paths), path, ', '.join(written), image.shape[1],
                                                image.shape[0], ', '.join(found)))
    if failed:
        print('%s: %d of %d inputs failed' % (PROG, failed, len(paths) + len(problems)), file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
