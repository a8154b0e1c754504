"""Every script reports what a user can cause in one line, `prog: error: ...`, never with a traceback:
bad options (status 2), a full disk, a read-only folder, a failed download (status 1); nothing half-written
is left behind. The disks are small tmpfs mounts (the tests run as root, as CI does)."""
import functools
import http.server
import importlib.util
import os
import subprocess
import sys
import threading

import mxnet as mx
import numpy as np
import pytest
from helpers import REPO, one_line_error, run_script, write_segmentation_folder

from mylib import DeepLabV3Plus
from mylib.cli import OPTION_ERROR_STATUS


@pytest.mark.fast
@pytest.mark.parametrize('script, args, culprit', [
    ('evaluate.py', ['--weights', 'w.params', '--scales', 'nan'], '--scales'),
    ('evaluate.py', ['--weights', 'w.params', '--scales', '1,inf'], '--scales'),
    ('evaluate.py', ['--weights', 'w.params', '--limit', '0'], '--limit'),
    ('evaluate.py', ['--weights', 'w.params', '--batch-size', '-1'], '--batch-size'),
    ('evaluate.py', ['--weights', 'w.params', '--gpus', '7'], '--gpus'),
    ('predict.py', ['a.jpg', '--crop-size', '1x1'], '--crop-size'),
    ('predict.py', ['a.jpg', '--weights', 'w.params', '--model', 'x'], '--model'),
    ('export.py', ['--weights', 'w.params', '--format', 'onnx', '--size', '513'], '--size'),
    ('export.py', ['--weights', 'w.params', '--format', 'onnx', '--output', '/no/such/folder/m'], '--output'),
    ('train.py', ['--run-dir', 'r', '--batch-size', '0'], '--batch-size'),
    ('train.py', ['--run-dir', 'r', '--checkpoint-every', '0'], '--checkpoint-every'),
    ('train.py', ['--run-dir', 'r', '--log-every', '0'], '--log-every'),
    ('train.py', ['--run-dir', 'r', '--lr', 'nan'], '--lr'),
    ('train.py', ['--run-dir', 'r', '--momentum', '1.5'], '--momentum'),
    ('train.py', ['--run-dir', 'r', '--gpus', 'cpu:2'], 'train_multi_gpu.py'),
    ('train_multi_gpu.py', ['--run-dir', 'r'], '--gpus'),
    ('converters/extract_weights.py', ['model.ckpt', '--h5-only'], '--save-h5'),
])
def test_bad_options_are_one_line_naming_the_option(script, args, culprit, tmp_path, monkeypatch, capsys):
    """In this process, for speed: each script's `main` as its `__main__` runs it (the same wrapper)."""
    monkeypatch.chdir(tmp_path)
    try:
        status = script_main(script)(args)
    except SystemExit as stop:  # argparse's own errors leave through sys.exit
        status = stop.code
    captured = capsys.readouterr()
    result = subprocess.CompletedProcess(script, status, captured.out, captured.err)
    one_line_error(result, os.path.basename(script), culprit, status=OPTION_ERROR_STATUS)


def test_an_option_error_from_the_command_line(tmp_path):
    """One of them as a user meets it, in its own process."""
    result = run_script('train.py', '--run-dir', tmp_path, '--batch-size', '0', check=False)
    one_line_error(result, 'train.py', '--batch-size', 'give at least 1', status=OPTION_ERROR_STATUS)


def script_main(script):
    """The `main` of a script of the repository (`evaluate.py`, `converters/extract_weights.py`)."""
    name = 'script_' + script.replace('/', '_').replace('.', '_')
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].main


