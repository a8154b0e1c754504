"""The MobileNet backbones (v2, v3 large_seg / small_seg, EdgeTPU) and the slim MobileNet-v2 / EdgeTPU classifiers.

Fast: shapes and strides at every output stride, depth multipliers 1.0 and 0.5, odd and even sizes;
TF 'SAME' at stride 2 against a numpy reference; hybridized == imperative; the converter's rows against
the parameters, both ways; the official channel rounding, stride plan and activation constants.
The classifier's logits and the DeepLab networks' stages against the official graph, from the converted
reference checkpoints, are in test_zoo_parity.py.
"""
import json
import math

import mxnet as mx
import numpy as np
import pytest
from helpers import REFERENCE, initialized

from converters.mapping import tensor_table, to_gluon_layout
from converters.tables import mobilenet as tables
from mylib.errors import ConversionError
from mylib.models.mobilenet import (
    HARD_SIGMOID_SCALE,
    MobileConv,
    MobileNetBackbone,
    MobileNetClassifier,
    SqueezeExcite,
    activate,
)
from mylib.models.mobilenet_spec import VARIANTS, make_divisible, plan_layers, strides_and_rates

ZOO = REFERENCE / 'zoo'
VARIANT_NAMES = sorted(VARIANTS)


def out_size(size, stride):
    """TF 'SAME': every stride-2 layer gives ceil(n / 2)."""
    for _ in range(int(math.log2(stride))):
        size = math.ceil(size / 2)
    return size


def manifest_shapes(name):
    with open(ZOO / ('manifest_%s.json' % name)) as stream:
        return {item['name']: tuple(item['shape']) for item in json.load(stream)
                if not item['name'].endswith('/Momentum') and item['name'] != 'global_step'}


# --- fast: structure ------------------------------------------------------------------------------
@pytest.mark.fast
@pytest.mark.parametrize('depth_multiplier', [1.0, 0.5])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_shapes_strides_and_taps(variant, output_stride, depth_multiplier):
    taps = tuple(tap for tap in (16, 4, 8) if tap in VARIANTS[variant].decoder_layers)  # EdgeTPU: none
    net = initialized(MobileNetBackbone(variant, depth_multiplier, output_stride, taps=taps))
    plan = plan_layers(variant, depth_multiplier, output_stride)
    assert net.channels == plan[-1].channels
    assert list(net.tap_channels) == list(taps)
    for size in (35, 32):  # odd and even at every stride-2 layer down to 32 or nearly
        outputs = net(mx.nd.zeros((1, 3, size, size)))
        assert len(outputs) == len(taps) + 1
        for tap, features in zip(taps, outputs):
            side = out_size(size, min(tap, output_stride))
            assert features.shape == (1, net.tap_channels[tap], side, side), (tap, size)
        side = out_size(size, output_stride)
        assert outputs[-1].shape == (1, net.channels, side, side)


@pytest.mark.fast
def test_the_official_final_layers_and_tap_channels():
    expected = {  # official final end point channels; DECODER_END_POINTS depthwise outputs {stride: channels}
        'mobilenet_v2': (320, {4: 144, 8: 192, 16: 576}),
        'mobilenet_v3_large_seg': (480, {4: 72, 8: 120, 16: 672}),
        'mobilenet_v3_small_seg': (288, {4: 16, 8: 88, 16: 144}),
        'mobilenet_edgetpu': (1280, {}),  # feature_extractor.py lists no decoder end points for it
    }
    for variant, (channels, taps) in expected.items():
        net = MobileNetBackbone(variant, taps=tuple(taps))
        assert (net.channels, net.tap_channels) == (channels, taps)
    # the MobileNet-v3 Cityscapes decoder projects these 120 channels (official decoder/feature_projection0)
    assert manifest_shapes('mnv3l_city19')['decoder/feature_projection0/weights'][2] == 120
    with pytest.raises(ValueError, match='decoder end points'):
        MobileNetBackbone('mobilenet_v2', taps=(2,))
    with pytest.raises(ValueError, match=r'has decoder end points at strides \[\], not \[4\]'):
        MobileNetBackbone('mobilenet_edgetpu', taps=(4,))
    with pytest.raises(ValueError, match='unknown MobileNet variant'):
        MobileNetBackbone('mobilenet_v1')


