"""Shared fixtures: the reference checkpoint of ../shared/reference, converted as a user would.

TensorFlow is only ever imported in subprocesses (the converter's reading stage, and
`write_tf_checkpoint` for generated checkpoints), never in the test process next to mxnet.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))  # before mxnet is imported
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
# SyncBatchNorm blocks an engine thread until both devices' calls arrive, and CPU contexts share the
# engine's temp buffers (mylib/training/loop.py, check_sync_batch_norm): with MXNet's 4 buffers even the
# one-layer equivalence test in tests/test_training.py deadlocks; with 64 it has room.
os.environ.setdefault('MXNET_CPU_TEMP_COPY', '64')

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('DEEPLAB_REFERENCE', REPO.parent / 'shared' / 'reference'))
PHOTOS = ('grace_hopper', 'astronaut', 'chelsea', 'coffee')
CROP = 513


def run_script(*args, cwd=None, env=None, check=True):
    """Run a Python script of the repository as a user would; return the CompletedProcess.

    A script path relative to the repository (`converters/extract_weights.py`) works from any `cwd`.
    """
    args = [str(REPO / arg) if (REPO / str(arg)).is_file() else str(arg) for arg in args]
    result = subprocess.run([sys.executable, *args], cwd=cwd or REPO, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s\n%s' % (args, result.returncode, result.stdout, result.stderr))
    return result


def write_tf_checkpoint(prefix, arrays):
    """Write a TF checkpoint holding `arrays` ({name: numpy array}) at `prefix`, in a subprocess."""
    npz = str(prefix) + '.arrays.npz'
    np.savez(npz, **{name.replace('/', '|'): value for name, value in arrays.items()})
    code = ('import sys, numpy as np, tensorflow as tf\n'
            'a = np.load(sys.argv[1]); names = sorted(a.files)\n'
            'tf.raw_ops.SaveV2(prefix=sys.argv[2], tensor_names=[n.replace("|", "/") for n in names],\n'
            '    shape_and_slices=[""] * len(names), tensors=[tf.constant(a[n]) for n in names])\n')
    subprocess.run([sys.executable, '-c', code, npz, str(prefix)], check=True, capture_output=True)
    os.remove(npz)
    return str(prefix)


def write_segmentation_folder(root, items, split, image_format='png'):
    """A VOC-layout dataset: root/JPEGImages/<name>.<format>, root/SegmentationClass/<name>.png (palette PNG,
    VOC colours), root/ImageSets/Segmentation/<split>.txt. items: {name: (H x W x 3 uint8, H x W uint8)}."""
    from PIL import Image

    from mylib.data import palette
    root = Path(root)
    for folder in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name, (image, label) in items.items():
        Image.fromarray(image).save(root / 'JPEGImages' / ('%s.%s' % (name, image_format)))
        indexed = Image.fromarray(np.asarray(label, np.uint8), mode='P')
        indexed.putpalette(palette(21).ravel().tolist())
        indexed.save(root / 'SegmentationClass' / ('%s.png' % name))
    with open(root / 'ImageSets' / 'Segmentation' / ('%s.txt' % split), 'a') as stream:
        stream.writelines(name + '\n' for name in items)
    return root


def reference_manifest():
    """[{name, shape, dtype}] of every tensor of the official-named reference checkpoint."""
    with open(REFERENCE / 'manifest_voc21.json') as stream:
        return json.load(stream)


def padded_input(image, value=127.5):
    """H x W x 3 uint8 -> 1 x 3 x 513 x 513 float32 NDArray, padded at bottom/right with `value`."""
    import mxnet as mx
    canvas = np.full((CROP, CROP, 3), value, np.float32)
    canvas[:image.shape[0], :image.shape[1]] = image
    return mx.nd.array(canvas.transpose(2, 0, 1)[None])


def initialized(net, seed=0):
    """`net` with random weights and batch-norm statistics that keep activations of order 1."""
    import mxnet as mx
    mx.random.seed(seed)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0))
    rng = np.random.default_rng(seed)
    for name, param in net._collect_params_with_prefix().items():
        leaf = name.rsplit('.', 1)[-1]
        draw = {'gamma': lambda s: rng.uniform(0.5, 1.5, s), 'beta': lambda s: rng.normal(0, 0.2, s),
                'running_mean': lambda s: rng.normal(0, 0.2, s), 'running_var': lambda s: rng.uniform(0.5, 2, s),
                'bias': lambda s: rng.normal(0, 0.1, s)}.get(leaf)
        if draw:
            param.set_data(mx.nd.array(draw(param.shape)))
    return net



@pytest.fixture(scope='session')
def reference_checkpoint(tmp_path_factory):
    """The TF checkpoint of ../shared/reference, made with its own recipe (about 10 s, 350 MB)."""
    if not (REFERENCE / 'make_checkpoint.py').is_file():
        raise FileNotFoundError('the shared reference is missing: %s (set DEEPLAB_REFERENCE)' % REFERENCE)
    prefix = tmp_path_factory.mktemp('reference') / 'model.ckpt'
    run_script(REFERENCE / 'make_checkpoint.py', REFERENCE / 'manifest_voc21.json',
               REFERENCE / 'statistics_voc21.npz', prefix)
    return prefix


@pytest.fixture(scope='session')
def converted_reference(reference_checkpoint, tmp_path_factory):
    """(params path, stdout) of `python converters/extract_weights.py CKPT -o FILE.params`."""
    output = tmp_path_factory.mktemp('converted') / 'voc21.params'
    result = run_script('converters/extract_weights.py', reference_checkpoint, '--output', output)
    return output, result.stdout


@pytest.fixture(scope='session')
def reference_net(converted_reference):
    """DeepLabV3Plus(21) at OS16 with the converted reference weights, hybridized."""
    from mylib import DeepLabV3Plus
    net = DeepLabV3Plus(num_classes=21, output_stride=16)
    net.load_parameters(str(converted_reference[0]))
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def official_outputs(photo):
    """The official TF outputs for one photo (input_uint8, merged_logits NHWC, labels)."""
    return dict(np.load(REFERENCE / 'os16' / ('%s.npz' % photo)))
