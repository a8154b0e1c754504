"""converters/read_torch.py: PyTorch checkpoints (.pth) read without PyTorch, and refused when hostile.

The reference checkpoints come from ../shared/reference/pytorch/make_torch_checkpoint.py (the layout of
each original project's file); the other files are written here, opcode by opcode where needed, as
torch.save lays them out (zip: archive/data.pkl + archive/data/<key>; legacy: magic number, protocol
version, sys info, pickle, storage keys, raw storages) -- or as an attacker would.
"""
import importlib.util
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from helpers import REFERENCE, REPO

from converters.read_torch import LEGACY_MAGIC, checkpoint_format, read_state_dict
from mylib.errors import ConversionError

TORCH_REFERENCE = REFERENCE / 'pytorch'
WRITER = TORCH_REFERENCE / 'make_torch_checkpoint.py'
CONFIGS = {  # config: (format, wrapper, prefix)
    'vovnet39_voc': ('legacy', 'training_checkpoint', 'module.'),
    'coin_r101_city': ('legacy', 'state_dict', None),
    'tv_deeplabv3_resnet50': ('zip', 'state_dict', None),
}


def load_writer():
    """The reference's own make_torch_checkpoint.py, for the values it gives each tensor (and its layouts)."""
    spec = importlib.util.spec_from_file_location('make_torch_checkpoint', WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refused(path, *needles):
    """Assert read_state_dict(path) raises a one-line ConversionError naming the file and `needles`."""
    with pytest.raises(ConversionError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert '\n' not in message and message.startswith('%s: ' % path), message
    for needle in needles:
        assert needle in message, message
    return message


# --- a torch.save pickle, written here ------------------------------------------------------------------
class Global:
    """module.name, written as a GLOBAL opcode (torch is not importable here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    """func(*args), written as REDUCE; `state` (if given) follows as BUILD."""

    def __init__(self, func, *args, state=None):
        self.func, self.args, self.state = func, args, state


class Storage:
    """A storage: `array`'s elements (bytes written little-endian), persistent id of torch.<kind>."""

    def __init__(self, key, kind, array, view=None, numel=None):
        self.key, self.kind, self.array, self.view = key, kind, np.ascontiguousarray(array), view
        self.numel = self.array.size if numel is None else numel

    def raw(self, byteorder='<'):
        return self.array.astype(self.array.dtype.newbyteorder(byteorder)).tobytes()


class TorchPickler(pickle._Pickler):
    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ('storage', Global('torch', obj.kind), obj.key, 'cpu', obj.numel)
            return pid + (obj.view,) if self.legacy else pid
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, (Global, Call)):
            memo = self.memo.get(id(obj))
            if memo:
                self.write(self.get(memo[0]))
            elif isinstance(obj, Global):
                self.write(pickle.GLOBAL + ('%s\n%s\n' % (obj.module, obj.name)).encode())
                self.memoize(obj)
            else:
                self.save(obj.func)
                self.save(obj.args)
                self.write(pickle.REDUCE)
                self.memoize(obj)
                if obj.state is not None:
                    self.save(obj.state)
                    self.write(pickle.BUILD)
            return
        super().save(obj, save_persistent_id)


REBUILD = Global('torch._utils', '_rebuild_tensor_v2')


def tensor(storage, offset, size, stride, *extra):
    return Call(REBUILD, storage, offset, tuple(size), tuple(stride), False, OrderedDict(), *extra)


def contiguous(key, kind, array):
    """A tensor owning a storage that holds `array` (C order)."""
    strides = tuple(s // array.itemsize for s in array.strides) if array.size else (1,) * array.ndim
    return tensor(Storage(key, kind, array.reshape(-1)), 0, array.shape, strides)


def pickled(obj, legacy):
    buffer = io.BytesIO()
    TorchPickler(buffer, legacy).dump(obj)
    return buffer.getvalue()


def storages_in(obj, found=None):
    found = {} if found is None else found
    if isinstance(obj, Storage):
        found.setdefault(obj.key, obj)
    elif isinstance(obj, Call):
        for item in obj.args:
            storages_in(item, found)
    elif isinstance(obj, dict):
        for item in obj.values():
            storages_in(item, found)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            storages_in(item, found)
    return found


def write_zip(path, obj, byteorder='little', root='archive', data=None, records=None):
    """torch.save's zip layout; `data` replaces the pickle, `records` ({name: bytes or None}) edits the rest."""
    entries = OrderedDict([('data.pkl', pickled(obj, legacy=False) if data is None else data),
                           ('byteorder', byteorder.encode())])
    for key, storage in storages_in(obj).items():
        entries['data/' + key] = storage.raw('<' if byteorder == 'little' else '>')
    entries['version'] = b'3\n'
    entries.update(records or {})
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        for name, value in entries.items():
            if value is not None:
                archive.writestr('%s/%s' % (root, name), value)
    return path


def write_legacy(path, obj, data=None):
    """torch.save's legacy layout (PyTorch < 1.6); `data` replaces the pickle (and then no storage follows)."""
    storages = storages_in(obj) if data is None else {}
    with open(path, 'wb') as f:
        for header in (LEGACY_MAGIC, 1001, {'protocol_version': 1001, 'little_endian': True,
                                            'type_sizes': {'short': 2, 'int': 4, 'long': 8}}):
            f.write(pickle.dumps(header, protocol=2))
        f.write(pickled(obj, legacy=True) if data is None else data)
        f.write(pickle.dumps(sorted(storages), protocol=2))
        for key in sorted(storages):
            f.write(struct.pack('<q', storages[key].numel))
            f.write(storages[key].raw())
    return path


# --- (a) the three reference checkpoints -----------------------------------------------------------------
@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_reference_checkpoints_read_exactly(config, tmp_path):
    manifest_path = TORCH_REFERENCE / ('manifest_%s.json' % config)
    statistics_path = TORCH_REFERENCE / ('statistics_%s.npz' % config)
    path = tmp_path / 'model.pth'
    subprocess.run([sys.executable, str(WRITER), str(manifest_path), str(statistics_path), str(path)],
                   check=True, capture_output=True)
    manifest = json.loads(manifest_path.read_text())
    expected_format, expected_wrapper, expected_prefix = CONFIGS[config]
    assert (manifest['format'], manifest['wrapper']) == (expected_format, expected_wrapper)
    assert checkpoint_format(path) == expected_format

    arrays, info = read_state_dict(path)
    os.remove(path)
    assert info['format'] == expected_format and info['wrapper'] == expected_wrapper
    assert info['prefix'] == expected_prefix
    assert list(arrays) == [t['name'] for t in manifest['tensors']]   # prefix stripped, order kept
    counters = sum(t['role'] == 'num_batches_tracked' for t in manifest['tensors'])
    assert info['tensors'] == len(manifest['tensors']) and info['num_batches_tracked'] == counters
    if expected_wrapper == 'training_checkpoint':
        assert info['skipped'] == {'optimizer state': 0} and info['other_entries'] == ['epoch']
    else:
        assert info['skipped'] == {} and info['other_entries'] == []

    writer, statistics = load_writer(), np.load(statistics_path)
    for entry in manifest['tensors']:
        name, shape = entry['name'], tuple(entry['shape'])
        array = arrays[name]
        assert array.shape == shape and str(array.dtype) == entry['dtype'], name
        want = statistics[name] if name in statistics.files else writer.reference_value(name, entry['role'], shape)
        assert np.array_equal(array, want), name
        assert array.flags.c_contiguous and array.flags.writeable


@pytest.mark.fast
@pytest.mark.parametrize('layout', ['legacy', 'zip'])
@pytest.mark.parametrize('wrapper', ['state_dict', 'training_checkpoint'])
def test_reference_writer_small(layout, wrapper, tmp_path):
    """The reference writer's own layouts, on a small manifest (the fast tier's view of (a))."""
    writer = load_writer()
    manifest = {'tensors': [
        {'name': 'conv.weight', 'shape': [4, 3, 3, 3], 'dtype': 'float32', 'role': 'conv_weight'},
        {'name': 'bn.weight', 'shape': [4], 'dtype': 'float32', 'role': 'norm_weight'},
        {'name': 'bn.running_var', 'shape': [4], 'dtype': 'float32', 'role': 'running_var'},
        {'name': 'bn.num_batches_tracked', 'shape': [], 'dtype': 'int64', 'role': 'num_batches_tracked'}]}
    values = writer.state_dict_values(manifest, {'bn.running_var': np.arange(1, 5, dtype=np.float32)})
    path = tmp_path / 'small.pth'
    (writer.write_legacy if layout == 'legacy' else writer.write_zip)(writer.wrap(values, wrapper), str(path))
    arrays, info = read_state_dict(path)
    assert list(arrays) == list(values)
    for name, value in values.items():
        assert arrays[name].dtype == value.dtype and np.array_equal(arrays[name], value), name
    assert arrays['bn.num_batches_tracked'].shape == ()
    assert info['format'] == layout and info['wrapper'] == wrapper and info['num_batches_tracked'] == 1
    assert info['prefix'] == ('module.' if wrapper == 'training_checkpoint' else None)


# --- what real files hold besides contiguous float32 ---------------------------------------------------------
def feature_checkpoint(legacy):
    """A state dict of every storage type, views, shared storages, a 0-d tensor, a Parameter, _metadata."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=24).astype(np.float32)
    shared = Storage('shared', 'FloatStorage', base)
    bf16 = np.array([0x3f80, 0xc040, 0x0000, 0x7f80], np.uint16)   # 1, -3, 0, inf as bfloat16
    state = OrderedDict()
    expected = OrderedDict()
    for kind, array in [('DoubleStorage', rng.normal(size=(2, 3))), ('HalfStorage', rng.normal(size=5).astype('f2')),
                        ('LongStorage', np.arange(-3, 3, dtype=np.int64)), ('IntStorage', np.arange(6, dtype='i4')),
                        ('ShortStorage', np.arange(4, dtype='i2')), ('CharStorage', np.arange(-2, 2, dtype='i1')),
                        ('ByteStorage', np.arange(250, 256, dtype='u1')),
                        ('BoolStorage', np.array([True, False, True]))]:
        state['t.' + kind] = contiguous(kind, kind, array)
        expected['t.' + kind] = array
    state['t.bf16'] = contiguous('bf16', 'BFloat16Storage', bf16)
    expected['t.bf16'] = np.array([1, -3, 0, np.inf], np.float32)
    state['v.matrix'] = tensor(shared, 0, (4, 6), (6, 1))                 # the whole storage
    expected['v.matrix'] = base.reshape(4, 6)
    state['v.transposed'] = tensor(shared, 0, (6, 4), (1, 6))             # the same storage, transposed
    expected['v.transposed'] = base.reshape(4, 6).T
    state['v.slice'] = tensor(shared, 7, (2, 3), (6, 2))                  # offset and strides
    expected['v.slice'] = base[7:].copy()[:12].reshape(2, 6)[:, ::2]
    state['v.scalar'] = tensor(shared, 23, (), ())                        # 0-d, last element
    expected['v.scalar'] = np.array(base[23])
    state['v.empty'] = tensor(shared, 0, (0, 3), (3, 1))
    expected['v.empty'] = np.zeros((0, 3), np.float32)
    state['p.weight'] = Call(Global('torch._utils', '_rebuild_parameter'),
                             contiguous('param', 'FloatStorage', base[:3]), True, OrderedDict())
    expected['p.weight'] = base[:3]
    state['old.tensor'] = Call(Global('torch._utils', '_rebuild_tensor'), shared, 4, (2,), (1,))
    expected['old.tensor'] = base[4:6]
    state['neg.tensor'] = tensor(shared, 0, (3,), (1,), {'neg': True})
    expected['neg.tensor'] = -base[:3]
    if legacy:   # a storage view of the pre-0.4 format: elements 10..15 of a root storage
        view = Storage('root', 'FloatStorage', base, view=('view', 10, 6))
        state['legacy.view'] = tensor(view, 1, (2, 2), (3, 1))
        expected['legacy.view'] = base[10:16][[1, 2, 4, 5]].reshape(2, 2)
    state._metadata = OrderedDict([('', {'version': 1}), ('bn', {'version': 2})])
    return state, expected


@pytest.mark.fast
@pytest.mark.parametrize('layout', ['legacy', 'zip'])
def test_dtypes_views_shared_storages(layout, tmp_path):
    state, expected = feature_checkpoint(layout == 'legacy')
    path = tmp_path / 'features.bin'   # the name says nothing: the bytes do
    (write_legacy if layout == 'legacy' else write_zip)(path, state)
    arrays, info = read_state_dict(path)
    assert list(arrays) == list(expected) and info['format'] == layout
    assert info['bfloat16_as_float32'] == 1 and info['prefix'] is None
    for name, want in expected.items():
        got = arrays[name]
        want_dtype = np.float32 if name == 't.bf16' else want.dtype
        assert got.dtype == want_dtype and got.shape == want.shape and np.array_equal(got, want), name
        assert got.flags.c_contiguous and got.flags.writeable
    arrays['v.matrix'][0, 0] = 42   # copies, not views of one another
    assert arrays['v.transposed'][0, 0] != 42


@pytest.mark.fast
def test_big_endian_zip_and_other_root(tmp_path):
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    state = OrderedDict([('w', contiguous('0', 'FloatStorage', values)),
                         ('n', contiguous('1', 'LongStorage', np.array(7, np.int64)))])
    arrays, _ = read_state_dict(write_zip(tmp_path / 'big.pth', state, byteorder='big', root='resnet50-0676ba61'))
    assert np.array_equal(arrays['w'], values) and arrays['n'] == 7 and arrays['n'].dtype == np.int64


@pytest.mark.fast
@pytest.mark.parametrize('layout', ['legacy', 'zip'])
def test_training_checkpoint_skips_optimizer(layout, tmp_path):
    weight = np.ones((2, 2), np.float32)
    state = OrderedDict([('module.conv.weight', contiguous('w', 'FloatStorage', weight))])
    checkpoint = {'epoch': 3, 'state_dict': state, 'best_miou': 0.7,
                  'optimizer': {'state': {0: {'momentum_buffer': contiguous('m', 'FloatStorage', weight * 5)}},
                                'param_groups': [{'lr': 0.01, 'momentum': 0.9, 'nesterov': False, 'params': [0]}]}}
    path = (write_legacy if layout == 'legacy' else write_zip)(tmp_path / 'ckpt.pth', checkpoint)
    arrays, info = read_state_dict(path)
    assert list(arrays) == ['conv.weight'] and np.array_equal(arrays['conv.weight'], weight)
    assert info['wrapper'] == 'training_checkpoint' and info['prefix'] == 'module.'
    assert info['skipped'] == {'optimizer state': 1} and sorted(info['other_entries']) == ['best_miou', 'epoch']


@pytest.mark.fast
def test_imports_neither_torch_nor_mxnet():
    code = ('import sys, converters.read_torch\n'
            'print(sorted(m for m in ("torch", "mxnet", "tensorflow") if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


# --- (b) hostile files ---------------------------------------------------------------------------------------
class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').system('true')",)


class GetsAttribute:
    def __reduce__(self):
        return getattr, ('text', 'upper')


def legacy_with_pickle(path, data):
    return write_legacy(path, {}, data=data)


@pytest.mark.fast
@pytest.mark.parametrize('layout', ['legacy', 'zip'])
@pytest.mark.parametrize('where', ['top', 'inside'])
def test_code_execution_refused(layout, where, tmp_path):
    marker = tmp_path / 'pwned'
    payload = RunsCommand('touch %s' % marker)
    obj = payload if where == 'top' else {'state_dict': {'w': 1}, 'optimizer': [payload]}
    data = pickle.dumps(obj, protocol=2)
    assert b'system' in data
    path = tmp_path / 'model.pth'
    (legacy_with_pickle if layout == 'legacy' else lambda p, d: write_zip(p, {}, data=d))(path, data)
    message = refused(path, 'refuses to load', 'the file asks for %s.system' % os.system.__module__,
                      'may run code')
    assert message.count(str(path)) == 1
    assert not marker.exists()


@pytest.mark.fast
@pytest.mark.parametrize('payload, name', [(Evaluates(), 'builtins.eval'), (GetsAttribute(), 'builtins.getattr')])
def test_builtins_refused(payload, name, tmp_path):
    for layout, writer in [('zip', lambda p, d: write_zip(p, {}, data=d)), ('legacy', legacy_with_pickle)]:
        path = writer(tmp_path / ('%s.pth' % layout), pickle.dumps(OrderedDict(w=payload), protocol=2))
        refused(path, 'refuses to load: the file asks for %s ' % name)


def absurd(storage):
    """case: (a tensor over a 4-element float storage that asks for too much, what the refusal says)."""
    return {
        'size beyond storage': (tensor(storage, 0, (5,), (1,)), 'reaches element 4 of a storage of 4'),
        'offset beyond storage': (tensor(storage, 4, (1,), (1,)), 'offset 4 reaches element 4 of a storage of 4'),
        'huge stride': (tensor(storage, 0, (2, 2), (1, 10 ** 12)), 'reaches element 1000000000001'),
        'negative stride': (tensor(storage, 3, (2,), (-1,)), 'stride (-1,): not a tuple of at most 64 non-negative'),
        'negative offset': (tensor(storage, -1, (1,), (1,)), 'storage offset -1: not a non-negative int'),
        'broadcast over a small storage': (tensor(storage, 0, (10 ** 9,), (0,)), 'over a storage of 4'),
        'string size': (tensor(storage, 0, 'ab', (1, 1)), "size ('a', 'b'): not a tuple"),
        'size and stride of different lengths': (tensor(storage, 0, (2, 2), (1,)), 'size (2, 2) but stride (1,)'),
        'not a storage': (tensor('storage', 0, (1,), (1,)), 'rebuilt from a str, not from a storage'),
        'too many arguments': (tensor(storage, 0, (1,), (1,), None, 1, 2, 3), 'damaged pickle (TypeError'),
    }


@pytest.mark.fast
@pytest.mark.parametrize('layout', ['legacy', 'zip'])
@pytest.mark.parametrize('case', sorted(absurd(None)))
def test_tensor_outside_its_storage_refused(layout, case, tmp_path):
    storage = Storage('0', 'FloatStorage', np.zeros(4, np.float32))
    bad, needle = absurd(storage)[case]
    state = OrderedDict([('ok', tensor(storage, 0, (4,), (1,))), ('w', bad)])
    refused((write_legacy if layout == 'legacy' else write_zip)(tmp_path / 'model.pth', state), needle)


@pytest.mark.fast
def test_allowed_objects_cannot_be_rebuilt(tmp_path):
    storage = Storage('0', 'FloatStorage', np.zeros(4, np.float32))
    cases = {
        'tries to set the state of a Tensor': OrderedDict(w=Call(REBUILD, storage, 0, (4,), (1,), False,
                                                                 OrderedDict(), state={'storage': 'x'})),
        "'_StorageType' object is not callable": OrderedDict(w=Call(Global('torch', 'FloatStorage'), 4)),
        'refuses to load: the file asks for torch.load': OrderedDict(w=Call(Global('torch', 'load'), 'x.pth')),
        'torch.ComplexFloatStorage, which is not read': OrderedDict(
            w=tensor(Storage('0', 'ComplexFloatStorage', np.zeros(4, np.float32)), 0, (2,), (1,))),
    }
    for needle, state in cases.items():
        refused(write_zip(tmp_path / 'model.pth', state), needle)
    module = pickle.dumps(('module', 'x', None, None), protocol=2)   # a persistent id of torch.save(model)
    data = b'\x80\x02' + module[2:-1] + pickle.BINPERSID + pickle.STOP
    refused(legacy_with_pickle(tmp_path / 'model.pth', data), 'whole pickled model')


# --- (c) damaged files -----------------------------------------------------------------------------------------
def small_state():
    return OrderedDict([('a', contiguous('0', 'FloatStorage', np.arange(1000, dtype=np.float32))),
                        ('b', contiguous('1', 'LongStorage', np.arange(10, dtype=np.int64)))])


@pytest.mark.fast
def test_truncated_legacy(tmp_path):
    path = write_legacy(tmp_path / 'model.pth', small_state())
    whole = path.read_bytes()
    for cut, needle in [(len(whole) - 40, 'truncated: storage 1 has 40 of its 80 bytes'),
                        (len(whole) - 88, 'truncated: it ends before the data of storage 1'),
                        (len(whole) - 100, 'truncated: storage 0 has 3988 of its 4000 bytes'),
                        (len(whole) - 4100, 'truncated: it ends in its list of storage keys'),
                        (150, 'truncated: it ends in its pickle'), (60, 'truncated: it ends in its system information'),
                        (20, 'truncated: it ends in its protocol version')]:
        path.write_bytes(whole[:cut])
        refused(path, needle)


@pytest.mark.fast
def test_damaged_zip(tmp_path):
    state = small_state()
    refused(write_zip(tmp_path / 'nodata.pth', state, records={'data.pkl': None}),
            'without the data record', 'archive/data.pkl')
    refused(write_zip(tmp_path / 'norecord.pth', state, records={'data/1': None}),
            'missing storage record archive/data/1')
    refused(write_zip(tmp_path / 'short.pth', state, records={'data/1': b'\0' * 12}),
            'storage record archive/data/1 holds 12 bytes', '10 elements of LongStorage')
    whole = write_zip(tmp_path / 'cut.pth', state).read_bytes()
    (tmp_path / 'cut.pth').write_bytes(whole[:len(whole) // 2])
    refused(tmp_path / 'cut.pth', 'damaged zip archive')
    position = whole.index(np.arange(1000, dtype=np.float32).tobytes()) + 100   # flip a byte of storage 0
    (tmp_path / 'crc.pth').write_bytes(whole[:position] + bytes([whole[position] ^ 0xFF]) + whole[position + 1:])
    refused(tmp_path / 'crc.pth', 'damaged record archive/data/0')
    with zipfile.ZipFile(tmp_path / 'other.zip', 'w') as archive:
        archive.writestr('readme.txt', 'hello')
    refused(tmp_path / 'other.zip', 'without the data record')
    refused(write_zip(tmp_path / 'list.pth', [1, 2, 3]), 'holds no state dict: a list')
    refused(write_zip(tmp_path / 'badpickle.pth', {}, data=b'\x80\x02}q\x00(X\x01\x00\x00\x00a'),
            'truncated: it ends in its pickle')
    refused(write_zip(tmp_path / 'garbage.pth', {}, data=b'\x80\x02\xff\xfe'), 'damaged pickle')


@pytest.mark.fast
def test_not_a_checkpoint(tmp_path):
    (tmp_path / 'empty.pth').write_bytes(b'')
    refused(tmp_path / 'empty.pth', 'empty file')
    (tmp_path / 'random.pth').write_bytes(np.random.default_rng(1).bytes(4096))
    refused(tmp_path / 'random.pth', 'not a PyTorch checkpoint')
    (tmp_path / 'pickle.pth').write_bytes(pickle.dumps({'a': 1}, protocol=2))
    refused(tmp_path / 'pickle.pth', 'not a PyTorch checkpoint')
    refused(tmp_path / 'missing.pth', 'no such file')
    refused(tmp_path, 'no such file')
    path = write_legacy(tmp_path / 'version.pth', small_state())
    whole = path.read_bytes()
    version = pickle.dumps(1001, protocol=2)
    path.write_bytes(whole.replace(version, pickle.dumps(1002, protocol=2), 1))
    refused(path, 'legacy protocol version 1002')
