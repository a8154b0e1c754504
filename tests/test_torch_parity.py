"""PyTorch DeepLabs, exact to their original PyTorch code (../shared/reference/pytorch), without PyTorch.

For each reference configuration (VoVNet-DeepLabV3 VoVNet-39, DeepLab-v3-plus-cityscapes ResNet-101,
torchvision deeplabv3_resnet50; and, made the same way with the original code, tests/data/pytorch:
VoVNet-57, VoVNet-DeepLabV3's own ResNet-50 and DenseNet-161, torchvision deeplabv3_mobilenet_v3_large) the .pth is
written by the reference's make_torch_checkpoint.py in the original project's layout, converted by
`converters/extract_weights.py FILE.pth` as a user would, loaded with `mylib.load_model`, and compared
with the original's outputs on four photos: the low-resolution logits within 1e-3 of max |logit| (the
original's own float32-vs-float64 spread: 5e-6 to 3.6e-4), the labels of the upsampled output (through
the inference path the scripts use) on >= 99.9 % of the pixels.
"""
import json
import runpy

import mxnet as mx
import numpy as np
import pytest
from helpers import (
    ONE_THREAD,
    PHOTOS,
    REFERENCE,
    REPO,
    read_metrics,
    run_script,
    synthetic_shapes,
    train_args,
    write_segmentation_folder,
)

import mylib
from converters.tables.torch_backbones import resnet_rows, vovnet_rows
from converters.torch_mapping import detect_model, skip_reason, table_for, tensor_table, to_gluon_layout
from mylib.errors import ConversionError
from mylib.export import onnxruntime_logits, relative_difference
from mylib.inference import LogitsRunner, pad_to_crop, resize
from mylib.models import ModelSpec, build_network
from mylib.models.deeplab import DecoderLogits
from mylib.models.layers import mean_pixel
from mylib.models.torch_resnet import TORCH_RESNET, unit_plan
from mylib.models.vovnet import stage_plan

TORCH_REFERENCE = REFERENCE / 'pytorch'
MORE_REFERENCES = REPO / 'tests' / 'data' / 'pytorch'  # see its README.md: the same recipe, more configurations
CONFIGS = {  # config: (project, model_variant, evaluation crop: VoVNet-DeepLabV3 pads to 513, the others run as is)
    'vovnet39_voc': ('vovnet_deeplabv3', 'vovnet_39', (513, 513)),
    'coin_r101_city': ('cityscapes_deeplabv3plus', 'resnet_101', None),
    'tv_deeplabv3_resnet50': ('torchvision', 'resnet_50', None),
    'vovnet57_voc': ('vovnet_deeplabv3', 'vovnet_57', (513, 513)),
    'vov_resnet50_voc': ('vovnet_deeplabv3', 'resnet_50', (513, 513)),
    'tv_deeplabv3_mobilenet_v3_large': ('torchvision', 'mobilenet_v3_large', None),
    'vov_densenet161_voc': ('vovnet_deeplabv3', 'densenet_161', (513, 513)),
}
LOGIT_TOLERANCE = 1e-3
LABEL_AGREEMENT = 0.999


def recipe(config):
    """(manifest path, statistics path) of a reference configuration."""
    if (MORE_REFERENCES / config).is_dir():
        return MORE_REFERENCES / config / 'manifest.json', MORE_REFERENCES / config / 'statistics.npz'
    return TORCH_REFERENCE / ('manifest_%s.json' % config), TORCH_REFERENCE / ('statistics_%s.npz' % config)


def manifest(config):
    with open(recipe(config)[0]) as stream:
        return json.load(stream)


def original_outputs(config, photo):
    """The original's outputs on a photo (logits, labels), with the photo (`input_uint8`, from the shared ones)."""
    folder = MORE_REFERENCES / config if (MORE_REFERENCES / config).is_dir() else TORCH_REFERENCE / config
    outputs = dict(np.load(folder / (photo + '.npz')))
    outputs['input_uint8'] = np.load(TORCH_REFERENCE / 'vovnet39_voc' / (photo + '.npz'))['input_uint8']
    return outputs


