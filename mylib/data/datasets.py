"""Segmentation datasets as raw arrays: PASCAL VOC 2012 (+ SBD train_aug), Cityscapes, ADE20K, a folder.

Every dataset is a gluon Dataset whose item i is (image H x W x 3 uint8 RGB, label H x W uint8 with
255 = ignore), unresized and untransformed. Labels are checked on reading: every value must be a
class (0 .. num_classes - 1) or 255, else DatasetError names the file and the values.

Folder layouts and default roots are gluoncv's (gluoncv.data VOCSegmentation, VOCAugSegmentation,
CitySegmentation, ADE20KSegmentation and its scripts/datasets/*.py), but the file lists are built here:
gluoncv's classes read VOC trainval.txt for split 'train', SBD train+val (with ~500 VOC val images)
for VOCAug 'train', list folders in no fixed order, and fail with bare asserts.
"""
import os

import cv2
import numpy as np
import scipy.io
import simplejpeg
from mxnet import gluon
from PIL import Image

from ..errors import DatasetError
from .specs import DATASETS, FOLDER_HOW_TO, IGNORE_LABEL, check_num_classes, folder_spec

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')  # of JPEGImages/<id>: VOC's are .jpg; own data may be PNG
# (Cityscapes labelId, trainId) of the 19 classes (cityscapesScripts helpers/labels.py); other ids -> 255
CITYSCAPES_TRAIN_IDS = ((7, 0), (8, 1), (11, 2), (12, 3), (13, 4), (17, 5), (19, 6), (20, 7), (21, 8), (22, 9),
                        (23, 10), (24, 11), (25, 12), (26, 13), (27, 14), (28, 15), (31, 16), (32, 17), (33, 18))


def read_image(path):
    """H x W x 3 uint8 RGB of an image file, the pixels the official pipeline decodes from it.

    The official data_generator decodes with tf.image.decode_jpeg(channels=3), whose default is
    libjpeg-turbo's fast integer IDCT with fancy upsampling: decoded the same way here, the pixels are
    TF's to the bit (Pillow and OpenCV use the accurate IDCT, which moves most pixels by up to about 6
    levels). Other formats (PNG, and JPEGs libjpeg-turbo cannot turn into RGB, such as CMYK) are read
    by OpenCV. EXIF orientation is not applied, as in TF.
    """
    try:
        with open(path, 'rb') as stream:
            data = stream.read()
    except OSError as error:
        raise DatasetError('cannot read image %s: %s' % (path, error.strerror)) from None
    if simplejpeg.is_jpeg(data):
        try:
            return simplejpeg.decode_jpeg(data, colorspace='RGB', fastdct=True, fastupsample=False)
        except (ValueError, RuntimeError):
            pass  # e.g. CMYK: OpenCV below
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise DatasetError('cannot read image %s (empty or not an image)' % path)
    return image


def read_index_png(path):
    """H x W uint8 of a single-channel label image: a palette PNG gives its indices, a grayscale one its values."""
    try:
        with Image.open(path) as image:
            if image.mode not in ('P', 'L'):
                raise DatasetError('label %s is a %s image: labels must be index PNGs (palette or 8-bit '
                                   'grayscale, pixel value = class, 255 = ignore)' % (path, image.mode))
            return np.array(image, dtype=np.uint8)
    except OSError as error:
        raise DatasetError('cannot read label %s: %s' % (path, error)) from error


def read_sbd_mat(path):
    """H x W uint8 of an SBD cls/*.mat file (the GTcls.Segmentation class map)."""
    try:
        segmentation = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)['GTcls'].Segmentation
    except (OSError, ValueError, KeyError, AttributeError, scipy.io.matlab.MatReadError) as error:
        raise DatasetError('cannot read label %s as an SBD GTcls.Segmentation .mat: %s' % (path, error)) from error
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or np.any(segmentation != np.clip(np.round(segmentation), 0, 255)):
        raise DatasetError('label %s: GTcls.Segmentation must be an H x W map of integers 0..255' % path)
    return segmentation.astype(np.uint8)


def read_label(path):
    """H x W uint8 label of an index PNG or an SBD .mat file."""
    return read_sbd_mat(path) if path.endswith('.mat') else read_index_png(path)


def check_label_values(label, num_classes, path):
    """DatasetError naming `path` and the values unless every value is < num_classes or 255."""
    counts = np.bincount(label.ravel(), minlength=256)
    bad = np.flatnonzero(counts[num_classes:IGNORE_LABEL]) + num_classes
    if bad.size:
        raise DatasetError('label %s has values %s outside the %d classes (0..%d) and %d (ignore)'
                           % (path, ', '.join(map(str, bad.tolist())), num_classes, num_classes - 1, IGNORE_LABEL))


