"""Helpers of the tests: paths of the shared reference, scripts run as a user runs them, generated
checkpoints and datasets, inputs and random networks.

Test modules import from here (pytest puts tests/ on sys.path: rootdir-relative imports, no package).
mxnet, TensorFlow and PIL are imported inside the functions: conftest.py sets the environment they read
before anything imports mxnet, and TensorFlow only ever runs in subprocesses.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

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


def one_line_error(result, prog, *needles, status=1):
    """Assert that `result` failed with `status` and one error line naming `needles`; return that line."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert 'Traceback' not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('%s: error: ' % prog)]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


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


def official_outputs(photo):
    """The official TF outputs for one photo (input_uint8, merged_logits NHWC, labels)."""
    return dict(np.load(REFERENCE / 'os16' / ('%s.npz' % photo)))


def padded_input(image, value=127.5):
    """H x W x 3 uint8 -> 1 x 3 x 513 x 513 float32 NDArray, padded at bottom/right with `value`."""
    import mxnet as mx
    canvas = np.full((CROP, CROP, 3), value, np.float32)
    canvas[:image.shape[0], :image.shape[1]] = image
    return mx.nd.array(canvas.transpose(2, 0, 1)[None])


def random_image(height, width, batch=1, seed=0):
    """batch x 3 x height x width float32 NDArray of uniform pixel values in [0, 255]."""
    import mxnet as mx
    rng = np.random.default_rng(seed)
    return mx.nd.array(rng.uniform(0, 255, (batch, 3, height, width)).astype(np.float32))


def initialized(net, seed=0):
    """`net` with random weights and batch-norm statistics that keep activations of order 1."""
    import mxnet as mx
    mx.random.seed(seed)
    weights = mx.init.MSRAPrelu(factor_type='in', slope=0)  # over the layers' own (official, small) initializers
    for name, param in net._collect_params_with_prefix().items():
        param.initialize(init=weights if name.endswith('weight') else None)
    rng = np.random.default_rng(seed)
    for name, param in net._collect_params_with_prefix().items():
        leaf = name.rsplit('.', 1)[-1]
        draw = {'gamma': lambda s: rng.uniform(0.5, 1.5, s), 'beta': lambda s: rng.normal(0, 0.2, s),
                'running_mean': lambda s: rng.normal(0, 0.2, s), 'running_var': lambda s: rng.uniform(0.5, 2, s),
                'bias': lambda s: rng.normal(0, 0.1, s)}.get(leaf)
        if draw:
            param.set_data(mx.nd.array(draw(param.shape)))
    return net


# --- training runs on tiny generated data ----------------------------------------------------------
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS='1')  # for processes that run side by side on 2 cores


def synthetic_shapes(count, size, seed):
    """{name: (image, label)}: the colour tells the class (red squares 1, blue discs 2, grey noise 0)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    items = {}
    for index in range(count):
        image = rng.normal(128, 20, (size, size, 3)).clip(0, 255).astype(np.uint8)
        label = np.zeros((size, size), np.uint8)
        for cls, colour in ((1, (220, 30, 30)), (2, (30, 30, 220))):
            cy, cx = rng.integers(10, size - 10, 2)
            radius = int(rng.integers(6, 12))
            inside = ((np.abs(y - cy) <= radius) & (np.abs(x - cx) <= radius) if cls == 1
                      else (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2)
            image[inside], label[inside] = colour, cls
        label[0] = 255  # a row of ignored pixels
        items['img%02d' % index] = (image, label)
    return items


def train_args(data, run_dir, *extra, iterations=4, gpus='cpu'):
    """train.py's options for the tiny dataset; gpus=None leaves --gpus to its default."""
    device = ('--gpus', gpus) if gpus else ()
    return ('--dataset', 'folder', '--data-root', data, '--num-classes', '3', '--crop-size', '65x65',
            '--batch-size', '2', '--iterations', str(iterations), '--num-workers', '0', '--run-dir', run_dir,
            '--quiet') + device + extra


