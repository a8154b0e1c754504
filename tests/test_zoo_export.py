"""export.py on every family, as users run it: ONNX (checked in onnxruntime) and the MXNet symbol.

The weights are the zoo references converted by extract_weights.py (`zoo_params`); export.py runs the
exported file against the Gluon model on a random input before it keeps it. Even sizes are included:
MobileNet's TF 'SAME' subsampling becomes a fixed slice in the ONNX graph, which must take the rows
that the parity-free Gluon graph takes.
"""
import mxnet as mx
import numpy as np
import pytest
from helpers import ONE_THREAD, run_script

import mylib
from mylib.export import onnxruntime_logits, relative_difference


@pytest.mark.parametrize('folder, size, format', [
    ('mnv2_voc_os16', '64x96', 'onnx'),         # even sizes: every stride-2 layer pads 0 before, 1 after
    ('mnv3l_city', '769x770', 'onnx'),          # the fixed image-pooling window, squeeze-excite, sum merge
    ('x71_dpc_os16', '65x129', 'onnx'),         # the dense prediction cell's (height, width) rates
    ('r101_v3_os16', '66x65', 'symbol'),        # the root's TF 'SAME' max pool at an even height
    ('edgetpu_slim_city_os32', '64x67', 'onnx'),  # the dense stride-2 convs (stem, layers 3 and 7) at even heights
])
def test_every_family_exports_and_runs_as_the_gluon_model(zoo_params, tmp_path, folder, size, format):
    params = str(zoo_params[folder][0])
    result = run_script('export.py', '--weights', params, '--format', format, '--size', size,
                        '--output', tmp_path / 'model', env=ONE_THREAD)
    assert 'checked against the Gluon model' in result.stdout
    assert mylib.load_model(params).spec.describe() in result.stdout
    if format == 'onnx':  # and for a batch of two, the batch axis being free
        height, width = map(int, size.split('x'))
        x = np.random.default_rng(1).uniform(0, 255, (2, 3, height, width)).astype(np.float32)
        expected = mylib.load_model(params)(mx.nd.array(x)).asnumpy()
        assert relative_difference(onnxruntime_logits(tmp_path / 'model.onnx', x), expected) < 1e-4
