"""mylib.data on small generated trees: VOC (+ SBD train_aug), a folder, Cityscapes, ADE20K, errors,
palettes, and the official training augmentation (compared with TensorFlow's resize in a subprocess)."""
import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.io
import simplejpeg
from helpers import REPO
from PIL import Image

from mylib.data import DATASETS, AugmentedDataset, TrainAugmentation, get_dataset, palette, spec_for, train_aug_names
from mylib.errors import DatasetError

# standard PASCAL VOC colours (the devkit's VOClabelcolormap / the colours of its SegmentationClass PNGs)
VOC_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128), 15: (192, 128, 128),
               20: (0, 64, 128), 255: (224, 224, 192)}

# the tiny VOC tree: VOC train, VOC val, SBD lists (SBD train holds the VOC val image v1, as the real one does)
VOC_TRAIN, VOC_VAL = ['a1', 'a2'], ['v1', 'v2']
SBD_TRAIN, SBD_VAL = ['s1', 'v1', 'a1'], ['s2', 's3', 'v2']


def voc_palette_png(path, label):
    """Write an H x W uint8 label as a palette PNG with the VOC colours (colour != index)."""
    image = Image.fromarray(label, 'P')
    colours = np.zeros((256, 3), np.uint8)
    for index, colour in VOC_COLOURS.items():
        colours[index] = colour
    image.putpalette(colours.ravel().tolist())
    image.save(path)


def random_photo(rng, height, width):
    """A smooth random RGB image (so that JPEG keeps it recognisable)."""
    base = rng.uniform(0, 255, (height // 4 + 2, width // 4 + 2, 3)).astype(np.uint8)
    return np.array(Image.fromarray(base).resize((width, height), Image.BILINEAR))


def random_label(rng, height, width, num_classes=21, ignore_border=True):
    label = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
    if ignore_border:
        label[0, :] = 255  # the VOC PNGs' void boundaries
    return label


def write_list(path, names):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(name + '\n' for name in names))


def write_sbd_mat(path, segmentation):
    """An SBD cls/*.mat file: struct GTcls with Segmentation (uint8 H x W), Boundaries, CategoriesPresent."""
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8)
    scipy.io.savemat(str(path), {'GTcls': {'Segmentation': segmentation, 'CategoriesPresent': present,
                                           'Boundaries': np.zeros((20, 1), object)}})


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    """A VOC root as gluoncv's pascal_voc.py makes it: VOC2012/ and VOCaug/dataset/. Returns (root, truth)."""
    root = tmp_path_factory.mktemp('voc')
    voc, sbd = root / 'VOC2012', root / 'VOCaug' / 'dataset'
    for folder in (voc / 'JPEGImages', voc / 'SegmentationClass', sbd / 'img', sbd / 'cls'):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth = {}
    for index, name in enumerate(VOC_TRAIN + VOC_VAL + ['s1', 's2', 's3']):
        height, width = 24 + 2 * index, 32 - index
        image, label = random_photo(rng, height, width), random_label(rng, height, width)
        Image.fromarray(image).save(voc / 'JPEGImages' / (name + '.jpg'), quality=95)
        Image.fromarray(image).save(sbd / 'img' / (name + '.jpg'), quality=95)
        sbd_label = np.where(label == 255, 0, label).astype(np.uint8)  # SBD has no void boundaries
        write_sbd_mat(sbd / 'cls' / (name + '.mat'), sbd_label)
        if name in VOC_TRAIN + VOC_VAL:
            voc_palette_png(voc / 'SegmentationClass' / (name + '.png'), label)
            truth[name] = label
        else:
            truth[name] = sbd_label
    (voc / 'JPEGImages' / 's3.jpg').unlink()  # an SBD-only image: read from VOCaug/dataset/img
    lists = voc / 'ImageSets' / 'Segmentation'
    write_list(lists / 'train.txt', VOC_TRAIN)
    write_list(lists / 'val.txt', VOC_VAL)
    write_list(lists / 'trainval.txt', VOC_TRAIN + VOC_VAL)
    write_list(sbd / 'train.txt', SBD_TRAIN)
    write_list(sbd / 'val.txt', SBD_VAL)
    return root, truth


def run_in_tensorflow(code, *args):
    """Run `code` with `args` in a TensorFlow subprocess (TF is never imported next to mxnet)."""
    subprocess.run([sys.executable, '-c', code, *map(str, args)], check=True, capture_output=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))