def read_metrics(run_dir):
    with open(os.path.join(run_dir, 'metrics.jsonl')) as stream:
        return [json.loads(line) for line in stream]


# --- the official model zoo references (../shared/reference/zoo) -------------------------------------
ZOO = REFERENCE / 'zoo'
ZOO_REFERENCES = {  # folder of outputs -> checkpoint recipe (manifest_<name>.json, statistics_<name>.npz)
    'x71_dpc_os16': 'x71_dpc_cityscapes19',
    'r101_v3_os16': 'r101_v3_voc21',
    'mnv2_voc_os16': 'mnv2_voc21',
    'mnv3l_city': 'mnv3l_city19',
    'mnv2_imagenet': 'mnv2_imagenet1001',
    # made with the official code like the shared ones, kept in this repository (tests/data/official/README.md)
    'edgetpu_city_os16': 'edgetpu_dm100_city19',
    'edgetpu_slim_city_os32': 'edgetpu_dm075_city19',
    'edgetpu_slim_os8_c5': 'edgetpu_dm075_c5',
    'edgetpu_imagenet': 'edgetpu_imagenet1001',
}
OWN_ZOO = REPO / 'tests' / 'data' / 'official'


def zoo_root(folder):
    """The folder holding a zoo reference (`ZOO_REFERENCES` key) and its recipe: the shared one or ours."""
    return OWN_ZOO if (OWN_ZOO / folder).is_dir() else ZOO


def convert_zoo_references(folder, references):
    """{reference: (params path, what extract_weights.py printed)} for the zoo references (`ZOO_REFERENCES`
    keys): each recipe's checkpoint written by the reference's own make_checkpoint.py into `folder/<name>/`,
    converted by `converters/extract_weights.py CKPT --output folder/<name>.params` (its `main`, as the
    script runs it), then deleted (up to 365 MB each). One subprocess for all: TensorFlow loads once."""
    code = ('import contextlib, io, runpy, shutil, sys\n'
            'make = runpy.run_path(sys.argv[1])\n'
            'convert = runpy.run_path(sys.argv[2], run_name="extract_weights")["main"]\n'
            'out = sys.argv[3]\n'
            'for recipe in sys.argv[4:]:\n'
            '    zoo, name = recipe.split("|")\n'
            '    prefix = "%s/%s/model.ckpt" % (out, name)\n'
            '    make["main"]([sys.argv[1], "%s/manifest_%s.json" % (zoo, name),\n'
            '                  "%s/statistics_%s.npz" % (zoo, name), prefix])\n'
            '    printed = io.StringIO()\n'
            '    with contextlib.redirect_stdout(printed):\n'
            '        status = convert([prefix, "--output", "%s/%s.params" % (out, name), "--quiet"])\n'
            '    shutil.rmtree("%s/%s" % (out, name))\n'
            '    if status:\n'
            '        sys.exit("extract_weights.py failed on %s: %s" % (name, status))\n'
            '    with open("%s/%s.stdout" % (out, name), "w") as stream:\n'
            '        stream.write(printed.getvalue())\n')
    recipes = ['%s|%s' % (zoo_root(reference), ZOO_REFERENCES[reference]) for reference in references]
    subprocess.run([sys.executable, '-c', code, str(REFERENCE / 'make_checkpoint.py'),
                    str(REPO / 'converters' / 'extract_weights.py'), str(folder)] + recipes,
                   check=True, capture_output=True, cwd=REPO)
    names = {reference: ZOO_REFERENCES[reference] for reference in references}
    return {reference: (Path(folder) / (name + '.params'), (Path(folder) / (name + '.stdout')).read_text())
            for reference, name in names.items()}


def zoo_input(image, crop, value=127.5):
    """H x W x 3 uint8 -> 1 x 3 x crop[0] x crop[1] float32 NDArray, padded at bottom/right with `value`."""
    import mxnet as mx
    canvas = np.full((crop[0], crop[1], 3), value, np.float32)
    canvas[:image.shape[0], :image.shape[1]] = image
    return mx.nd.array(canvas.transpose(2, 0, 1)[None])