@pytest.mark.fast
@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_hybridized_equals_imperative(variant):
    net = initialized(MobileNetBackbone(variant, 1.0, 16, taps=tuple(VARIANTS[variant].decoder_layers)[:2]))
    inputs = [mx.nd.array(np.random.default_rng(size).uniform(-1, 1, (2, 3, size, size + 3))) for size in (37, 40)]
    imperative = [[out.asnumpy() for out in net(x)] for x in inputs]
    net.hybridize()
    for x, expected in zip(inputs, imperative):
        for out, reference in zip(net(x), expected):
            assert np.abs(out.asnumpy() - reference).max() <= 1e-5 * max(1.0, np.abs(reference).max())


def tf_same_conv(x, weight, stride):
    """numpy reference: TF conv2d(padding='SAME') of NCHW `x` with OIHW `weight`: depthwise (groups = channels)
    if I == 1, else dense."""
    k = weight.shape[-1]
    pads = []
    for n in x.shape[2:]:
        total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    out_h, out_w = (math.ceil(n / stride) for n in x.shape[2:])
    depthwise = weight.shape[1] == 1
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = ((window * weight[:, 0]).sum(axis=(2, 3)) if depthwise
                               else np.einsum('nchw,ochw->no', window, weight))
    return out


@pytest.mark.fast
@pytest.mark.parametrize('kernel', [3, 5])
@pytest.mark.parametrize('groups', [4, 1])
def test_strided_convolution_is_tf_same_at_both_parities(kernel, groups):
    """Stride 2 as the official graph: 'SAME' pads (0, 1) (3x3) or (1, 2) (5x5) on even sizes; depthwise
    (subsampled from the end) and dense (strided on the reversed input) alike."""
    conv = MobileConv(4, 4, kernel, stride=2, groups=groups)
    conv.initialize()
    conv.bn.running_mean.set_data(mx.nd.zeros(4))
    conv.bn.running_var.set_data(mx.nd.ones(4) - 1e-3)  # the BN is then the identity
    rng = np.random.default_rng(kernel)
    for height, width in ((1, 2), (5, 6), (8, 7), (2, 2)):
        x = rng.normal(size=(1, 4, height, width)).astype(np.float32)
        expected = tf_same_conv(x, conv.conv.weight.data().asnumpy(), 2)
        for hybrid in (False, True):
            conv.hybridize(hybrid)
            got = conv(mx.nd.array(x)).asnumpy()
            assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-5, (height, width, hybrid)


@pytest.mark.fast
def test_activations_and_squeeze_excite_take_the_official_constants():
    x = np.linspace(-8, 8, 161).astype(np.float32)
    relu6 = np.clip(x + 3, 0, 6)
    assert np.allclose(activate(mx.nd, mx.nd.array(x), 'hard_swish').asnumpy(), x * relu6 / 6, atol=1e-6)
    assert np.allclose(activate(mx.nd, mx.nd.array(x), 'relu6').asnumpy(), np.clip(x, 0, 6))
    assert HARD_SIGMOID_SCALE == 0.16667  # official gating_fn relu6(x + 3) * 0.16667, not 1/6
    se = initialized(SqueezeExcite(8, 8))
    features = np.random.default_rng(1).normal(size=(2, 8, 5, 4)).astype(np.float32)
    pooled = features.mean(axis=(2, 3))
    w1, b1 = se.squeeze.weight.data().asnumpy()[:, :, 0, 0], se.squeeze.bias.data().asnumpy()
    w2, b2 = se.excite.weight.data().asnumpy()[:, :, 0, 0], se.excite.bias.data().asnumpy()
    gate = np.clip(np.maximum(pooled @ w1.T + b1, 0) @ w2.T + b2 + 3, 0, 6) * 0.16667
    assert np.allclose(se(mx.nd.array(features)).asnumpy(), features * gate[:, :, None, None], atol=1e-5)