def official_rgb(path):
    """The pixels of TF's decode_jpeg (fast integer IDCT) / decode_png, which the datasets must read:
    libjpeg-turbo decoding as test_jpeg_pixels_are_those_of_the_official_pipeline shows TF does."""
    with open(path, 'rb') as stream:
        data = stream.read()
    if not simplejpeg.is_jpeg(data):
        return np.array(Image.open(path).convert('RGB'))  # PNG: lossless, every decoder agrees
    return simplejpeg.decode_jpeg(data, colorspace='RGB', fastdct=True, fastupsample=False)


# ---------------------------------------------------------------------------------------------- VOC


@pytest.mark.fast
@pytest.mark.parametrize('split, names', [('val', VOC_VAL), ('train', VOC_TRAIN), ('trainval', VOC_TRAIN + VOC_VAL)])
def test_voc_splits(voc_root, split, names):
    root, truth = voc_root
    ds = get_dataset('voc', split, root=str(root))
    assert ds.names == names and len(ds) == len(names)
    assert ds.num_classes == 21 and ds.spec is DATASETS['voc'] and ds.root == str(root)
    for index, name in enumerate(names):
        image, label = ds[index]
        assert image.dtype == np.uint8 and label.dtype == np.uint8 and image.shape == label.shape + (3,)
        np.testing.assert_array_equal(image, official_rgb(root / 'VOC2012' / 'JPEGImages' / (name + '.jpg')))
        np.testing.assert_array_equal(label, truth[name])  # the palette indices, 255 kept
        assert 255 in label and label.max() == 255


@pytest.mark.fast
def test_train_aug_is_the_union_minus_val(voc_root):
    root, truth = voc_root
    names = train_aug_names(str(root))
    assert names == sorted((set(SBD_TRAIN) | set(SBD_VAL) | set(VOC_TRAIN)) - set(VOC_VAL)) == ['a1', 'a2', 's1',
                                                                                                 's2', 's3']
    assert not set(names) & set(VOC_VAL)
    ds = get_dataset('voc', 'train_aug', root=str(root))
    assert ds.names == names
    for index, name in enumerate(names):
        image, label = ds[index]
        np.testing.assert_array_equal(label, truth[name])  # VOC PNG (with 255) for a1, a2; SBD .mat for s*
        np.testing.assert_array_equal(image, official_rgb(ds.files[index][0]))
    files = dict(zip(ds.names, ds.files))
    assert files['a1'][1].endswith('VOC2012/SegmentationClass/a1.png')
    assert files['s1'][1].endswith('VOCaug/dataset/cls/s1.mat')
    assert files['a1'][0].endswith('VOC2012/JPEGImages/a1.jpg')
    assert files['s3'][0].endswith('VOCaug/dataset/img/s3.jpg')


@pytest.mark.fast
def test_default_roots_and_layouts_are_gluoncvs():
    import inspect

    from gluoncv.data import ADE20KSegmentation, CitySegmentation, VOCAugSegmentation, VOCSegmentation
    for name, cls in (('voc', VOCSegmentation), ('voc', VOCAugSegmentation), ('cityscapes', CitySegmentation),
                      ('ade20k', ADE20KSegmentation)):
        assert DATASETS[name].default_root == inspect.signature(cls.__init__).parameters['root'].default
    assert VOCSegmentation.BASE_DIR == 'VOC2012' and VOCAugSegmentation.TRAIN_BASE_DIR == 'VOCaug/dataset/'
    assert ADE20KSegmentation.BASE_DIR == 'ADEChallengeData2016'
    assert (DATASETS['voc'].num_classes, DATASETS['cityscapes'].num_classes, DATASETS['ade20k'].num_classes) == (
        21, 19, 151)
    assert DATASETS['voc'].eval_crop == (513, 513) and DATASETS['cityscapes'].eval_crop == (1025, 2049)
    assert DATASETS['cityscapes'].train_crop == (769, 769) and DATASETS['ade20k'].eval_crop == (513, 513)