@pytest.fixture(scope='module')
def torch_params(tmp_path_factory):
    """{config: (params path, metadata)}: each reference .pth written by make_torch_checkpoint.py and
    converted by extract_weights.py's main, as the command line runs it."""
    folder = tmp_path_factory.mktemp('torch')
    write = runpy.run_path(str(TORCH_REFERENCE / 'make_torch_checkpoint.py'))['main']
    convert = runpy.run_path(str(REPO / 'converters' / 'extract_weights.py'), run_name='extract_weights')['main']
    converted = {}
    for config in CONFIGS:
        pth, params = folder / (config + '.pth'), folder / (config + '.params')
        write(['make_torch_checkpoint.py'] + [str(path) for path in recipe(config)] + [str(pth)])
        assert convert([str(pth), '--output', str(params), '--quiet']) == 0
        pth.unlink()
        converted[config] = (params, mylib.weights.read_metadata(params))
    return converted


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_converted_as_the_original_builds_it(torch_params, config):
    project, variant, _ = CONFIGS[config]
    params, metadata = torch_params[config]
    assert metadata['project'] == project and metadata['model']['model_variant'] == variant
    tensors = manifest(config)['tensors']
    counters = sum(entry['role'] == 'num_batches_tracked' for entry in tensors)
    assert metadata['tensors'] == {'read': len(tensors), 'converted': len(tensors) - counters,
                                   'skipped': {'batch-norm counter': counters} if counters else {}}
    assert metadata['values'] == sum(int(np.prod(entry['shape'])) for entry in tensors
                                     if entry['role'] != 'num_batches_tracked')


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_matches_the_original(torch_params, config):
    _, _, crop = CONFIGS[config]
    net = mylib.load_model(str(torch_params[config][0]))
    runner = LogitsRunner(net)  # the scripts' path: hybridized, fused on oneDNN (exact to ~1e-5 of the logits)
    for photo in PHOTOS:
        original = original_outputs(config, photo)
        image = original['input_uint8']
        value = mean_pixel(net.spec.input_normalization)
        canvas = mx.nd.array(pad_to_crop(image, crop or image.shape[:2], value)[None])
        logits = runner(canvas)
        expected = original['logits']
        assert logits.shape == expected.shape, photo
        scale = np.abs(expected).max()
        assert np.abs(logits.asnumpy() - expected).max() <= LOGIT_TOLERANCE * scale, photo
        # the upsampling of average_probabilities at scale 1 (argmax of the softmax = argmax of the logits)
        labels = resize(logits, canvas.shape[2:], net.spec.align_corners).asnumpy()[0].argmax(0)
        agreement = (labels == original['labels']).mean()
        assert agreement >= LABEL_AGREEMENT, '%s: labels agree on %.4f %%' % (photo, 100 * agreement)


@pytest.mark.parametrize('config, format', [
    ('tv_deeplabv3_resnet50', 'onnx'),   # resizes without aligned corners: ONNX 'pytorch_half_pixel'
    ('coin_r101_city', 'onnx'),          # leaky ReLU, the padded 1x1, the decoder
])
def test_exports_and_runs_as_the_gluon_model(torch_params, tmp_path, config, format):
    params = str(torch_params[config][0])
    result = run_script('export.py', '--weights', params, '--format', format, '--size', '65x97',
                        '--output', tmp_path / 'model', env=ONE_THREAD)
    assert 'checked against the Gluon model' in result.stdout
    if format == 'onnx':
        x = np.random.default_rng(1).uniform(0, 255, (2, 3, 65, 97)).astype(np.float32)
        expected = mylib.load_model(params)(mx.nd.array(x)).asnumpy()
        assert relative_difference(onnxruntime_logits(tmp_path / 'model.onnx', x), expected) < 1e-4