# --- faults of the machine: a full disk, a read-only folder, a failed download ----------------------
def mount_tmpfs(path, options):
    path.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip('cannot mount a tmpfs here (%s): these faults need root, as CI has' % result.stderr.strip())
    return path


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB disk: a few small files fit, weights (165 MB) do not."""
    disk = mount_tmpfs(tmp_path / 'full', 'size=64k')
    yield disk
    subprocess.run(['umount', str(disk)], check=True)


@pytest.fixture
def read_only(tmp_path):
    disk = mount_tmpfs(tmp_path / 'read-only', 'ro,size=64k')
    yield disk
    subprocess.run(['umount', str(disk)], check=True)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Random DeepLab v3+ weights (21 classes) and a one-image folder dataset."""
    folder = tmp_path_factory.mktemp('faults')
    net = DeepLabV3Plus(num_classes=21)
    net.initialize(mx.init.Xavier())
    net.save_parameters(str(folder / 'w.params'))
    rng = np.random.default_rng(0)
    image, label = rng.integers(0, 255, (40, 40, 3), np.uint8), rng.integers(0, 21, (40, 40)).astype(np.uint8)
    write_segmentation_folder(folder / 'data', {'one': (image, label)}, 'val')
    write_segmentation_folder(folder / 'data', {'one': (image, label)}, 'train')
    return folder


def fill(disk):
    """Fill `disk` to the last byte with a file named 'filler'."""
    with open(disk / 'filler', 'wb', buffering=0) as stream:
        try:
            while True:
                stream.write(b'x' * 4096)
        except OSError:
            pass


def test_predict_on_a_full_disk(weights, full_disk):
    fill(full_disk)
    result = run_script('predict.py', weights / 'data' / 'JPEGImages' / 'one.png', '--weights', weights / 'w.params',
                        '--crop-size', '41x41', '--out', full_disk, check=False)
    one_line_error(result, 'predict.py', str(full_disk), 'No space left on device')
    assert os.listdir(full_disk) == ['filler']  # no half-written mask


def test_evaluate_into_a_read_only_folder(weights, read_only):
    result = run_script('evaluate.py', '--weights', weights / 'w.params', '--dataset', 'folder', '--data-root',
                        weights / 'data', '--num-classes', '21', '--crop-size', '41x41', '--quiet',
                        '--output', read_only / 'results.json', check=False)
    one_line_error(result, 'evaluate.py', str(read_only), 'Read-only file system')


def test_export_on_a_full_disk(weights, full_disk):
    result = run_script('export.py', '--weights', weights / 'w.params', '--format', 'symbol', '--no-check',
                        '--output', full_disk / 'deeplab', check=False)
    one_line_error(result, 'export.py', str(full_disk), 'No space left on device')
    assert os.listdir(full_disk) == []


def test_training_on_a_full_disk(weights, full_disk):
    result = run_script('train.py', '--dataset', 'folder', '--data-root', weights / 'data', '--num-classes', '21',
                        '--crop-size', '33x33', '--batch-size', '1', '--iterations', '1', '--num-workers', '0',
                        '--val-split', 'none', '--gpus', 'cpu', '--quiet', '--run-dir', full_disk / 'run',
                        check=False)
    one_line_error(result, 'train.py', str(full_disk), 'no space left on its disk', 'needs about')
    leftovers = [name for _, folders, files in os.walk(full_disk) for name in folders + files
                 if name.endswith(('.partial', '.tmp'))]
    assert leftovers == []  # the partial checkpoint is removed


def test_converter_on_a_full_disk(reference_checkpoint, full_disk):
    result = run_script('converters/extract_weights.py', reference_checkpoint, '--save-h5', full_disk / 'a.h5',
                        '--h5-only', '--quiet', check=False)
    one_line_error(result, 'extract_weights.py', str(full_disk))
    assert os.listdir(full_disk) == []


def test_model_cache_in_a_read_only_folder(read_only, tmp_path):
    env = dict(os.environ, MXNET_HOME=str(read_only / 'mxnet'))
    result = run_script('converters/extract_weights.py', '--model', 'xception65_coco_voc_trainaug', '-q',
                        '--output', tmp_path / 'voc.params', env=env, check=False)
    one_line_error(result, 'extract_weights.py', str(read_only), 'Read-only file system')


