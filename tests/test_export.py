"""Export for deployment: the ONNX file (run in onnxruntime) and the MXNet symbol + params pair, each
against the Gluon model they come from, and export.py as a user runs it."""
import json
import os
import re

import mxnet as mx
import numpy as np
import onnx
import pytest
from helpers import PHOTOS, initialized, official_outputs, one_line_error, padded_input, random_image, run_script

from mylib import DeepLabV3Plus
from mylib.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    export_onnx,
    export_symbol,
    fixed_size_graph,
    onnxruntime_logits,
    relative_difference,
    symbol_logits,
    traced_symbol,
)
from mylib.weights import load_deeplab

pytestmark = pytest.mark.filterwarnings('ignore:Cannot decide type:UserWarning')  # SymbolBlock.imports
TOLERANCE = 1e-3  # of max |logit|: float32 round-off of another runtime is about 1e-5


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """{'decoder': path, 'no decoder': path}: DeepLabV3Plus(21) parameters, random, saved as a user would."""
    folder = tmp_path_factory.mktemp('weights')
    paths = {}
    for name, decoder in (('decoder', True), ('no decoder', False)):
        paths[name] = str(folder / ('%s.params' % name.replace(' ', '_')))
        initialized(DeepLabV3Plus(num_classes=21, decoder=decoder), seed=len(paths)).save_parameters(paths[name])
    return paths


def gluon_logits(path, output_stride, x):
    """Logits of the Gluon model of a weights file, for NCHW float32 numpy `x`."""
    return load_deeplab(path, output_stride)(mx.nd.array(x)).asnumpy()


def listing(folder):
    return sorted(os.listdir(folder))