def test_predict_runs_each_photo_as_the_original(torch_params, tmp_path):
    """predict.py on a torchvision network: the photo at its own size, unpadded, as torchvision runs it."""
    from PIL import Image
    original = dict(np.load(TORCH_REFERENCE / 'tv_deeplabv3_resnet50' / 'chelsea.npz'))
    Image.fromarray(original['input_uint8']).save(tmp_path / 'chelsea.png')
    run_script('predict.py', '--weights', torch_params['tv_deeplabv3_resnet50'][0], tmp_path / 'chelsea.png',
               '--out', tmp_path / 'out', env=ONE_THREAD)
    labels = np.asarray(Image.open(tmp_path / 'out' / 'chelsea.png'))
    assert (labels == original['labels']).mean() >= LABEL_AGREEMENT


def test_training_starts_from_a_converted_pytorch_deeplab(torch_params, tmp_path):
    """train.py --init with converted torchvision weights: its network, the logits of the new class count
    initialised afresh, the rest loaded; crops padded with the colour its normalisation makes 0."""
    items = synthetic_shapes(6, 72, seed=2)
    names = sorted(items)
    write_segmentation_folder(tmp_path / 'data', {name: items[name] for name in names[:4]}, 'train')
    write_segmentation_folder(tmp_path / 'data', {name: items[name] for name in names[4:]}, 'val')
    params = torch_params['tv_deeplabv3_mobilenet_v3_large'][0]
    result = run_script('train.py', *train_args(tmp_path / 'data', tmp_path / 'run', '--init', params, iterations=2),
                        env=ONE_THREAD)
    assert 'DeepLab v3 (mobilenet_v3_large, OS16), 21 classes' in result.stdout
    assert 'logits.bias, logits.weight not loaded' in result.stdout
    assert len(read_metrics(tmp_path / 'run')) >= 2
    trained = mylib.load_model(str(tmp_path / 'run' / 'final.params'))
    assert (trained.spec.model_variant, trained.num_classes, trained.spec.align_corners) == (
        'mobilenet_v3_large', 3, False)
    assert mylib.weights.runs_unpadded(tmp_path / 'run' / 'final.params')  # torchvision's protocol, kept


# --- fast: tables, detection, plans ----------------------------------------------------------------
@pytest.mark.fast
@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_every_tensor_has_one_home(config):
    """The project's table maps every tensor of the original's state dict (from its manifest) onto a
    distinct parameter of the network detected from it, in the shape that parameter has."""
    tensors = manifest(config)['tensors']
    shapes = {entry['name']: tuple(entry['shape']) for entry in tensors if not skip_reason(entry['name'])}
    spec, notes, project = detect_model(shapes)
    assert (project, spec.model_variant) == CONFIGS[config][:2] and notes
    table = table_for(spec, project)
    assert set(table) == set(shapes)
    net = build_network(spec)
    expected = {name: param.shape for name, param in net._collect_params_with_prefix().items()}
    assert sorted(home for home, _ in table.values()) == sorted(expected)
    for name, (home, layout) in table.items():
        assert to_gluon_layout(np.zeros(shapes[name], np.float32), layout).shape == expected[home], name


@pytest.mark.fast
def test_torchvision_auxiliary_classifier_is_skipped_by_rule():
    """A torchvision file saved with aux_loss=True holds aux_classifier.* (training only): skipped, counted."""
    with open(MORE_REFERENCES / 'tv_deeplabv3_resnet50_aux' / 'manifest.json') as stream:
        tensors = json.load(stream)['tensors']
    auxiliary = [entry['name'] for entry in tensors if entry['name'].startswith('aux_classifier.')]
    assert len(auxiliary) == 8 and all(skip_reason(name) for name in auxiliary)  # FCNHead: 2 convs, a BN
    shapes = {entry['name']: tuple(entry['shape']) for entry in tensors if not skip_reason(entry['name'])}
    spec, _, project = detect_model(shapes)
    assert set(table_for(spec, project)) == set(shapes)


@pytest.mark.fast
def test_regrouping_puts_image_pooling_first():
    """VoVNet-DeepLabV3 and torchvision concatenate [branches..., image pooling]; the official head (ours)
    [image pooling, branches...]: the projection's input channels are regrouped, not the network changed."""
    weight = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 15, 1, 1)
    regrouped = to_gluon_layout(weight, ('regroup_inputs', (12, 3), (1, 0)))
    assert np.array_equal(regrouped[:, :3], weight[:, 12:]) and np.array_equal(regrouped[:, 3:], weight[:, :12])