# official mobilenet_base: (layer, stride, rate) at each output stride; 1x1 convs never dilated
EXPECTED_PLANS = {
    ('mobilenet_v2', 32): {'layer_1': (2, 1), 'layer_15': (2, 1), 'layer_18': (1, 1)},
    ('mobilenet_v2', 16): {'layer_8': (2, 1), 'layer_14': (1, 1), 'layer_15': (1, 1), 'layer_16': (1, 2),
                           'layer_18': (1, 2)},
    ('mobilenet_v2', 8): {'layer_5': (2, 1), 'layer_7': (1, 1), 'layer_8': (1, 1), 'layer_9': (1, 2),
                          'layer_15': (1, 2), 'layer_16': (1, 4), 'layer_18': (1, 4)},
    ('mobilenet_v3_large_seg', 8): {'layer_8': (1, 1), 'layer_13': (1, 2), 'layer_14': (1, 2), 'layer_16': (1, 4),
                                    'layer_17': (1, 1)},
    ('mobilenet_v3_small_seg', 16): {'layer_9': (1, 1), 'layer_10': (1, 1), 'layer_11': (1, 2), 'layer_13': (1, 1)},
    # V3_EDGETPU: the fused layers (2-10) keep their strides at 8, 16 and 32
    ('mobilenet_edgetpu', 8): {'layer_3': (2, 1), 'layer_7': (2, 1), 'layer_11': (1, 1), 'layer_12': (1, 2),
                               'layer_19': (1, 2), 'layer_20': (1, 4), 'layer_24': (1, 1)},
    ('mobilenet_edgetpu', 16): {'layer_11': (2, 1), 'layer_18': (1, 1), 'layer_19': (1, 1), 'layer_20': (1, 2),
                                'layer_23': (1, 2)},
}


@pytest.mark.fast
@pytest.mark.parametrize('variant, output_stride', sorted(EXPECTED_PLANS))
def test_output_stride_plan_is_the_official_one(variant, output_stride):
    layers = VARIANTS[variant].layers[:VARIANTS[variant].final_layer]
    plan = {'layer_%d' % index: step for index, step in enumerate(strides_and_rates(layers, output_stride), 1)}
    for name, expected in EXPECTED_PLANS[variant, output_stride].items():
        assert plan[name] == expected, name
    with pytest.raises(ValueError, match='output_stride 64'):
        strides_and_rates(layers, 64)


@pytest.mark.fast
def test_channel_rounding_is_deeplabs():
    """DeepLab's MobileNet-v2 rounds to multiples of 1 below depth multiplier 1 (v3 and the classifier to 8)."""
    assert [make_divisible(v, 8) for v in (12, 18, 84, 16 * 0.35)] == [16, 24, 88, 8]
    v2 = plan_layers('mobilenet_v2', 0.5, 32)
    assert [layer.channels for layer in v2] == [16, 8, 12, 12, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 80, 80, 80, 160]
    assert [layer.expanded for layer in v2[:5]] == [None, None, 48, 72, 72]  # expansions: multiples of 8
    v2_classifier = plan_layers('mobilenet_v2', 0.5, 32, 8, 8, last=19)
    assert [layer.channels for layer in v2_classifier[:4]] == [16, 8, 16, 16] and v2_classifier[-1].channels == 640
    v3 = plan_layers('mobilenet_v3_large_seg', 0.5, 32)
    assert [layer.channels for layer in v3] == [8, 8, 16, 16, 24, 24, 24, 40, 40, 40, 40, 56, 56, 40, 40, 40, 240]
    assert v3[4].squeeze == 16 and v3[13].expanded == 168
    first = plan_layers('mobilenet_v3_small_seg', 1.0, 32)[1]
    assert first.expanded is None and first.squeeze == 8 and first.stride == 2  # SE on the unexpanded 16 channels
    edgetpu = plan_layers('mobilenet_edgetpu', 0.75, 32)  # v3's rounding: multiples of 8 at any multiplier
    assert [layer.channels for layer in edgetpu[:3]] == [24, 16, 24] and edgetpu[-1].channels == 960
    assert [layer.expanded for layer in edgetpu[1:4]] == [None, 128, 96]  # layer_2: expansion 1, no expand conv
    assert [layer.residual for layer in edgetpu[12:16]] == [True, True, False, True]  # layer_15: residual=False


@pytest.mark.fast
def test_fused_layers_refuse_an_output_stride_that_moves_their_stride():
    """Official mbv3_fused binds its stride into the expand conv: at OS4 the official graph would still
    subsample there while its plan says stride 1; only 8, 16 and 32 are the official network."""
    with pytest.raises(ValueError, match='output_stride 4 would change the stride of layer_7, a fused conv'):
        plan_layers('mobilenet_edgetpu', 1.0, 4)


