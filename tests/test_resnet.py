"""ResNet-v1-beta (mylib.models.resnet) and its TF names (converters.tables.resnet).

Fast: the unit plan, shapes at both input parities, taps, hybridization, the TF 'SAME' max pool, the
mapping rows against the parameters and the official manifest. Then TensorFlow's own max_pool (in a
subprocess) against same_max_pool and subsample. Every stage of the official r101 DeepLab v3 graph, from
the converted reference checkpoint, is in test_zoo_parity.py.
"""
import json
import math
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from helpers import REFERENCE, initialized, random_image

from converters.mapping import tensor_table, to_gluon_layout
from converters.tables.resnet import SCOPES, backbone_rows, classifier_rows, detect, unit_count
from mylib.models.layers import normalize_pixels
from mylib.models.resnet import (
    BN_EPSILON,
    BN_MOMENTUM,
    RESNET_V1_BETA,
    ResNetV1Beta,
    ResNetV1BetaClassifier,
    subsample,
    unit_plan,
)
from mylib.models.taps import record
from mylib.models.tf_same import same_max_pool

ZOO = REFERENCE / 'zoo'
fast = pytest.mark.fast


def downsampled(size, times):
    """The size after `times` stride-2 layers of this network (each gives ceil(size / 2), at either parity)."""
    for _ in range(times):
        size = -(-size // 2)
    return size


def tf_same_max_pool(x, kernel, stride):
    """numpy NCHW: TF's max_pool with padding 'SAME', from TF's rule (pad with -inf, the smaller half before)."""
    pads, outs = [], []
    for size in x.shape[2:]:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
        outs.append(out)
    padded = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), constant_values=-np.inf)
    result = np.empty(x.shape[:2] + tuple(outs), x.dtype)
    for i in range(outs[0]):
        for j in range(outs[1]):
            window = padded[:, :, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
            result[:, :, i, j] = window.max(axis=(2, 3))
    return result


def as_list(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


# --- the unit plan ---------------------------------------------------------------------------------
@fast
@pytest.mark.parametrize('output_stride, expected', [
    # official stack_blocks_dense with output_stride // 4 after the root; multi-grid (1, 2, 4) on block4
    (32, {'block1_unit3': (2, 1), 'block2_unit4': (2, 1), 'block3_unit23': (2, 1),
          'block4_unit1': (1, 1), 'block4_unit2': (1, 2), 'block4_unit3': (1, 4)}),
    (16, {'block1_unit3': (2, 1), 'block2_unit4': (2, 1), 'block3_unit23': (1, 1),  # the stride it skips: rate 1
          'block4_unit1': (1, 2), 'block4_unit2': (1, 4), 'block4_unit3': (1, 8)}),  # the official graph's 2, 4, 8
    (8, dict({'block1_unit3': (2, 1), 'block2_unit4': (1, 1)},
             **{'block3_unit%d' % i: (1, 2) for i in range(1, 24)},
             block4_unit1=(1, 4), block4_unit2=(1, 8), block4_unit3=(1, 16))),
])
def test_unit_plan_moves_strides_to_rates_past_the_output_stride(output_stride, expected):
    plan = unit_plan(RESNET_V1_BETA[101], output_stride, multi_grid=(1, 2, 4))
    assert [unit.name for unit in plan][:4] == ['block1_unit1', 'block1_unit2', 'block1_unit3', 'block2_unit1']
    assert len(plan) == 3 + 4 + 23 + 3
    for unit in plan:
        assert (unit.stride, unit.rate) == expected.get(unit.name, (1, 1)), unit.name
    assert [unit.depth for unit in plan if unit.index == 1] == [256, 512, 1024, 2048]
    assert [unit.bottleneck for unit in plan if unit.index == 1] == [64, 128, 256, 512]


@fast
def test_unit_plan_refuses_what_the_official_code_refuses():
    assert [unit.rate for unit in unit_plan(RESNET_V1_BETA[50], 16)][-3:] == [2, 2, 2]  # default multi-grid 1, 1, 1
    assert all(unit.stride == 1 for unit in unit_plan(RESNET_V1_BETA[50], 4))
    for output_stride in (2, 12, 64):
        with pytest.raises(ValueError, match='output_stride %d cannot be reached' % output_stride):
            unit_plan(RESNET_V1_BETA[50], output_stride)
    with pytest.raises(ValueError, match='multi_grid needs 3 rates'):
        unit_plan(RESNET_V1_BETA[50], 16, multi_grid=(1, 2))
    with pytest.raises(ValueError, match='depth 34'):
        ResNetV1Beta(34)
    with pytest.raises(ValueError, match=r'no decoder tap at stride \[32\]'):
        ResNetV1Beta(50, taps=(4, 32))


# --- shapes, taps, hybridization ---------------------------------------------------------------------
def with_weights_of(net, source):
    """`net` with the parameters of `source` (the same names: stride, rates and taps change no parameter)."""
    weights = source._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        param.initialize(init=mx.init.Zero())
        param.set_data(weights[name].data())
    return net


@pytest.fixture(scope='module')
def small_nets():
    """ResNet-50-beta with random weights at OS8, 16 and 32, every tap, multi-grid (1, 2, 4); not hybridized."""
    nets = {16: initialized(ResNetV1Beta(50, 16, (1, 2, 4), taps=(4, 8, 16)))}
    for output_stride in (8, 32):
        nets[output_stride] = with_weights_of(ResNetV1Beta(50, output_stride, (1, 2, 4), taps=(4, 8, 16)), nets[16])
    return nets


@fast
@pytest.mark.parametrize('output_stride', [8, 16, 32])
@pytest.mark.parametrize('size', [(33, 33), (32, 34), (47, 40)])
def test_outputs_at_each_stride_for_odd_and_even_inputs(small_nets, output_stride, size):
    net = small_nets[output_stride]
    outputs = net(random_image(*size) / 127.5 - 1)
    assert isinstance(outputs, tuple) and len(outputs) == 4
    for output, stride, channels in zip(outputs, (4, 8, 16, output_stride), (256, 512, 1024, 2048)):
        steps = int(math.log2(min(stride, output_stride)))
        assert output.shape == (1, channels, downsampled(size[0], steps), downsampled(size[1], steps))
    assert net.channels == 2048 and net.tap_channels == {4: 256, 8: 512, 16: 1024}


@fast
def test_taps_are_conv3_before_the_sum_and_in_the_order_asked(small_nets):
    net = small_nets[16]
    x = random_image(41, 38) / 127.5 - 1
    paths = ['block1_unit2.conv3', 'block2_unit3.conv3', 'block3_unit5.conv3', 'block4_unit3']  # resnet_v1_50_beta
    with record(net, paths) as taps:
        outputs = net(x)
    for output, path in zip(outputs, paths):
        assert np.array_equal(output.asnumpy(), taps[path].output.asnumpy()), path
    assert outputs[0].asnumpy().min() < 0  # a batch norm's output, not yet through the ReLU
    again = with_weights_of(ResNetV1Beta(50, 16, (1, 2, 4), taps=(16, 4)), net)(x)
    assert [value.shape[1] for value in again] == [1024, 256, 2048]
    assert np.array_equal(again[0].asnumpy(), outputs[2].asnumpy())


@fast
@pytest.mark.parametrize('size', [(33, 35), (34, 32)])
def test_hybridized_equals_imperative(small_nets, size):
    net = with_weights_of(ResNetV1Beta(50, 8, (1, 2, 4), taps=(4, 8)), small_nets[16])
    x = random_image(*size) / 127.5 - 1
    imperative = [value.asnumpy() for value in net(x)]
    net.hybridize()
    hybridized = [value.asnumpy() for value in as_list(net(x))]
    assert len(hybridized) == len(imperative) == 3
    for a, b in zip(imperative, hybridized):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@fast
def test_same_max_pool_and_subsample_follow_tf_at_both_parities():
    rng = np.random.default_rng(0)
    pool = mx.gluon.nn.HybridLambda(lambda F, x: same_max_pool(F, x, 3))
    sub = mx.gluon.nn.HybridLambda(lambda F, x: subsample(F, x, 2))
    for height, width in [(5, 5), (6, 6), (7, 8), (8, 7), (1, 2), (2, 1)]:
        x = rng.normal(-5, 1, (2, 3, height, width)).astype(np.float32)  # negative: -inf padding is visible
        for hybrid in (False, True):
            pool.hybridize(hybrid)
            sub.hybridize(hybrid)
            assert np.array_equal(pool(mx.nd.array(x)).asnumpy(), tf_same_max_pool(x, 3, 2)), (height, width)
            assert np.array_equal(sub(mx.nd.array(x)).asnumpy(), tf_same_max_pool(x, 1, 2)), (height, width)
    with pytest.raises(ValueError, match='odd kernels'):
        same_max_pool(mx.nd, mx.nd.zeros((1, 1, 4, 4)), 2)


@fast
def test_official_settings_and_initializers():
    net = ResNetV1Beta(50, taps=(4,))
    net.initialize()
    params = net._collect_params_with_prefix()
    bn = net._children['block2_unit1']._children['conv2'].bn
    assert bn._kwargs['eps'] == BN_EPSILON == 1e-5 and bn._kwargs['momentum'] == BN_MOMENTUM == 0.95
    for name, param in params.items():
        assert param.wd_mult == (1.0 if name.endswith('conv.weight') else 0.0), name
        if name.endswith('conv.weight'):  # slim variance_scaling_initializer: truncated normal sqrt(1.3 * 2 / fan_in)
            value = param.data().asnumpy()
            limit = 2 * math.sqrt(1.3 * 2 / (value.size // value.shape[0]))
            assert np.abs(value).max() <= limit and np.abs(value).max() > 0.8 * limit, name
    weights = params['block3_unit1.conv1.conv.weight'].data().asnumpy()  # fan in 512
    assert abs(weights.std() - math.sqrt(2 / 512)) < 0.05 * math.sqrt(2 / 512)


@fast
def test_classifier_takes_pixels_and_gives_logits():
    net = initialized(ResNetV1BetaClassifier(50, num_classes=7), seed=1)
    x = random_image(40, 37, batch=2)
    logits = net(x)
    assert logits.shape == (2, 7)
    features = net.backbone(normalize_pixels(mx.nd, x))[-1]
    assert features.shape == (2, 2048, 2, 2)  # output stride 32
    expected = net.logits(features.mean(axis=(2, 3), keepdims=True)).reshape((2, 7))
    assert np.allclose(logits.asnumpy(), expected.asnumpy(), rtol=1e-5, atol=1e-5)
    assert net.logits.bias.wd_mult == 0.0 and net.logits.weight.wd_mult == 1.0


# --- the mapping rows ---------------------------------------------------------------------------------
@fast
@pytest.mark.parametrize('depth', [50, 101])
def test_every_parameter_has_one_row_and_every_row_a_parameter(depth):
    backbone = ResNetV1Beta(depth, 8, taps=(4, 8, 16))
    classifier = ResNetV1BetaClassifier(depth, num_classes=1001)
    for net, rows in ((backbone, backbone_rows(depth)), (classifier, classifier_rows(depth))):
        table = tensor_table(rows)
        gluon = [name for name, _ in table.values()]
        assert len(gluon) == len(set(gluon)) and len(table) == 5 * len(rows) - 3 * (rows[-1][2] == 'conv_bias')
        assert set(gluon) == set(net._collect_params_with_prefix())
    assert all(tf_name.startswith(SCOPES[depth] + '/') for tf_name in tensor_table(classifier_rows(depth)))
    assert tensor_table(backbone_rows(depth, 'other'))  # another scope is only another prefix


@fast
def test_rows_name_and_shape_every_backbone_tensor_of_the_official_checkpoint():
    manifest = json.loads((ZOO / 'manifest_r101_v3_voc21.json').read_text())
    shapes = {var['name']: tuple(var['shape']) for var in manifest}
    official = {name for name in shapes if name.startswith('resnet_v1_101/') and not name.endswith('/Momentum')}
    table = tensor_table(backbone_rows(101))
    assert set(table) == official
    net = ResNetV1Beta(101, 16, (1, 2, 4))
    params = net._collect_params_with_prefix()
    net.initialize()
    for tf_name, (gluon, layout) in table.items():
        assert to_gluon_layout(np.zeros(shapes[tf_name]), layout).shape == params[gluon].shape, tf_name


@fast
def test_detect_tells_resnet_v1_beta_from_other_checkpoints():
    manifest = json.loads((ZOO / 'manifest_r101_v3_voc21.json').read_text())
    shapes = {var['name']: tuple(var['shape']) for var in manifest}
    assert detect(shapes) == {'depth': 101, 'scope': 'resnet_v1_101', 'imagenet_classes': None}
    assert unit_count(shapes, 'resnet_v1_101', 'block3') == 23
    net = ResNetV1BetaClassifier(50, num_classes=1000)
    net.initialize()
    params = net._collect_params_with_prefix()
    imagenet = {}
    for tf_name, (gluon, layout) in tensor_table(classifier_rows(50)).items():
        shape = params[gluon].shape
        imagenet[tf_name] = (shape[2], shape[3], shape[1], shape[0]) if layout == 'conv' else shape
    assert detect(imagenet) == {'depth': 50, 'scope': 'resnet_v1_50', 'imagenet_classes': 1000}
    plain = {name.replace('conv1_1', 'conv1'): shape for name, shape in imagenet.items()}
    plain['resnet_v1_50/conv1/weights'] = (7, 7, 3, 64)  # ResNet-v1 without "beta": one 7x7 root conv
    assert detect(plain) is None
    xception = {var['name']: tuple(var['shape']) for var in json.loads((REFERENCE / 'manifest_voc21.json').read_text())}
    assert detect(xception) is None


# --- TensorFlow's own 'SAME' pooling, small ------------------------------------------------------------
def test_same_ops_match_tensorflow_at_both_parities(tmp_path):
    """TF itself (in a subprocess): max_pool 3x3/2 and 1x1/2 with 'SAME' against same_max_pool and subsample."""
    rng = np.random.default_rng(1)
    arrays = {'%dx%d' % size: rng.normal(-3, 1, (1, *size, 4)).astype(np.float32)
              for size in [(7, 7), (8, 8), (9, 6), (6, 9)]}
    np.savez(tmp_path / 'in.npz', **arrays)
    code = ('import sys, numpy as np, tensorflow as tf\n'
            'a = np.load(sys.argv[1]); out = {}\n'
            'for k in a.files:\n'
            '    out[k + "_3"] = tf.nn.max_pool2d(a[k], 3, 2, "SAME").numpy()\n'
            '    out[k + "_1"] = tf.nn.max_pool2d(a[k], 1, 2, "SAME").numpy()\n'
            'np.savez(sys.argv[2], **out)\n')
    subprocess.run([sys.executable, '-c', code, str(tmp_path / 'in.npz'), str(tmp_path / 'out.npz')], check=True,
                   capture_output=True)
    official = np.load(tmp_path / 'out.npz')
    for key, value in arrays.items():
        x = mx.nd.array(value.transpose(0, 3, 1, 2))
        pooled = same_max_pool(mx.nd, x, 3).asnumpy().transpose(0, 2, 3, 1)
        sampled = subsample(mx.nd, x, 2).asnumpy().transpose(0, 2, 3, 1)
        assert np.array_equal(pooled, official[key + '_3']), key
        assert np.array_equal(sampled, official[key + '_1']), key