@pytest.mark.fast
def test_folder_dataset(tmp_path):
    rng = np.random.default_rng(1)
    labels = {}
    for name in ('x', 'y'):
        image, labels[name] = random_photo(rng, 20, 28), random_label(rng, 20, 28, num_classes=5)
        (tmp_path / 'JPEGImages').mkdir(exist_ok=True)
        (tmp_path / 'SegmentationClass').mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / 'JPEGImages' / (name + '.jpg'))
        Image.fromarray(labels[name], 'L').save(tmp_path / 'SegmentationClass' / (name + '.png'))
    write_list(tmp_path / 'ImageSets' / 'Segmentation' / 'mine.txt', ['y', 'x'])
    ds = get_dataset('folder', 'mine', root=str(tmp_path), num_classes=5)
    assert ds.names == ['y', 'x'] and ds.num_classes == 5 and ds.spec.name == 'folder'
    image, label = ds[1]
    assert image.shape == (20, 28, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(label, labels['x'])
    with pytest.raises(DatasetError, match='outside the 4 classes'):
        get_dataset('folder', 'mine', root=str(tmp_path), num_classes=4)[0]


@pytest.mark.fast
def test_folder_dataset_with_png_images(tmp_path):
    rng = np.random.default_rng(2)
    image, label = random_photo(rng, 12, 9), random_label(rng, 12, 9, num_classes=3)
    for folder in ('JPEGImages', 'SegmentationClass'):
        (tmp_path / folder).mkdir()
    Image.fromarray(image).save(tmp_path / 'JPEGImages' / 'p.png')  # lossless: pixels read back exactly
    Image.fromarray(label, 'L').save(tmp_path / 'SegmentationClass' / 'p.png')
    write_list(tmp_path / 'ImageSets' / 'Segmentation' / 'all.txt', ['p'])
    read_image, read_label = get_dataset('folder', 'all', root=str(tmp_path), num_classes=3)[0]
    np.testing.assert_array_equal(read_image, image)
    np.testing.assert_array_equal(read_label, label)


TF_DECODE = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    np.savez(sys.argv[-1], *[tf.io.decode_jpeg(open(path, 'rb').read(), channels=3).numpy()
                             for path in sys.argv[1:-1]])
""")


def test_jpeg_pixels_are_those_of_the_official_pipeline(tmp_path):
    """tf.io.decode_jpeg (the official data_generator's decoder, in a TF subprocess), to the bit: a photo
    shipped with matplotlib, and a grayscale JPEG; a CMYK JPEG (which libjpeg-turbo cannot make RGB) still reads."""
    import matplotlib

    from mylib.data.datasets import read_image
    photo = os.path.join(matplotlib.get_data_path(), 'sample_data', 'grace_hopper.jpg')
    gray = str(tmp_path / 'gray.jpg')
    Image.fromarray(random_photo(np.random.default_rng(5), 40, 30)).convert('L').save(gray, quality=80)
    run_in_tensorflow(TF_DECODE, photo, gray, tmp_path / 'tf.npz')
    official = np.load(tmp_path / 'tf.npz')
    for index, path in enumerate((photo, gray)):
        np.testing.assert_array_equal(read_image(path), official['arr_%d' % index], err_msg=path)
    cmyk = str(tmp_path / 'cmyk.jpg')
    Image.fromarray(random_photo(np.random.default_rng(6), 20, 24)).convert('CMYK').save(cmyk)
    assert read_image(cmyk).shape == (20, 24, 3)
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really')
    with pytest.raises(DatasetError, match='broken.jpg'):
        read_image(str(tmp_path / 'broken.jpg'))


# --------------------------------------------------------------------------------- Cityscapes, ADE20K

# cityscapesScripts helpers/labels.py: (name, id, trainId), trainId 255 = ignored in evaluation
CITYSCAPES_LABELS = [
    ('unlabeled', 0, 255), ('ego vehicle', 1, 255), ('rectification border', 2, 255), ('out of roi', 3, 255),
    ('static', 4, 255), ('dynamic', 5, 255), ('ground', 6, 255), ('road', 7, 0), ('sidewalk', 8, 1),
    ('parking', 9, 255), ('rail track', 10, 255), ('building', 11, 2), ('wall', 12, 3), ('fence', 13, 4),
    ('guard rail', 14, 255), ('bridge', 15, 255), ('tunnel', 16, 255), ('pole', 17, 5), ('polegroup', 18, 255),
    ('traffic light', 19, 6), ('traffic sign', 20, 7), ('vegetation', 21, 8), ('terrain', 22, 9), ('sky', 23, 10),
    ('person', 24, 11), ('rider', 25, 12), ('car', 26, 13), ('truck', 27, 14), ('bus', 28, 15), ('caravan', 29, 255),
    ('trailer', 30, 255), ('train', 31, 16), ('motorcycle', 32, 17), ('bicycle', 33, 18)]


@pytest.mark.fast
def test_cityscapes_label_ids_to_train_ids(tmp_path):
    ids = np.array([label_id for _, label_id, _ in CITYSCAPES_LABELS] + [255, 34], np.uint8)
    expected = np.array([train_id for _, _, train_id in CITYSCAPES_LABELS] + [255, 255], np.uint8)
    label_ids = np.tile(ids, (4, 1))
    rng = np.random.default_rng(2)
    for city, stem in (('lindau', 'lindau_000001_000019'), ('frankfurt', 'frankfurt_000000_000294')):
        (tmp_path / 'leftImg8bit' / 'val' / city).mkdir(parents=True)
        (tmp_path / 'gtFine' / 'val' / city).mkdir(parents=True)
        Image.fromarray(random_photo(rng, 4, len(ids))).save(
            tmp_path / 'leftImg8bit' / 'val' / city / (stem + '_leftImg8bit.png'))
        Image.fromarray(label_ids, 'L').save(tmp_path / 'gtFine' / 'val' / city / (stem + '_gtFine_labelIds.png'))
    ds = get_dataset('cityscapes', 'val', root=str(tmp_path))
    assert ds.names == ['frankfurt/frankfurt_000000_000294', 'lindau/lindau_000001_000019']
    image, label = ds[0]
    assert image.shape == (4, len(ids), 3) and ds.num_classes == 19
    np.testing.assert_array_equal(image, official_rgb(ds.files[0][0]))
    np.testing.assert_array_equal(label, np.tile(expected, (4, 1)))
    (tmp_path / 'gtFine' / 'val' / 'lindau' / 'lindau_000001_000019_gtFine_labelIds.png').unlink()
    with pytest.raises(DatasetError, match='lindau_000001_000019_leftImg8bit.png has no label'):
        get_dataset('cityscapes', 'val', root=str(tmp_path))


def write_ade20k(root, annotation):
    for folder in ('images', 'annotations'):
        (root / 'ADEChallengeData2016' / folder / 'validation').mkdir(parents=True, exist_ok=True)
    base = root / 'ADEChallengeData2016'
    Image.fromarray(np.full(annotation.shape + (3,), 90, np.uint8)).save(
        base / 'images' / 'validation' / 'ADE_val_00000001.jpg')
    Image.fromarray(annotation, 'L').save(base / 'annotations' / 'validation' / 'ADE_val_00000001.png')


@pytest.mark.fast
def test_ade20k_zero_is_ignored(tmp_path):
    annotation = np.arange(151, dtype=np.uint8).reshape(1, 151).repeat(3, axis=0)
    write_ade20k(tmp_path, annotation)
    ds = get_dataset('ade20k', 'val', root=str(tmp_path))
    assert ds.names == ['ADE_val_00000001'] and ds.num_classes == 151
    _, label = ds[0]
    assert (label[:, 0] == 255).all()  # 0 ("other", the official ignore_label) -> 255
    np.testing.assert_array_equal(label[:, 1:], annotation[:, 1:])  # 1..150 kept: 151 logits
    write_ade20k(tmp_path, np.full((3, 5), 200, np.uint8))
    with pytest.raises(DatasetError, match=r'ADE_val_00000001.png has values 200 outside'):
        get_dataset('ade20k', 'val', root=str(tmp_path))[0]


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.fast
def test_missing_root_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        get_dataset('voc', 'val', root=str(tmp_path / 'nowhere'))
    assert str(tmp_path / 'nowhere') in str(error.value) and 'pascal_voc.py' in str(error.value)
    assert '--data-root' in str(error.value)
    with pytest.raises(DatasetError) as error:
        get_dataset('voc', 'val', root=str(tmp_path))  # exists, but holds no VOC2012/
    assert 'VOC2012/ImageSets/Segmentation/val.txt' in str(error.value) and 'pascal_voc.py' in str(error.value)
    with pytest.raises(DatasetError, match='ADEChallengeData2016.*ade20k.py'):
        get_dataset('ade20k', 'train', root=str(tmp_path))
    with pytest.raises(DatasetError, match='leftImg8bit.*cityscapes-dataset.com'):
        get_dataset('cityscapes', 'train', root=str(tmp_path))


@pytest.mark.fast
def test_train_aug_without_sbd(voc_root, tmp_path):
    root, _ = voc_root
    (tmp_path / 'VOC2012').symlink_to(root / 'VOC2012')
    with pytest.raises(DatasetError, match='VOCaug/dataset/train.txt.*pascal_voc.py'):
        get_dataset('voc', 'train_aug', root=str(tmp_path))


@pytest.mark.fast
def test_list_naming_a_missing_file(voc_root, tmp_path):
    root, _ = voc_root
    (tmp_path / 'VOC2012').mkdir()
    for folder in ('JPEGImages', 'SegmentationClass'):
        (tmp_path / 'VOC2012' / folder).symlink_to(root / 'VOC2012' / folder)
    write_list(tmp_path / 'VOC2012' / 'ImageSets' / 'Segmentation' / 'val.txt', VOC_VAL + ['ghost'])
    with pytest.raises(DatasetError) as error:
        get_dataset('voc', 'val', root=str(tmp_path))
    assert 'val.txt lists ghost' in str(error.value)
    assert 'JPEGImages/ghost{.jpg,.jpeg,.png} does not exist' in str(error.value)


@pytest.mark.fast
def test_labels_outside_the_classes(tmp_path):
    (tmp_path / 'JPEGImages').mkdir()
    (tmp_path / 'SegmentationClass').mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'JPEGImages' / 'bad.jpg')
    label = np.zeros((6, 8), np.uint8)
    label[1, 1], label[2, 2], label[3, 3] = 30, 21, 255
    voc_palette_png(tmp_path / 'SegmentationClass' / 'bad.png', label)
    write_list(tmp_path / 'ImageSets' / 'Segmentation' / 'val.txt', ['bad'])
    ds = get_dataset('folder', 'val', root=str(tmp_path), num_classes=21)
    with pytest.raises(DatasetError) as error:
        ds[0]
    assert 'bad.png has values 21, 30 outside the 21 classes' in str(error.value)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'SegmentationClass' / 'bad.png')
    with pytest.raises(DatasetError, match='bad.png is a RGB image: labels must be index PNGs'):
        ds[0]
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(tmp_path / 'SegmentationClass' / 'bad.png')
    with pytest.raises(DatasetError, match='bad.png is 5 x 8 but image .*bad.jpg is 6 x 8'):
        ds[0]


@pytest.mark.fast
def test_bad_arguments(voc_root, tmp_path):
    root, _ = voc_root
    with pytest.raises(DatasetError, match='no split .test.'):
        get_dataset('voc', 'test', root=str(root))
    with pytest.raises(DatasetError, match='unknown dataset .coco.'):
        get_dataset('coco', 'val')
    with pytest.raises(DatasetError, match='needs a root .* and num_classes'):
        get_dataset('folder', 'val', root=str(tmp_path))
    with pytest.raises(DatasetError, match='voc has 21 classes, not 20'):
        get_dataset('voc', 'val', root=str(root), num_classes=20)
    with pytest.raises(DatasetError, match='mine.txt'):
        get_dataset('folder', 'mine', root=str(tmp_path), num_classes=3)


# ----------------------------------------------------------------------------------------- palettes


@pytest.mark.fast
def test_palettes():
    voc = palette(21)
    assert voc.shape == (256, 3) and voc.dtype == np.uint8
    for index, colour in VOC_COLOURS.items():
        assert tuple(voc[index]) == colour
    np.testing.assert_array_equal(palette(5), voc)  # other counts: the VOC bit-pattern palette
    cityscapes = palette(19)  # cityscapesScripts colours: road, sidewalk, person, car, bicycle
    assert tuple(cityscapes[0]) == (128, 64, 128) and tuple(cityscapes[1]) == (244, 35, 232)
    assert tuple(cityscapes[11]) == (220, 20, 60) and tuple(cityscapes[13]) == (0, 0, 142)
    assert tuple(cityscapes[18]) == (119, 11, 32)
    ade = palette(151)  # ADE20K SceneParsing colours: wall, building, person, flag (the last)
    assert tuple(ade[1]) == (120, 120, 120) and tuple(ade[2]) == (180, 120, 120)
    assert tuple(ade[13]) == (150, 5, 61) and tuple(ade[150]) == (92, 0, 255)
    assert len({tuple(colour) for colour in ade[1:151]}) >= 148  # (the official table repeats two colours)
    with pytest.raises(DatasetError, match='1..255'):
        palette(256)


@pytest.mark.fast
def test_each_dataset_has_one_table_of_its_facts():
    """Names, colours, crops, ignore label and official scales per dataset, and the spec of your own data."""
    for spec in DATASETS.values():
        assert len(spec.class_names) == len(set(spec.class_names)) == spec.num_classes
        assert spec.palette().shape == (256, 3) and spec.ignore_label == 255
        assert 1.0 in spec.scales and list(spec.scales) == sorted(spec.scales)
    assert DATASETS['voc'].class_names[15] == 'person' and DATASETS['cityscapes'].class_names[13] == 'car'
    ade = DATASETS['ade20k'].class_names  # objectInfo150: wall first, flag last; 0 is "other"
    assert (ade[0], ade[1], ade[13], ade[150]) == ('other', 'wall', 'person', 'flag')
    assert DATASETS['voc'].scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert DATASETS['cityscapes'].scales == (0.75, 1.0, 1.25)
    # weights whose dataset nobody recorded: the dataset with their class count, else your own data
    assert spec_for(num_classes=19) is DATASETS['cityscapes'] and spec_for('ade20k') is DATASETS['ade20k']
    mine = spec_for(num_classes=5)
    assert mine.name == 'folder' and mine.class_names[4] == 'class 4' and mine.eval_crop == (513, 513)
    with pytest.raises(DatasetError, match='voc has 21 classes, not 5'):
        spec_for('voc', 5)
    with pytest.raises(DatasetError, match='--num-classes'):
        spec_for('folder')


# ------------------------------------------------------------------------------------- augmentation

TF_RESIZE = textwrap.dedent('''
    import sys, numpy as np, tensorflow as tf
    cases = np.load(sys.argv[1])
    out = {}
    for key in cases.files:
        if key.startswith('image'):
            size = [int(v) for v in cases['size' + key[5:]]]
            image = tf.cast(tf.constant(cases[key])[None], tf.float32)
            label = tf.constant(cases['label' + key[5:]])[None, :, :, None]
            out['image' + key[5:]] = tf.compat.v1.image.resize_bilinear(image, size, align_corners=True)[0].numpy()
            out['label' + key[5:]] = tf.compat.v1.image.resize_nearest_neighbor(
                label, size, align_corners=True)[0, :, :, 0].numpy()
    np.savez(sys.argv[2], **out)
''')


def official_reference(resized_image, resized_label, crop, offset, flipped):
    """The official pad (127.5 / 255, bottom-right) -> crop -> flip on TF-resized arrays, HWC -> CHW."""
    height, width = max(resized_label.shape[0], crop[0]), max(resized_label.shape[1], crop[1])
    image = np.full((height, width, 3), 127.5, np.float32)
    label = np.full((height, width), 255, np.float32)
    image[:resized_image.shape[0], :resized_image.shape[1]] = resized_image
    label[:resized_label.shape[0], :resized_label.shape[1]] = resized_label
    top, left = offset
    image, label = image[top:top + crop[0], left:left + crop[1]], label[top:top + crop[0], left:left + crop[1]]
    if flipped:
        image, label = image[:, ::-1], label[:, ::-1]
    return image.transpose(2, 0, 1), label


def test_augmentation_equals_the_official_ops_in_tensorflow(tmp_path):
    """apply(scale, offset, flip) == TF resize_bilinear / resize_nearest_neighbor (corners aligned), pad, crop, flip."""
    rng = np.random.default_rng(3)
    image, label = random_photo(rng, 75, 100), random_label(rng, 75, 100)
    crop = (65, 81)
    # (scale, offset, flipped): windows inside, at the far corner, padded (smaller than the crop), and scale 1
    cases = [(2.0, (0, 0), False), (2.0, (85, 119), True), (1.75, (37, 11), False), (0.5, (0, 0), True),
             (0.75, (0, 0), False), (1.25, (28, 44), True), (1.0, (10, 19), False), (1.5, (47, 69), True)]
    aug = TrainAugmentation(crop_size=crop)
    arrays = {}
    for i, (scale, _, _) in enumerate(cases):
        arrays.update({'image%d' % i: image, 'label%d' % i: label,
                       'size%d' % i: [int(np.float32(side) * np.float32(scale)) for side in (75, 100)]})
    np.savez(tmp_path / 'cases.npz', **arrays)
    run_in_tensorflow(TF_RESIZE, tmp_path / 'cases.npz', tmp_path / 'tf.npz')
    resized = np.load(tmp_path / 'tf.npz')
    for i, (scale, offset, flipped) in enumerate(cases):
        got_image, got_label = aug.apply(image, label, np.float32(scale), offset, flipped)
        want_image, want_label = official_reference(resized['image%d' % i], resized['label%d' % i], crop, offset,
                                                    flipped)
        assert got_image.dtype == np.float32 and got_label.dtype == np.float32
        np.testing.assert_array_equal(got_image, want_image, err_msg='case %s' % (cases[i],))
        np.testing.assert_array_equal(got_label, want_label, err_msg='case %s' % (cases[i],))


@pytest.mark.fast
def test_random_draws_cover_the_official_choices():
    aug = TrainAugmentation(crop_size=(50, 60))
    rng = np.random.default_rng(4)
    draws = [aug.draw((75, 100), rng) for _ in range(700)]
    assert sorted({float(scale) for scale, _, _ in draws}) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert 250 < sum(flipped for _, _, flipped in draws) < 450
    for scale, (top, left), _ in draws:
        height, width = int(75 * scale), int(100 * scale)
        assert 0 <= top <= max(height, 50) - 50 and 0 <= left <= max(width, 60) - 60
    fixed = TrainAugmentation(crop_size=(8, 8), min_scale=1.0, max_scale=1.0)
    offsets = {fixed.draw((10, 12), rng)[1] for _ in range(300)}
    assert offsets == {(top, left) for top in range(3) for left in range(5)}  # uniform over 0 .. size - crop
    assert TrainAugmentation(flip=False).draw((10, 10), rng)[2] is False
    assert float(TrainAugmentation(min_scale=1.0, max_scale=1.0).draw((10, 10), rng)[0]) == 1.0


@pytest.mark.fast
def test_padding_and_flip_keep_image_and_label_together():
    """Without resizing (scale 1) the label is a copy of image channel 0; padding is 127.5 / 255 at bottom-right."""
    rng = np.random.default_rng(5)
    label = random_label(rng, 30, 40, ignore_border=False)
    image = np.stack([label * 10, np.zeros_like(label), np.full_like(label, 7)], axis=-1)
    aug = TrainAugmentation(crop_size=(45, 50), min_scale=1.0, max_scale=1.0)
    seen_flips = set()
    for seed in range(20):
        out_image, out_label = aug(image, label, np.random.default_rng(seed))
        assert out_image.shape == (3, 45, 50) and out_label.shape == (45, 50)
        flipped = bool((out_label[:30, 0] == 255).all())  # the padding is on the left after a flip
        seen_flips.add(flipped)
        inside = (slice(0, 30), slice(10, 50) if flipped else slice(0, 40))
        want = label[:, ::-1] if flipped else label
        np.testing.assert_array_equal(out_label[inside], want)
        np.testing.assert_array_equal(out_image[0][inside], want * 10.0)
        assert (out_image[2][inside] == 7).all()
        padding = np.ones((45, 50), bool)
        padding[inside] = False
        assert (out_label[padding] == 255).all() and (out_image[:, padding] == 127.5).all()
    assert seen_flips == {False, True}


@pytest.mark.fast
def test_padding_takes_the_colour_the_network_normalises_to_zero():
    """For the PyTorch DeepLabs (ImageNet normalisation) the padding is the ImageNet mean colour, per channel."""
    import mxnet as mx

    from mylib.models.layers import mean_pixel, normalize_pixels
    image, label = np.full((10, 10, 3), 200, np.uint8), np.zeros((10, 10), np.uint8)
    aug = TrainAugmentation(crop_size=(16, 16), min_scale=1.0, max_scale=1.0, flip=False,
                            pad_value=mean_pixel('imagenet'))
    out_image, _ = aug(image, label, np.random.default_rng(0))
    assert np.allclose(out_image[:, 12, 12], [123.675, 116.28, 103.53]) and (out_image[:, :10, :10] == 200).all()
    normalised = normalize_pixels(mx.nd, mx.nd.array(out_image[None]), 'imagenet').asnumpy()
    assert np.abs(normalised[0, :, 12, 12]).max() < 1e-6


@pytest.mark.fast
def test_labels_are_nearest_neighbour_copies():
    """Labels holding their row (or column) index: every output pixel copies the input pixel nearest to it."""
    height, width = 37, 53
    rows = np.repeat(np.arange(height, dtype=np.uint8)[:, None], width, axis=1)
    cols = np.repeat(np.arange(width, dtype=np.uint8)[None], height, axis=0)
    image = np.zeros((height, width, 3), np.uint8)
    aug = TrainAugmentation(crop_size=(41, 45))
    for seed in range(40):
        scale, offset, flipped = aug.draw((height, width), np.random.default_rng(seed))
        out = [aug.apply(image, label, scale, offset, flipped)[1] for label in (rows, cols)]
        out_rows, out_cols = (label[:, ::-1] if flipped else label for label in out)
        scaled = (int(height * scale), int(width * scale))
        visible = (min(41, scaled[0] - offset[0]), min(45, scaled[1] - offset[1]))
        for label, axis in ((out_rows, 0), (out_cols, 1)):
            assert (label[visible[0]:] == 255).all() and (label[:, visible[1]:] == 255).all()
            copied = label[:visible[0], :visible[1]]
            line = copied[:, 0] if axis == 0 else copied[0]
            assert (copied == (line[:, None] if axis == 0 else line[None])).all()  # whole rows / columns copied
            source = np.arange(offset[axis], offset[axis] + visible[axis]) * ((rows.shape[axis] - 1)
                                                                               / max(scaled[axis] - 1, 1))
            assert np.abs(line - source).max() <= 0.5 + 1e-9  # the nearest source pixel (corners aligned)
    values = np.array([0, 3, 7, 15, 255], np.uint8)
    label = values[np.random.default_rng(6).integers(0, 5, (height, width))]
    for seed in range(10):
        _, out_label = aug(image, label, np.random.default_rng(seed))
        assert set(np.unique(out_label).tolist()) <= set(values.tolist())


@pytest.mark.fast
def test_augmented_dataset_keys(voc_root):
    root, _ = voc_root
    ds = get_dataset('voc', 'train_aug', root=str(root))
    train = AugmentedDataset(ds, TrainAugmentation(crop_size=(21, 23)), seed=11)
    assert len(train) == len(ds) == 5
    first = train[7]  # epoch 1, image 2
    again = train[7]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    expected = TrainAugmentation(crop_size=(21, 23))(*ds[2], np.random.default_rng([11, 1, 2]))
    np.testing.assert_array_equal(first[0], expected[0])
    np.testing.assert_array_equal(first[1], expected[1])
    epochs = [train[epoch * 5 + 2][0] for epoch in range(6)]
    assert len({item.tobytes() for item in epochs}) > 1  # epochs differ
    with pytest.raises(IndexError):
        train[-1]


AUGMENT_IN_A_FRESH_PROCESS = textwrap.dedent('''
    import hashlib, sys
    sys.path.insert(0, sys.argv[1])
    from mylib.data import AugmentedDataset, TrainAugmentation, get_dataset
    dataset = get_dataset('voc', 'train_aug', root=sys.argv[2])
    train = AugmentedDataset(dataset, TrainAugmentation(crop_size=(21, 23)), 11)
    for key in map(int, sys.argv[3].split(',')):
        image, label = train[key]
        print(key, hashlib.sha1(image.tobytes() + label.tobytes()).hexdigest())
''')


def digest(image, label):
    return hashlib.sha1(np.asarray(image).tobytes() + np.asarray(label).tobytes()).hexdigest()


@pytest.mark.fast
def test_augmented_dataset_same_in_any_process_and_order(voc_root):
    from mxnet import gluon
    root, _ = voc_root
    train = AugmentedDataset(get_dataset('voc', 'train_aug', root=str(root)), TrainAugmentation(crop_size=(21, 23)),
                             seed=11)
    keys = [13, 2, 7, 0, 24, 11, 3, 19]
    here = {key: digest(*train[key]) for key in sorted(keys)}
    loader = gluon.data.DataLoader(train, batch_size=2, sampler=keys, num_workers=2)
    in_workers = {}
    for batch_keys, (images, labels) in zip([keys[i:i + 2] for i in range(0, 8, 2)], loader):
        for key, image, label in zip(batch_keys, images.asnumpy(), labels.asnumpy()):
            in_workers[key] = digest(image, label)
    fresh = subprocess.run([sys.executable, '-c', AUGMENT_IN_A_FRESH_PROCESS, str(REPO), str(root),
                            ','.join(map(str, reversed(keys)))], check=True, capture_output=True, text=True)
    in_fresh = {int(key): value for key, value in (line.split() for line in fresh.stdout.splitlines())}
    assert here == in_workers == in_fresh
    assert len(set(here.values())) == len(keys)
