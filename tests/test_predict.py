"""predict.py on every kind of image a user has, and on a broken file."""
import numpy as np
import pytest
from helpers import initialized, one_line_error, run_script
from PIL import Image

from mylib import DeepLabV3Plus
from mylib.data import palette
from mylib.images import read_rgb

SCRIPT = 'predict.py'


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'random21.params'
    initialized(DeepLabV3Plus(num_classes=21), seed=7).save_parameters(str(path))
    return path


def smooth_photo(height, width, seed):
    """A photo-like RGB image (smooth gradients plus a little noise), so that JPEG keeps it close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(6 * x + phase) * np.cos(5 * y - phase) for phase in rng.uniform(0, 3, 3)]
    image = 127.5 + 100 * np.stack(channels, axis=2) + rng.normal(0, 3, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """One file of every kind; returns (folder, {kind: file name})."""
    folder = tmp_path_factory.mktemp('photos')
    rgb = smooth_photo(40, 56, seed=1)
    gray = rgb.mean(axis=2).astype(np.uint8)
    files = {}

    def save(kind, image, name, **options):
        image.save(folder / name, **options)
        files[kind] = name

    save('rgb_png', Image.fromarray(rgb), 'rgb.png')
    save('jpeg', Image.fromarray(rgb), 'photo.jpg', quality=95)
    save('bmp', Image.fromarray(rgb), 'bitmap.bmp')  # (names differing by extension: test_errors.py)
    save('gray', Image.fromarray(gray, 'L'), 'gray.png')
    save('gray16', Image.fromarray(gray.astype(np.uint16) * 257), 'gray16.png')  # same grey, 16 bits
    save('rgba', Image.fromarray(np.dstack([rgb, np.full(gray.shape, 90, np.uint8)]), 'RGBA'), 'rgba.png')
    save('palette', Image.fromarray(rgb).quantize(64), 'palette.png')
    save('cmyk', Image.fromarray(rgb).convert('CMYK'), 'cmyk.jpg', quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels must be turned 90 degrees clockwise to be upright
    save('exif', Image.fromarray(np.rot90(rgb, k=1)), 'rotated.png', exif=exif.tobytes())  # stored turned left
    save('large', Image.fromarray(smooth_photo(150, 90, seed=2)), 'large.png')  # larger than the 65 crop
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    files['broken'] = 'broken.jpg'
    (folder / 'notes.txt').write_text('not an image, and not listed by extension')
    return folder, files


@pytest.fixture(scope='module')
def predicted(photos, weights, tmp_path_factory):
    """predict.py run once on the folder, with --overlay and a small crop."""
    folder, _ = photos
    out = tmp_path_factory.mktemp('out')
    result = run_script(SCRIPT, folder, '--weights', weights, '--out', out, '--overlay', '--crop-size', '65x65',
                        check=False)
    return out, result


def reports(result):
    """The lines predict.py wrote on stderr about the run: `predict.py: ...`."""
    return [line for line in result.stderr.splitlines() if line.startswith('predict.py: ')]


def labels_of(out, name):
    with Image.open(out / (name.rsplit('.', 1)[0] + '.png')) as image:
        assert image.mode == 'P'
        assert np.array_equal(np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:21], palette(21)[:21])
        return np.asarray(image)


def test_a_broken_file_is_reported_by_name_and_the_others_are_processed(predicted, photos):
    out, result = predicted
    _, files = photos
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
    reported = reports(result)  # a line for the broken file (not an error of the run), then the summary
    assert len(reported) == 2 and 'broken.jpg' in reported[0] and 'error:' not in reported[0], result.stderr
    assert reported[1] == 'predict.py: 1 of 11 inputs failed', result.stderr
    progress = [line.split()[0] for line in result.stdout.splitlines() if ' -> ' in line]
    assert len(progress) == 10 and all(mark.endswith('/11]') for mark in progress)  # [i/N] per written image
    written = sorted(path.name for path in out.iterdir())
    for kind, name in files.items():
        stem = name.rsplit('.', 1)[0]
        assert (stem + '.png' in written) == (kind != 'broken'), kind
        assert (stem + '_overlay.jpg' in written) == (kind != 'broken'), kind
    assert not any(name.startswith('.') for name in written)  # no temporary files left


def test_outputs_have_the_photos_upright_size(predicted, photos):
    out, _ = predicted
    folder, files = photos
    for kind, name in files.items():
        if kind == 'broken':
            continue
        height, width = read_rgb(folder / name).shape[:2]
        assert labels_of(out, name).shape == (height, width), kind
        with Image.open(out / (name.rsplit('.', 1)[0] + '_overlay.jpg')) as overlay:
            assert overlay.size == (width, height), kind
    assert labels_of(out, files['exif']).shape == (40, 56)  # turned upright by its EXIF orientation
    assert labels_of(out, files['large']).shape == (150, 90)  # shrunk to the crop and resized back


def test_same_pixels_in_other_formats_give_the_same_labels(predicted, photos):
    out, files = predicted[0], photos[1]
    reference = labels_of(out, files['rgb_png'])
    assert np.array_equal(labels_of(out, files['bmp']), reference)
    assert np.array_equal(labels_of(out, files['rgba']), reference)    # alpha dropped
    assert np.array_equal(labels_of(out, files['exif']), reference)    # same pixels once upright
    assert np.array_equal(labels_of(out, files['gray16']), labels_of(out, files['gray']))  # 16 bits scaled to 8
    assert len(np.unique(reference)) > 1  # the random network does not predict one class everywhere


@pytest.mark.fast
def test_read_rgb_converts_every_mode(photos):
    folder, files = photos
    for kind in ('gray', 'gray16', 'rgba', 'palette', 'cmyk', 'exif', 'jpeg', 'bmp'):
        image = read_rgb(folder / files[kind])
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, kind
    gray = read_rgb(folder / files['gray'])
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert np.array_equal(read_rgb(folder / files['gray16']), gray)


def test_missing_input_and_empty_folder(weights, tmp_path):
    (tmp_path / 'empty').mkdir()
    result = run_script(SCRIPT, tmp_path / 'nothing.jpg', tmp_path / 'empty', '--weights', weights, '--out',
                        tmp_path / 'out', check=False)
    one_line_error(result, SCRIPT)  # nothing left to segment: status 1, `predict.py: error: ...`
    problems = [line for line in reports(result) if not line.startswith('predict.py: error: ')]
    assert len(problems) == 2, result.stderr  # each input's problem on its own line, before that error
    assert 'nothing.jpg: no such file' in problems[0] and 'no images in this folder' in problems[1], problems


def test_help():
    result = run_script(SCRIPT, '--help')
    assert '--overlay' in result.stdout and 'palette PNG' in result.stdout
