"""The test environment and the shared fixtures: the reference checkpoint of ../shared/reference,
converted as a user would. Plain helpers live in helpers.py.

TensorFlow is only ever imported in subprocesses (the converter's reading stage, and
`helpers.write_tf_checkpoint` for generated checkpoints), never in the test process next to mxnet.
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))  # before mxnet is imported
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
# SyncBatchNorm blocks an engine thread until both devices' calls arrive, and CPU contexts share the
# engine's temp buffers (mylib/training/loop.py, check_sync_batch_norm): with MXNet's 4 buffers even the
# one-layer equivalence test in tests/test_training.py deadlocks; with 64 it has room.
os.environ.setdefault('MXNET_CPU_TEMP_COPY', '64')

import pytest  # noqa: E402
from helpers import REFERENCE, ZOO_REFERENCES, convert_zoo_references, run_script  # noqa: E402


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


@pytest.fixture(scope='session')
def zoo_params(tmp_path_factory):
    """{reference folder: (converted .params, converter stdout)} for every zoo reference, each converted by
    extract_weights.py as a user would (`helpers.convert_zoo_references`)."""
    return convert_zoo_references(tmp_path_factory.mktemp('zoo'), ZOO_REFERENCES)