def cityscapes_label_map():
    """256-entry lookup table: Cityscapes labelIds -> trainIds 0..18, everything else 255."""
    table = np.full(256, IGNORE_LABEL, np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS:
        table[label_id] = train_id
    return table


def ade20k_label_map():
    """256-entry lookup table: ADE20K 0 ("other", the official ignore_label) -> 255, 1..150 kept."""
    table = np.arange(256, dtype=np.uint8)
    table[0] = IGNORE_LABEL
    return table


class SegmentationDataset(gluon.data.Dataset):
    """Images and labels from a list of files: item i = (H x W x 3 uint8 RGB, H x W uint8, 255 = ignore).

    names: image ids in order; files: (image path, label path) per id; label_map: None, or a 256-entry
    uint8 table applied to the stored label values (Cityscapes, ADE20K); spec: the dataset's
    DatasetSpec (mylib.data.specs).
    """

    def __init__(self, names, files, num_classes, root, spec=None, label_map=None, split=None):
        self.names = list(names)
        self.files = list(files)
        self.num_classes = int(num_classes)
        self.root = root
        self.spec = spec
        self.split = split
        self.label_map = label_map

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return '%s(%s %s, %d images, %d classes, root=%s)' % (
            type(self).__name__, self.spec.name if self.spec else '?', self.split, len(self), self.num_classes,
            self.root)

    def __getitem__(self, index):
        image_path, label_path = self.files[index]
        image = read_image(image_path)
        label = read_label(label_path)
        if self.label_map is not None:
            label = self.label_map[label]
        if label.shape != image.shape[:2]:
            raise DatasetError('label %s is %d x %d but image %s is %d x %d' % (
                label_path, label.shape[0], label.shape[1], image_path, image.shape[0], image.shape[1]))
        check_label_values(label, self.num_classes, label_path)
        return image, label


def read_list(path, how_to_get):
    """The ids of a split list (one per line, blank lines skipped); DatasetError if the list is missing."""
    if not os.path.isfile(path):
        raise DatasetError('missing split list %s (is the data root right?). %s' % (path, how_to_get))
    with open(path) as stream:
        return [line.split()[0] for line in stream if line.strip()]


def listed_file(folder, name, extensions, list_path):
    """folder/name + the first of `extensions` that exists, or DatasetError naming the list and the file."""
    for extension in extensions:
        path = os.path.join(folder, name + extension)
        if os.path.isfile(path):
            return path
    raise DatasetError('%s lists %s but %s does not exist' % (
        list_path, name, os.path.join(folder, name + '{%s}' % ','.join(extensions) if len(extensions) > 1
                                      else name + extensions[0])))


def voc_layout_files(base, list_path, how_to_get):
    """(names, files) of a VOC-layout folder `base` (JPEGImages, SegmentationClass) for one split list."""
    names = read_list(list_path, how_to_get)
    files = [(listed_file(os.path.join(base, 'JPEGImages'), name, IMAGE_EXTENSIONS, list_path),
              listed_file(os.path.join(base, 'SegmentationClass'), name, ('.png',), list_path)) for name in names]
    return names, files


def voc_paths(root):
    """Folders and lists of gluoncv's VOC root: VOC2012/ (VOCSegmentation) and VOCaug/dataset/ (VOCAugSegmentation)."""
    voc = os.path.join(root, 'VOC2012')
    sbd = os.path.join(root, 'VOCaug', 'dataset')
    lists = os.path.join(voc, 'ImageSets', 'Segmentation')
    return {'voc': voc, 'sbd': sbd, 'voc_train': os.path.join(lists, 'train.txt'),
            'voc_val': os.path.join(lists, 'val.txt'), 'sbd_train': os.path.join(sbd, 'train.txt'),
            'sbd_val': os.path.join(sbd, 'val.txt')}


def train_aug_names(root):
    """Sorted ids of VOC-aug train_aug: SBD train + SBD val + VOC 2012 train, minus every VOC 2012 val image.

    With the full datasets this is the standard 10,582-image list. `root` holds VOC2012/ and VOCaug/.
    """
    how_to_get = DATASETS['voc'].how_to_get
    paths = voc_paths(root)
    lists = {key: set(read_list(paths[key], how_to_get)) for key in ('voc_train', 'voc_val', 'sbd_train', 'sbd_val')}
    return sorted((lists['sbd_train'] | lists['sbd_val'] | lists['voc_train']) - lists['voc_val'])


def first_file(candidates, name, lists):
    """The first existing path of `candidates`, or DatasetError naming the lists of `name` and the paths tried."""
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError('%s (listed in %s) has no file: tried %s' % (name, ' and '.join(lists), ', '.join(candidates)))


def train_aug_files(root, names):
    """(image, label) per id of train_aug: VOC JPEG and SegmentationClass PNG where VOC has them, else SBD's."""
    paths = voc_paths(root)
    listed_in = {}
    for key in ('sbd_train', 'sbd_val', 'voc_train'):
        for name in read_list(paths[key], DATASETS['voc'].how_to_get):
            listed_in.setdefault(name, []).append(paths[key])
    files = []
    for name in names:
        image = first_file([os.path.join(paths['voc'], 'JPEGImages', name + '.jpg'),
                            os.path.join(paths['sbd'], 'img', name + '.jpg')], name, listed_in[name])
        label = first_file([os.path.join(paths['voc'], 'SegmentationClass', name + '.png'),
                            os.path.join(paths['sbd'], 'cls', name + '.mat')], name, listed_in[name])
        files.append((image, label))
    return files


def voc_dataset(split, root):
    spec = DATASETS['voc']
    if split == 'train_aug':
        names = train_aug_names(root)
        files = train_aug_files(root, names)
    else:
        paths = voc_paths(root)
        list_path = os.path.join(paths['voc'], 'ImageSets', 'Segmentation', split + '.txt')
        names, files = voc_layout_files(paths['voc'], list_path, spec.how_to_get)
    return SegmentationDataset(names, files, spec.num_classes, root, spec, split=split)


def folder_dataset(split, root, num_classes):
    if root is None or num_classes is None:
        raise DatasetError('a folder dataset needs a root (--data-root) and num_classes (--num-classes). '
                           + FOLDER_HOW_TO)
    check_num_classes(num_classes)
    if not os.path.isdir(root):
        raise DatasetError('dataset folder %s does not exist. %s' % (root, FOLDER_HOW_TO))
    list_path = os.path.join(root, 'ImageSets', 'Segmentation', split + '.txt')
    names, files = voc_layout_files(root, list_path, FOLDER_HOW_TO)
    return SegmentationDataset(names, files, num_classes, root, folder_spec(num_classes), split=split)


def walk_files(folder, suffix, how_to_get):
    """Sorted paths under `folder` (recursively) ending with `suffix`; DatasetError if there are none."""
    found = sorted(os.path.join(directory, name) for directory, _, names in os.walk(folder)
                   for name in names if name.endswith(suffix))
    if not found:
        raise DatasetError('no *%s images under %s. %s' % (suffix, folder, how_to_get))
    return found


def matching_label(image_path, image_folder, label_folder, image_suffix, label_suffix):
    """(id, label path) of an image: same relative folder, `image_suffix` replaced by `label_suffix`."""
    relative = os.path.relpath(image_path, image_folder)[:-len(image_suffix)]
    label = os.path.join(label_folder, relative + label_suffix)
    if not os.path.isfile(label):
        raise DatasetError('image %s has no label: %s does not exist' % (image_path, label))
    return relative.replace(os.sep, '/'), label


def paired_dataset(spec, split, root, folders, suffixes, label_map):
    """A dataset of images under folders[0] paired with the labels under folders[1] (Cityscapes, ADE20K)."""
    images = walk_files(folders[0], suffixes[0], spec.how_to_get)
    pairs = [matching_label(image, folders[0], folders[1], *suffixes) for image in images]
    return SegmentationDataset([name for name, _ in pairs], [(image, label) for image, (_, label) in
                                                             zip(images, pairs)],
                               spec.num_classes, root, spec, label_map, split=split)


def cityscapes_dataset(split, root):
    """gluoncv CitySegmentation's layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/.../*_labelIds.png."""
    folders = (os.path.join(root, 'leftImg8bit', split), os.path.join(root, 'gtFine', split))
    return paired_dataset(DATASETS['cityscapes'], split, root, folders, ('_leftImg8bit.png', '_gtFine_labelIds.png'),
                          cityscapes_label_map())


def ade20k_dataset(split, root):
    """gluoncv ADE20KSegmentation's layout: ADEChallengeData2016/{images,annotations}/{training,validation}/."""
    base = os.path.join(root, 'ADEChallengeData2016')
    part = {'train': 'training', 'val': 'validation'}[split]
    folders = (os.path.join(base, 'images', part), os.path.join(base, 'annotations', part))
    return paired_dataset(DATASETS['ade20k'], split, root, folders, ('.jpg', '.png'), ade20k_label_map())


def get_dataset(name, split, root=None, num_classes=None):
    """The dataset `name` ('voc', 'cityscapes', 'ade20k' or 'folder'), split `split`, as raw arrays.

    root: the folder holding the data (default: gluoncv's root of the dataset, e.g. ~/.mxnet/datasets/voc;
    required for 'folder'). num_classes: required for 'folder'; for the others it must match or be None.
    Item i: (image H x W x 3 uint8 RGB, label H x W uint8 with 255 = ignore).
    """
    root = os.path.abspath(os.path.expanduser(root)) if root else None
    if name == 'folder':
        return folder_dataset(split, root, num_classes)
    if name not in DATASETS:
        raise DatasetError('unknown dataset %r: choose one of %s, or folder' % (name, ', '.join(DATASETS)))
    spec = DATASETS[name]
    if split not in spec.splits:
        raise DatasetError('%s has no split %r: choose one of %s' % (name, split, ', '.join(spec.splits)))
    if num_classes is not None and num_classes != spec.num_classes:
        raise DatasetError('%s has %d classes, not %d' % (name, spec.num_classes, num_classes))
    root = root or spec.default_root
    if not os.path.isdir(root):
        raise DatasetError('%s not found: the data root %s does not exist. %s' % (name, root, spec.how_to_get))
    builders = {'voc': voc_dataset, 'cityscapes': cityscapes_dataset, 'ade20k': ade20k_dataset}
    return builders[name](split, root)