# --- ONNX ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('output_stride, size, decoder', [
    (16, (65, 97), 'decoder'),
    (8, (64, 96), 'decoder'),
    (8, (65, 97), 'no decoder'),
])
def test_onnx_in_onnxruntime_equals_gluon(weights, tmp_path, output_stride, size, decoder):
    net = load_deeplab(weights[decoder], output_stride)
    path, difference = export_onnx(net, str(tmp_path / 'model.onnx'), size)
    assert difference is None and listing(tmp_path) == ['model.onnx']  # no check asked, no temporary left
    x = random_image(*size, batch=2, seed=output_stride).asnumpy()  # two images: the batch axis is free
    reference = gluon_logits(weights[decoder], output_stride, x)
    logits = onnxruntime_logits(path, x)
    assert logits.shape == reference.shape == (2, 21) + size
    assert relative_difference(logits, reference) < TOLERANCE
    assert relative_difference(onnxruntime_logits(path, x[1:]), reference[1:]) < TOLERANCE  # batch of one

    model = onnx.load(path)
    assert (model.opset_import[0].version, model.ir_version) == (13, 7)  # not the newest: older runtimes load it
    graph = model.graph
    dims = [[dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
            for value in (*graph.input, *graph.output)]
    assert [value.name for value in (*graph.input, *graph.output)] == [INPUT_NAME, OUTPUT_NAME]
    assert dims == [['N', 3, *size], ['N', 21, *size]]  # weights are constants, not inputs


def test_fixed_size_graph_runs_in_mxnet_like_the_model(weights):
    """The rewrite alone, before mx2onnx: no size taken from another tensor, same logits."""
    net = load_deeplab(weights['decoder'], 16)
    symbol, args, aux = traced_symbol(net)
    x = random_image(33, 50, batch=2)
    fixed = fixed_size_graph(symbol, x.shape)
    nodes = json.loads(fixed.tojson())['nodes']
    assert not [node for node in nodes if node['op'] == 'broadcast_like'
                or node.get('attrs', {}).get('mode') == 'like']
    resized = sorted((int(node['attrs']['height']), int(node['attrs']['width']))
                     for node in nodes if node['op'] == '_contrib_BilinearResize2D')
    assert resized == [(9, 13), (33, 50)]  # stride 4 (ceil(n / 4)) for the decoder, then the input size
    block = mx.gluon.SymbolBlock(fixed, mx.sym.var(INPUT_NAME))
    block.collect_params().load_dict(dict(args, **aux), ctx=mx.cpu())
    assert relative_difference(block(x).asnumpy(), net(x).asnumpy()) < 1e-6


def test_failed_check_writes_nothing(weights, tmp_path, monkeypatch):
    net = load_deeplab(weights['decoder'], 16)
    monkeypatch.setattr('mylib.export.relative_difference', lambda result, reference: 0.5)
    with pytest.raises(ExportError, match='differs from the Gluon model by 0.5'):
        export_symbol(net, str(tmp_path / 'model'), check_input=random_image(33, 33).asnumpy())
    assert listing(tmp_path) == []


def test_onnx_of_converted_reference_reproduces_official_outputs(converted_reference, tmp_path):
    """The full-size ONNX file against the outputs of the official TF graph, four photos in one batch.

    Thresholds of the reference README, as tests/test_parity.py: logits within 1e-3 of max |logit|,
    labels equal on 99.9 % of the pixels (the official graph against itself: 1e-4 and 0.01 %).
    """
    path, _ = export_onnx(load_deeplab(converted_reference[0], 16), str(tmp_path / 'voc.onnx'), (513, 513))
    official = [official_outputs(photo) for photo in PHOTOS]
    x = np.concatenate([padded_input(outputs['input_uint8']).asnumpy() for outputs in official])
    logits = onnxruntime_logits(path, x)
    for photo, outputs, photo_logits in zip(PHOTOS, official, logits):
        merged = mx.nd.array(outputs['merged_logits'].transpose(0, 3, 1, 2))  # the official final upsampling:
        expected = mx.nd.contrib.BilinearResize2D(merged, height=513, width=513, align_corners=True).asnumpy()[0]
        assert relative_difference(photo_logits, expected) < TOLERANCE, photo
        assert (photo_logits.argmax(0) == outputs['labels'][0]).mean() > 0.999, photo


# --- MXNet symbol + params -------------------------------------------------------------------------
def test_symbol_and_params_reload_in_mxnet_at_any_size(weights, tmp_path):
    net = load_deeplab(weights['decoder'], 16)
    check = random_image(33, 41).asnumpy()
    (json_path, params_path), difference = export_symbol(net, str(tmp_path / 'model'), check_input=check)
    assert difference < 1e-6
    assert listing(tmp_path) == ['model-0000.params', 'model-symbol.json']
    block = mx.gluon.SymbolBlock.imports(json_path, [INPUT_NAME], params_path)
    for size in ((65, 97), (64, 96)):
        x = random_image(*size, batch=2, seed=size[0])
        logits = block(x).asnumpy()
        assert logits.shape == (2, 21) + size
        assert relative_difference(logits, net(x).asnumpy()) < 1e-6


# --- export.py as a user runs it -------------------------------------------------------------------
def test_script_exports_onnx(weights, tmp_path):
    result = run_script('export.py', '--weights', weights['decoder'], '--format', 'onnx', '--size', '64x96',
                        '--output', tmp_path / 'voc.onnx')  # a trailing .onnx is not doubled
    assert listing(tmp_path) == ['voc.onnx']
    assert 'N x 3 x 64 x 96' in result.stdout and 'N x 21 x 64 x 96' in result.stdout
    assert 'checked against the Gluon model' in result.stdout and result.stderr == ''
    x = random_image(64, 96, seed=3).asnumpy()
    logits = onnxruntime_logits(str(tmp_path / 'voc.onnx'), x)
    assert relative_difference(logits, gluon_logits(weights['decoder'], 16, x)) < TOLERANCE


def test_script_exports_symbol_under_default_names(weights, tmp_path):
    result = run_script('export.py', '--weights', weights['no decoder'], '--format', 'symbol', '--os', '8',
                        '--size', '33x33', cwd=tmp_path)
    assert listing(tmp_path) == ['no_decoder-os8-0000.params', 'no_decoder-os8-symbol.json']
    assert 'DeepLab v3 (xception_65, OS8), 21 classes' in result.stdout
    assert 'checked against the Gluon model' in result.stdout
    x = random_image(49, 35, seed=4).asnumpy()
    logits = symbol_logits(str(tmp_path / 'no_decoder-os8-symbol.json'), str(tmp_path / 'no_decoder-os8-0000.params'),
                           x)
    assert relative_difference(logits, gluon_logits(weights['no decoder'], 8, x)) < 1e-6


def test_help_explains_formats_batch_and_gpus():
    text = ' '.join(run_script('export.py', '--help').stdout.split())
    for phrase in ('--format {onnx,symbol}', '--size HxW', 'batch axis is dynamic', 'sm_50 to sm_86',
                   'no Ada', 'no Hopper', 'onnxruntime.InferenceSession', 'SymbolBlock.imports'):
        assert phrase in text, phrase


def bad_weights(folder):
    path = folder / 'broken.params'
    path.write_bytes(b'not an MXNet parameters file')
    return path


@pytest.mark.parametrize('case, arguments, message, status', [  # status 2: an option error (see --help)
    ('missing weights', lambda d: ['--weights', d / 'absent.params'], r'absent\.params: no such weights file', 1),
    ('wrong weights', lambda d: ['--weights', bad_weights(d)], r'broken\.params: not an MXNet parameters file', 1),
    ('size without x', lambda d: ['--size', '513'], r"--size.*'513'", 2),
    ('size of zero', lambda d: ['--size', '0x64'], r"--size.*0x64.*at least 16 pixels", 2),
    ('output stride 4', lambda d: ['--os', '4'], r'--os.* 4 .*8, 16', 2),
    ('missing folder', lambda d: ['--output', d / 'absent' / 'model'], r'--output .*absent.* does not exist', 2),
])
def test_script_bad_input_is_one_line_and_writes_nothing(weights, tmp_path, case, arguments, message, status):
    out = tmp_path / 'out'
    out.mkdir()
    given = [str(argument) for argument in arguments(tmp_path)]
    defaults = {'--weights': weights['decoder'], '--output': out / 'model'}
    for option, value in defaults.items():
        if not any(argument.startswith(option) for argument in given):
            given += [option, str(value)]
    result = run_script('export.py', '--format', 'onnx', *given, check=False)
    line = one_line_error(result, 'export.py', status=status)
    assert result.stderr.strip() == line  # nothing else on stderr
    assert re.search(message, line), line
    assert listing(out) == [] and not (tmp_path / 'absent').exists()
