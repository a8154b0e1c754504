"""The converter: its table against the official names, its outputs, its inputs and its errors."""
import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
import tarfile

import mxnet as mx
import numpy as np
import pytest
from helpers import REFERENCE, one_line_error, reference_manifest, run_script, write_tf_checkpoint

from converters.mapping import deeplab_layers, detect_model, skip_reason, tensor_table, to_gluon_layout
from mylib import DeepLabV3Plus, Xception65
from mylib.models.spec import xception65_spec

SCRIPT = 'converters/extract_weights.py'


def load_recipe():
    """The reference's own make_checkpoint.py, for the values it gives each official name."""
    spec = importlib.util.spec_from_file_location('make_checkpoint', REFERENCE / 'make_checkpoint.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_tensors():
    """{name: shape} of the model variables of the official 21-class checkpoint."""
    return {t['name']: tuple(t['shape']) for t in reference_manifest() if not skip_reason(t['name'])}


def convert(source, out_dir, *extra, check=False):
    return run_script(SCRIPT, source, '--output', os.path.join(out_dir, 'out.params'), *extra, check=check)


# --- the table -------------------------------------------------------------------------------------
@pytest.mark.fast
def test_table_accounts_for_every_official_tensor_and_every_gluon_parameter():
    manifest = reference_manifest()
    skipped = [t['name'] for t in manifest if skip_reason(t['name'])]
    assert len(manifest) == 880 and len(skipped) == 148  # 147 /Momentum slots and global_step
    assert all(name.endswith('/Momentum') for name in skipped if name != 'global_step')
    table = tensor_table(deeplab_layers())
    tensors = model_tensors()
    assert set(table) == set(tensors)  # every official tensor has a home, and nothing else
    gluon = {name: p.shape for name, p in DeepLabV3Plus(21)._collect_params_with_prefix().items()}
    homes = [home for home, _ in table.values()]
    assert len(homes) == len(set(homes)) and set(homes) == set(gluon)  # one tensor per parameter
    for tf_name, (home, layout) in table.items():
        assert to_gluon_layout(np.zeros(tensors[tf_name]), layout).shape == gluon[home], tf_name


@pytest.mark.fast
def test_layouts_move_the_right_axes():
    weights = np.arange(3 * 3 * 4 * 5).reshape(3, 3, 4, 5)  # TF (kh, kw, in, out)
    assert to_gluon_layout(weights, 'conv')[4, 2, 0, 1] == weights[0, 1, 2, 4]
    depthwise = np.arange(3 * 3 * 6).reshape(3, 3, 6, 1)  # TF (kh, kw, in, multiplier)
    assert to_gluon_layout(depthwise, 'depthwise')[5, 0, 2, 1] == depthwise[2, 1, 5, 0]


@pytest.mark.fast
def test_optimizer_slots_training_state_and_quantization_ranges_are_skipped_by_rule():
    """The 8-bit quantization-aware releases keep fake-quantization ranges beside their float weights."""
    assert skip_reason('MobilenetV2/Conv/weights_quant/min') == 'quantization range'
    assert skip_reason('MobilenetV2/expanded_conv_1/project/act_quant/max') == 'quantization range'
    assert skip_reason('aspp0/weights/Momentum') == 'optimizer slot' and skip_reason('global_step') == 'training state'
    assert skip_reason('MobilenetV2/Conv/weights') is None
    assert skip_reason('decoder/feature_projection0/weights') is None


@pytest.mark.fast
def test_detects_what_a_checkpoint_is():
    tensors = model_tensors()
    spec, notes = detect_model(tensors)
    assert spec == xception65_spec(21) and spec.atrous_rates == (6, 12, 18) and spec.decoder_output_stride == (4,)
    assert any(note.startswith('atrous_rates=6,12,18') for note in notes)  # what the checkpoint does not record
    no_decoder = {k: v for k, v in tensors.items() if not k.startswith('decoder/')}
    assert detect_model(no_decoder)[0].decoder_output_stride is None


# --- what a user gets ------------------------------------------------------------------------------
@pytest.mark.fast
def test_official_flags_complete_what_a_checkpoint_does_not_record():
    spec = xception65_spec(21)
    at8 = spec.with_flags(['output_stride=8'])  # the rates follow the output stride, as the official flags
    assert (at8.output_stride, at8.atrous_rates) == (8, (12, 24, 36))
    repeated = spec.with_flags(['--atrous_rates=3', '--atrous_rates=6', '--atrous_rates=9', '--output_stride=8'])
    assert repeated.atrous_rates == (3, 6, 9)  # official multi-integer flags, written as the scripts take them
    assert spec.with_flags(['image_pooling_crop_size=769,769', 'aspp_with_separable_conv=false']) == \
        dataclasses.replace(spec, image_pooling_crop_size=(769, 769), aspp_with_separable_conv=False)
    for bad, message in (('atrous_rate=6', 'not one of the official model flags'),
                         ('output_stride=x', 'not a valid value'), ('output_stride', 'write name=value'),
                         ('model_variant=xception_71', 'the checkpoint holds xception_65')):
        with pytest.raises(ValueError, match=message):
            spec.with_flags([bad])


def test_conversion_with_official_flags(reference_checkpoint, out_dir):
    result = convert(reference_checkpoint, out_dir, '--flag', 'output_stride=8', '--quiet', check=True)
    assert 'output_stride=8 (--flag)' in result.stdout and 'atrous_rates=12,24,36' in result.stdout
    metadata = json.loads((out_dir / 'out.json').read_text())
    assert (metadata['model']['output_stride'], metadata['model']['atrous_rates']) == (8, [12, 24, 36])
    one_line_error(convert(reference_checkpoint, out_dir, '--flag', 'atrous_rate=6'), 'extract_weights.py',
                   '--flag', "'atrous_rate'", status=2)


def test_conversion_output_and_metadata(converted_reference, reference_checkpoint):
    params, stdout = converted_reference
    metadata = json.loads(params.with_suffix('.json').read_text())
    assert metadata['kind'] == 'segmentation' and metadata['num_classes'] == 21
    assert metadata['model']['model_variant'] == 'xception_65'
    assert metadata['tensors'] == {'read': 880, 'converted': 732,
                                   'skipped': {'optimizer slot': 147, 'training state': 1}}
    assert metadata['parameters'] == 732 and metadata['values'] == 41258213
    data = str(reference_checkpoint) + '.data-00000-of-00001'
    hashes = {os.path.basename(f['path']): f['sha256'] for f in metadata['source_files']}
    assert hashes[os.path.basename(data)] == hashlib.sha256(open(data, 'rb').read()).hexdigest()
    assert 'DeepLab v3+ (xception_65, OS16), 21 classes' in stdout and '41,258,213' in stdout
    assert sorted(os.listdir(params.parent)) == ['voc21.json', 'voc21.params']  # no temporary left


def test_converted_values_are_the_checkpoint_values(converted_reference):
    """Spot checks against the reference recipe's own values for the official names."""
    recipe = load_recipe()
    statistics = np.load(REFERENCE / 'statistics_voc21.npz')
    loaded = mx.nd.load(str(converted_reference[0]))
    tensors = model_tensors()
    conv = 'xception_65/entry_flow/conv1_1/weights'
    assert np.array_equal(loaded['backbone.conv1_1.conv.weight'].asnumpy(),
                          recipe.reference_value(conv, tensors[conv]).transpose(3, 2, 0, 1))
    depthwise = 'xception_65/middle_flow/block1/unit_7/xception_module/separable_conv2_depthwise/depthwise_weights'
    assert np.array_equal(
        loaded['backbone.middle_block1_unit7.separable_conv2.depthwise.conv.weight'].asnumpy()[:, 0],
        recipe.reference_value(depthwise, tensors[depthwise])[..., 0].transpose(2, 0, 1))
    mean = 'decoder/decoder_conv1_pointwise/BatchNorm/moving_mean'
    assert np.array_equal(loaded['decoder.conv1.pointwise.bn.running_mean'].asnumpy(), statistics[mean])
    assert np.array_equal(loaded['logits.bias'].asnumpy(),
                          recipe.reference_value('logits/semantic/biases', (21,)))


@pytest.fixture(scope='module')
def zero_checkpoint(tmp_path_factory):
    """A full-size official-named checkpoint of zeros (fast to write and to compress), with slots."""
    folder = tmp_path_factory.mktemp('zero') / 'xception65_release'
    folder.mkdir()
    arrays = {name: np.zeros(shape, np.float32) for name, shape in model_tensors().items()}
    arrays['aspp0/weights/Momentum'] = arrays['aspp0/weights']
    arrays['global_step'] = np.array(30000, np.int64)
    return write_tf_checkpoint(folder / 'model.ckpt', arrays)


def test_official_release_archive(zero_checkpoint, tmp_path):
    archive = tmp_path / 'deeplabv3_pascal_trainval_2018_01_04.tar.gz'
    folder = os.path.dirname(zero_checkpoint)
    (tmp_path / 'frozen_inference_graph.pb').write_bytes(b'graph')
    with tarfile.open(archive, 'w:gz', compresslevel=1) as tar:  # the official layout: <release>/...
        tar.add(folder, arcname='deeplabv3_pascal_trainval')
        tar.add(tmp_path / 'frozen_inference_graph.pb', 'deeplabv3_pascal_trainval/frozen_inference_graph.pb')
    out = tmp_path / 'out'
    out.mkdir()
    result = run_script(SCRIPT, archive, cwd=out)  # default output name, in the current folder
    assert sorted(os.listdir(out)) == ['deeplabv3_pascal_trainval_2018_01_04.json',
                                       'deeplabv3_pascal_trainval_2018_01_04.params']
    metadata = json.loads((out / 'deeplabv3_pascal_trainval_2018_01_04.json').read_text())
    assert metadata['source_files'] == [{'path': str(archive),
                                         'sha256': hashlib.sha256(archive.read_bytes()).hexdigest()}]
    assert metadata['tensors']['skipped'] == {'optimizer slot': 1, 'training state': 1}
    assert 'DeepLab v3+' in result.stdout


@pytest.mark.parametrize('form', ['folder', 'index file'])
def test_folder_and_index_file_inputs(zero_checkpoint, tmp_path, form):
    source = os.path.dirname(zero_checkpoint) if form == 'folder' else zero_checkpoint + '.index'
    convert(source, tmp_path, check=True)
    net = DeepLabV3Plus(21)
    net.load_parameters(str(tmp_path / 'out.params'))  # refuses a missing, extra or misshapen parameter
    values = [param.data().asnumpy() for param in net.collect_params().values()]
    assert len(values) == 732 and not any(value.any() for value in values)  # the checkpoint's zeros


def test_two_stages_and_second_stage_without_tensorflow(zero_checkpoint, tmp_path):
    h5 = tmp_path / 'arrays.h5'
    run_script(SCRIPT, zero_checkpoint, '--save-h5', h5, '--h5-only')
    assert sorted(os.listdir(tmp_path)) == ['arrays.h5']
    blocked = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = run_script('-c', blocked, SCRIPT, h5, '--output', tmp_path / 'from_h5.params')
    assert 'converted: DeepLab v3+ (xception_65, OS16), 21 classes' in result.stdout
    metadata = json.loads((tmp_path / 'from_h5.json').read_text())
    assert metadata['tensors']['read'] == 734  # the slot and global_step were counted in stage 1


def test_imagenet_checkpoint_converts_to_xception65(tmp_path):
    """The ImageNet classifier: official backbone names plus xception_65/logits, values of the recipe."""
    recipe = load_recipe()
    statistics = np.load(REFERENCE / 'statistics_voc21.npz')
    arrays = {name: (statistics[name] if name in statistics.files else recipe.reference_value(name, shape))
              for name, shape in model_tensors().items() if name.startswith('xception_65/')}
    arrays['xception_65/logits/weights'] = recipe.reference_value('xception_65/logits/weights', (1, 1, 2048, 1001))
    arrays['xception_65/logits/biases'] = recipe.reference_value('xception_65/logits/biases', (1001,))
    prefix = write_tf_checkpoint(tmp_path / 'model.ckpt', arrays)
    result = convert(prefix, tmp_path, check=True)
    assert 'xception_65 ImageNet classifier, 1001 classes' in result.stdout
    net = Xception65(1001)
    net.load_parameters(str(tmp_path / 'out.params'))
    rng = np.random.default_rng(1)
    x = mx.nd.array(rng.uniform(0, 255, (1, 3, 96, 96)).astype(np.float32))
    features = net.backbone(x * (2 / 255.) - 1)[-1].asnumpy()
    expected = features.mean(axis=(2, 3)) @ arrays['xception_65/logits/weights'][0, 0] \
        + arrays['xception_65/logits/biases']
    assert np.allclose(net(x).asnumpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# --- bad input: one clear line, exit status 1, nothing written -------------------------------------
def tiny_deeplab(names):
    return {name: np.zeros([1], np.float32) for name in names}


def write_h5(path, arrays):
    """A stage-1 file (TF-named arrays, as --save-h5 writes) of `arrays`: the checks of stage 2 run on it
    without TensorFlow (the TF reading stage has its own damaged-file tests above)."""
    import h5py
    with h5py.File(path, 'w') as h5:
        for name, value in arrays.items():
            h5.create_dataset(name, data=value)
    return path


def assert_refused(result, out_dir, *culprits):
    line = one_line_error(result, 'extract_weights.py', *culprits)
    assert result.stderr.strip() == line  # and nothing else: no warning of TensorFlow's either
    assert os.listdir(out_dir) == [], 'left behind: %s' % os.listdir(out_dir)


@pytest.fixture
def out_dir(tmp_path):
    path = tmp_path / 'out'
    path.mkdir()
    return path


def test_path_that_does_not_exist(out_dir):
    assert_refused(convert('/no/such/model.ckpt', out_dir), out_dir, '/no/such/model.ckpt', 'no such file')


def test_folder_without_checkpoint(tmp_path, out_dir):
    (tmp_path / 'empty').mkdir()
    assert_refused(convert(tmp_path / 'empty', out_dir), out_dir, str(tmp_path / 'empty'), 'no TF checkpoint')


def test_folder_with_two_checkpoints(tmp_path, out_dir):
    folder = tmp_path / 'two'
    folder.mkdir()
    for prefix in ('a.ckpt', 'b.ckpt'):
        write_tf_checkpoint(folder / prefix, {'global_step': np.array(1, np.int64)})
    assert_refused(convert(folder, out_dir), out_dir, 'several checkpoints', 'a.ckpt', 'b.ckpt')


@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory):
    """A small valid checkpoint, for damaging its files."""
    prefix = tmp_path_factory.mktemp('small') / 'model.ckpt'
    rng = np.random.default_rng(0)
    return write_tf_checkpoint(prefix, {'xception_65/entry_flow/conv1_1/weights':
                                        rng.normal(size=(3, 3, 3, 32)).astype(np.float32),
                                        'logits/semantic/biases': np.zeros(21, np.float32)})


def damaged_copy(prefix, tmp_path, damage):
    """A copy of a checkpoint whose files `damage(index_bytes, data_bytes)` rewrites."""
    index = open(prefix + '.index', 'rb').read()
    data = open(prefix + '.data-00000-of-00001', 'rb').read()
    index, data = damage(bytearray(index), bytearray(data))
    copy = str(tmp_path / 'damaged.ckpt')
    open(copy + '.index', 'wb').write(index)
    open(copy + '.data-00000-of-00001', 'wb').write(data)
    return copy


def test_truncated_data_file(small_checkpoint, tmp_path, out_dir):
    copy = damaged_copy(small_checkpoint, tmp_path, lambda index, data: (index, data[:len(data) // 2]))
    assert_refused(convert(copy, out_dir), out_dir, 'damaged.ckpt.data-00000-of-00001', 'cannot read tensor')


def test_corrupted_data_file(small_checkpoint, tmp_path, out_dir):
    def flip(index, data):
        data[100] ^= 0xFF
        return index, data
    copy = damaged_copy(small_checkpoint, tmp_path, flip)
    assert_refused(convert(copy, out_dir), out_dir, 'xception_65/entry_flow/conv1_1/weights', 'Checksum')


@pytest.mark.parametrize('how', ['truncated', 'garbage'])
def test_corrupted_index_file(small_checkpoint, tmp_path, out_dir, how):
    def damage(index, data):
        return (index[:len(index) // 3] if how == 'truncated' else bytearray(os.urandom(len(index)))), data
    copy = damaged_copy(small_checkpoint, tmp_path, damage)
    assert_refused(convert(copy, out_dir), out_dir, 'damaged.ckpt.index')


def test_corrupted_archive(tmp_path, out_dir):
    archive = tmp_path / 'release.tar.gz'
    archive.write_bytes(b'\x1f\x8b' + os.urandom(1000))
    assert_refused(convert(archive, out_dir), out_dir, str(archive), 'archive')


def test_checkpoint_of_another_architecture(tmp_path, out_dir):
    names = ['InceptionV3/Conv2d_1a_3x3/weights', 'InceptionV3/Conv2d_1a_3x3/BatchNorm/beta', 'aspp0/weights',
             'image_pooling/weights', 'logits/semantic/weights', 'logits/semantic/biases']
    h5 = write_h5(tmp_path / 'inception.h5', tiny_deeplab(names))
    assert_refused(convert(h5, out_dir), out_dir, 'not an official DeepLab or ImageNet checkpoint',
                   'no known backbone scope', 'InceptionV3')


def test_checkpoint_missing_a_tensor(tmp_path, out_dir):
    names = [n for n in model_tensors() if n != 'decoder/decoder_conv1_pointwise/BatchNorm/moving_variance']
    h5 = write_h5(tmp_path / 'model.h5', tiny_deeplab(names))
    assert_refused(convert(h5, out_dir), out_dir, 'missing 1 tensor',
                   'decoder/decoder_conv1_pointwise/BatchNorm/moving_variance')


def test_checkpoint_with_an_unexpected_tensor(tmp_path, out_dir):
    names = list(model_tensors()) + ['aspp0/extra_scale']
    h5 = write_h5(tmp_path / 'model.h5', tiny_deeplab(names))
    assert_refused(convert(h5, out_dir), out_dir, 'aspp0/extra_scale')


def test_tensor_of_the_wrong_shape(tmp_path, out_dir):
    arrays = {name: np.zeros(shape, np.float32) for name, shape in model_tensors().items()}
    arrays['aspp1_pointwise/weights'] = np.zeros((1, 1, 2048, 128), np.float32)
    h5 = write_h5(tmp_path / 'model.h5', arrays)
    assert_refused(convert(h5, out_dir), out_dir, 'aspp1_pointwise/weights', '(1, 1, 2048, 128)')


def test_help_describes_inputs():
    result = run_script(SCRIPT, '--help')
    assert 'CKPT' in result.stdout and '.tar.gz' in result.stdout and '--save-h5' in result.stdout


def test_output_that_is_a_folder(tmp_path):
    result = run_script(SCRIPT, 'x.ckpt', '--output', tmp_path, check=False)
    one_line_error(result, 'extract_weights.py', 'is a folder', status=2)


if __name__ == '__main__':
    sys.exit(pytest.main([__file__]))