@pytest.mark.fast
def test_dilation_rules_of_the_originals():
    layers = TORCH_RESNET[101]
    rates = lambda plan, layer: [unit.rate for unit in plan if unit.layer == layer]  # noqa: E731
    torchvision_os8 = unit_plan(layers, 8)
    assert rates(torchvision_os8, 'layer3')[:2] == [1, 2] and rates(torchvision_os8, 'layer4') == [2, 4, 4]
    cityscapes_os16 = unit_plan(layers, 16, first_unit_dilated=True)
    assert rates(cityscapes_os16, 'layer3') == [1] * 23 and rates(cityscapes_os16, 'layer4') == [2, 2, 2]
    assert [unit.stride for unit in cityscapes_os16 if unit.name.endswith('_0')] == [1, 2, 2, 1]
    assert [tuple(plan) for plan in stage_plan(16)] == [(False, 1), (True, 1), (True, 1), (False, 2)]
    assert [tuple(plan) for plan in stage_plan(32)] == [(False, 1), (True, 1), (True, 1), (True, 1)]


@pytest.mark.fast
def test_sizes_follow_the_originals():
    """VoVNet pools rounding up (129 -> 8 at OS16, where rounding down gives 7; the reference's 513 -> 32),
    torchvision's ResNet rounds down (129 -> 17 at OS8)."""
    vovnet = build_network(ModelSpec('vovnet_39', 3, atrous_rates=(6, 12, 18), aspp_with_separable_conv=False))
    resnet = build_network(ModelSpec('resnet_50', 3, output_stride=8, atrous_rates=(12, 24, 36),
                                     aspp_with_separable_conv=False, head_output_conv=True, align_corners=False))
    for net, size in ((vovnet, 8), (resnet, 17)):
        net.initialize()
        logits = DecoderLogits(net)(mx.nd.zeros((1, 3, 129, 129))).asnumpy()  # computed here, not left queued
        assert logits.shape == (1, 3, size, size)


@pytest.mark.fast
@pytest.mark.parametrize('shapes, needle', [
    ({'backbone.conv1.weight': (64, 3, 7, 7), 'backbone.layer1.0.conv1.weight': (64, 64, 1, 1),
      'classifier.0.weight': (512, 2048, 3, 3)}, 'FCN'),
    ({'features.conv0.weight': (96, 3, 7, 7), 'features.denseblock1.denselayer1.conv2.weight': (40, 192, 3, 3),
      'aspp.aspp1.weight': (256, 2208, 1, 1), 'aspp.conv3.weight': (21, 256, 1, 1)}, 'not one of the depths'),
    ({'backbone.0.0.weight': (16, 3, 3, 3), 'classifier.cbr.0.weight': (128, 960, 1, 1)}, 'LR-ASPP'),
    ({'conv1.weight': (64, 3, 7, 7), 'fc.weight': (1000, 2048)}, 'ImageNet ResNet classifier'),
    ({'encoder.weight': (3, 3)}, 'not a PyTorch DeepLab of a known project'),
])
def test_unknown_state_dicts_are_named(shapes, needle):
    with pytest.raises(ConversionError) as caught:
        detect_model(shapes)
    assert needle in str(caught.value) and '\n' not in str(caught.value)


@pytest.mark.fast
def test_vovnet57_and_resnet101_tables_are_generated_from_the_models():
    assert len(vovnet_rows(57)) == 3 + 6 * (1 + 1 + 4 + 3)
    rows = resnet_rows(101, 'backbone.')
    assert len(rows) == 1 + 3 * 33 + 4
    assert [row.block for row in rows if row.block.endswith('downsample')] == [
        'layer%d_0.downsample' % layer for layer in (1, 2, 3, 4)]
    assert len(tensor_table(rows)) == 5 * len(rows)