@pytest.fixture
def empty_server(tmp_path):
    """An HTTP server on loopback that has no files (every download answers 404)."""
    (tmp_path / 'empty').mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / 'empty'))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_failed_download_is_one_line(empty_server, tmp_path):
    """predict.py's default model, fetched from a mirror that does not have it."""
    env = dict(os.environ, MXNET_HOME=str(tmp_path / 'mxnet'), DEEPLAB_GLUON_MIRROR=empty_server)
    Image = pytest.importorskip('PIL.Image')
    Image.new('RGB', (8, 8)).save(tmp_path / 'a.png')
    result = run_script('predict.py', tmp_path / 'a.png', '--out', tmp_path / 'out', env=env, check=False)
    one_line_error(result, 'predict.py', empty_server, 'download failed', 'HTTP 404')


# --- inputs that used to stop a run, or silently lose a result -----------------------------------
def test_predict_keeps_going_past_odd_images_and_never_overwrites_a_mask(weights, tmp_path):
    from PIL import Image
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (4, 800, 3), np.uint8)).save(photos / 'strip.png')  # shrunk side < 1
    for name in ('a.jpg', 'a.png', 'a_1.png', 'A.bmp'):
        Image.fromarray(rng.integers(0, 255, (30, 20, 3), np.uint8)).save(photos / name)
    result = run_script('predict.py', photos, '--weights', weights / 'w.params', '--crop-size', '65x65',
                        '--out', tmp_path / 'masks', check=False)
    assert result.returncode == 0, result.stderr
    masks = sorted(os.listdir(tmp_path / 'masks'))
    assert len(masks) == 5 and len({mask.lower() for mask in masks}) == 5, masks
    assert np.asarray(Image.open(tmp_path / 'masks' / 'strip.png')).shape == (4, 800)
    (tmp_path / 'file').write_text('not a folder')
    result = run_script('predict.py', photos / 'a.jpg', '--weights', weights / 'w.params', '--out',
                        tmp_path / 'file', check=False)
    one_line_error(result, 'predict.py', '--out', status=OPTION_ERROR_STATUS)


def test_evaluate_refuses_zero_images_and_a_folder_as_output(weights, tmp_path):
    (weights / 'data' / 'ImageSets' / 'Segmentation' / 'empty.txt').write_text('')
    common = ('--weights', weights / 'w.params', '--dataset', 'folder', '--data-root', weights / 'data',
              '--num-classes', '21', '--crop-size', '41x41', '--quiet')
    result = run_script('evaluate.py', *common, '--split', 'empty', '--output', tmp_path / 'r.json', check=False)
    one_line_error(result, 'evaluate.py', 'no images to evaluate')
    assert not (tmp_path / 'r.json').exists()
    result = run_script('evaluate.py', *common, '--output', tmp_path, check=False)
    one_line_error(result, 'evaluate.py', '--output', 'is a folder', status=OPTION_ERROR_STATUS)


@pytest.mark.parametrize('fault', ['label outside the classes', 'label of another size', 'RGB label',
                                   'truncated JPEG'])
def test_a_bad_file_in_the_dataset_is_one_line_naming_it(weights, tmp_path, fault):
    from PIL import Image
    rng = np.random.default_rng(2)
    image, label = rng.integers(0, 255, (30, 30, 3), np.uint8), np.zeros((30, 30), np.uint8)
    root = write_segmentation_folder(tmp_path / 'data', {'good': (image, label), 'bad': (image, label)}, 'val',
                                     image_format='jpg')
    culprit = root / 'SegmentationClass' / 'bad.png'
    if fault == 'label outside the classes':
        Image.fromarray(np.full((30, 30), 50, np.uint8), 'L').save(culprit)
    elif fault == 'label of another size':
        Image.fromarray(np.zeros((20, 30), np.uint8), 'L').save(culprit)
    elif fault == 'RGB label':
        Image.fromarray(image).save(culprit)
    else:
        culprit = root / 'JPEGImages' / 'bad.jpg'
        culprit.write_bytes(culprit.read_bytes()[:200])
    result = run_script('evaluate.py', '--weights', weights / 'w.params', '--dataset', 'folder', '--data-root', root,
                        '--num-classes', '21', '--crop-size', '41x41', '--quiet', '--output', tmp_path / 'r.json',
                        check=False)
    one_line_error(result, 'evaluate.py', str(culprit))
    assert not (tmp_path / 'r.json').exists()