@pytest.mark.fast
@pytest.mark.parametrize('depth_multiplier', [1.0, 0.5])
@pytest.mark.parametrize('variant, classifier', [(name, None) for name in VARIANT_NAMES] + [
    ('mobilenet_v2', 'plain'), ('mobilenet_v2', 'finegrain'), ('mobilenet_edgetpu', 'plain'),
    ('mobilenet_edgetpu', 'finegrain')])
def test_every_parameter_has_one_row_and_the_shapes_agree(variant, classifier, depth_multiplier):
    if classifier:
        finegrain = classifier == 'finegrain'
        net = MobileNetClassifier(1001, depth_multiplier, variant, finegrain=finegrain)
        found = tables.classifier_entries(depth_multiplier, 1001, variant, finegrain)
        rows = tables.classifier_rows(depth_multiplier, variant, finegrain)
    else:
        net = MobileNetBackbone(variant, depth_multiplier, output_stride=8)
        found = tables.entries(plan_layers(variant, depth_multiplier, 32), tables.SCOPES[variant])
        rows = tables.backbone_rows(variant, depth_multiplier)
    assert rows == [entry[:3] for entry in found]
    if classifier == 'finegrain' and depth_multiplier < 1:  # slim's finegrain_classification_mode
        assert found[-1][3] == (1, 1, 1280, 1001)
    params = net._collect_params_with_prefix()
    table = tensor_table(rows)
    assert sorted(gluon for gluon, _ in table.values()) == sorted(params)
    weights = tables.weight_shapes(found)
    for tf_name, shape in weights.items():
        gluon, layout = table[tf_name]
        assert to_gluon_layout(np.zeros(shape), layout).shape == params[gluon].shape, tf_name


@pytest.mark.fast
@pytest.mark.parametrize('name, expected', [
    ('mnv2_imagenet1001', {'variant': 'mobilenet_v2', 'depth_multiplier': 1.0, 'classifier': True,
                           'num_classes': 1001, 'finegrain': False}),
    ('mnv2_voc21', {'variant': 'mobilenet_v2', 'depth_multiplier': 1.0, 'classifier': False, 'num_classes': None,
                    'finegrain': False}),
    ('mnv3l_city19', {'variant': 'mobilenet_v3_large_seg', 'depth_multiplier': 1.0, 'classifier': False,
                      'num_classes': None, 'finegrain': False}),
    ('x71_dpc_cityscapes19', None),
])
def test_detect_reads_the_reference_manifests(name, expected):
    shapes = manifest_shapes(name)
    assert tables.detect(shapes) == expected
    if expected is not None:  # every backbone tensor of the checkpoint is in the table, and only those
        table = tensor_table(tables.classifier_rows() if expected['classifier'] else
                             tables.backbone_rows(expected['variant']))
        scope = tables.SCOPES[expected['variant']] + '/'
        assert sorted(table) == sorted(n for n in shapes if n.startswith(scope))
        assert all(tuple(shapes[n]) == tuple(s) for n, s in manifest_shapes(name).items() if n in table)


@pytest.mark.fast
def test_detect_finds_the_depth_multiplier_and_refuses_other_shapes():
    for variant in VARIANT_NAMES:
        shapes = tables.weight_shapes(tables.entries(plan_layers(variant, 0.5, 32), tables.SCOPES[variant]))
        assert tables.detect(shapes) == {'variant': variant, 'depth_multiplier': 0.5, 'classifier': False,
                                         'num_classes': None, 'finegrain': False}
    for variant, multiplier in (('mobilenet_v2', 0.5), ('mobilenet_v2', 0.35), ('mobilenet_edgetpu', 0.75)):
        # slim's mobilenet_v2_050 / _035 and mobilenet_v3.edge_tpu_075 keep Conv_1 at 1280 channels
        shapes = tables.weight_shapes(tables.classifier_entries(multiplier, 1001, variant, finegrain=True))
        assert tables.detect(shapes) == {'variant': variant, 'depth_multiplier': multiplier, 'classifier': True,
                                         'num_classes': 1001, 'finegrain': True}
    shapes = manifest_shapes('mnv3l_city19')
    shapes['MobilenetV3/expanded_conv_12/project/weights'] = (1, 1, 336, 160)  # V3_LARGE without _seg halving
    with pytest.raises(ConversionError, match='expanded_conv_12/project/weights'):
        tables.detect(shapes)
