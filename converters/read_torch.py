"""Read a PyTorch checkpoint (.pth) into numpy arrays, without PyTorch, refusing anything but tensors.

`read_state_dict(path)` -> (OrderedDict {name: numpy array}, info). Both files `torch.save` writes are read:
- zip (PyTorch >= 1.6): a zip archive `<root>/data.pkl` (the pickle), `<root>/byteorder` ("little" or
  "big"; little if absent), `<root>/data/<key>` (the raw bytes of each storage, numel x element size);
  a storage is the persistent id ('storage', storage type, key, location, numel).
- legacy (PyTorch < 1.6, e.g. 1.1): five things one after the other: the pickled magic number
  0x1950a86a20f9469cfc6c, the protocol version 1001, the sys info dict, the pickle, the sorted list of
  storage keys; then, for each key in that order, an 8-byte little-endian element count and the storage's
  raw little-endian bytes. A storage is the persistent id ('storage', storage type, root key, location,
  numel, view metadata None or (view key, offset, numel)).
A tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`
(`_rebuild_tensor(storage, offset, size, stride)` before PyTorch 0.4.1), in elements of its storage.
The format is told by the file's first bytes (the zip signature, the pickled magic number), never its name.

The pickle is read by a restricted unpickler: it resolves only the few globals a checkpoint names (see
`_ALLOWED`) and refuses any other (a pickle may call any importable function: `os.system`, `eval`),
before anything is called. What the allowed callables receive is checked (a storage, ints, a view inside
its storage), and the objects they return refuse to be modified by the pickle (BUILD).

No mxnet, no torch: plain Python and numpy.
"""
import _compat_pickle
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from mylib.errors import ConversionError

ZIP_SIGNATURE = b'PK\x03\x04'           # the first bytes of every zip record; torch.load looks for the same
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c   # pickled first in a legacy file
LEGACY_PROTOCOL = 1001
DATA_PARALLEL_PREFIX = 'module.'         # nn.DataParallel's: stripped when every name has it
MAX_DIMS = 64                            # PyTorch's own limit on a tensor's dimensions

# torch.<name>Storage -> numpy dtype name. BFloat16 has no numpy dtype: read as float32 (exact: the top
# 16 bits of a float32). Complex and quantized storages are refused by name.
STORAGE_DTYPES = {'FloatStorage': 'float32', 'DoubleStorage': 'float64', 'HalfStorage': 'float16',
                  'BFloat16Storage': 'bfloat16', 'LongStorage': 'int64', 'IntStorage': 'int32',
                  'ShortStorage': 'int16', 'CharStorage': 'int8', 'ByteStorage': 'uint8', 'BoolStorage': 'bool'}
_ITEMSIZE = {'bfloat16': 2, 'bool': 1}

REFUSAL = ('refuses to load: the file asks for %s (a .pth file may run code when unpickled; only PyTorch '
           'tensors and plain containers are read)')


class _FileError(Exception):
    """What is wrong with the file, without its name (read_state_dict adds it)."""


def _shown(text, limit=120):
    text = str(text)
    return text if text.isprintable() and len(text) <= limit else repr(text[:limit])


class _Sealed:
    """Objects the unpickler hands to the pickle: a BUILD (setstate) on them is refused."""
    __slots__ = ()

    def __setstate__(self, state):
        raise _FileError('damaged or hostile pickle: it tries to set the state of a %s'
                         % type(self).__name__.strip('_'))


class _StorageType(_Sealed):
    __slots__ = ('name', 'dtype')

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    @property
    def itemsize(self):
        return _ITEMSIZE.get(self.dtype) or np.dtype(self.dtype).itemsize


_STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()}


class _Storage(_Sealed):
    """A storage of `numel` elements: its own data (loaded later), or a view of a legacy root storage."""
    __slots__ = ('key', 'type', 'numel', 'data', 'root', 'offset')

    def __init__(self, key, storage_type, numel, root=None, offset=0):
        self.key, self.type, self.numel, self.root, self.offset = key, storage_type, numel, root, offset
        self.data = None

    def array(self):
        if self.root is not None:
            return self.root.array()[self.offset:self.offset + self.numel]
        if self.data is None:
            raise _FileError('no data for storage %s' % _shown(self.key))
        return self.data


class _Tensor(_Sealed):
    __slots__ = ('storage', 'offset', 'shape', 'strides', 'negative')

    def __init__(self, storage, offset, shape, strides, negative=False):
        self.storage, self.offset, self.shape, self.strides, self.negative = storage, offset, shape, strides, negative

    def materialize(self):
        data = self.storage.array()
        if int(np.prod(self.shape, dtype=object)) == 0:
            return np.zeros(self.shape, data.dtype)
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.shape,
                                               strides=[s * data.itemsize for s in self.strides], writeable=False)
        array = np.array(view, copy=True, order='C')
        return -array if self.negative else array


class _Callable(_Sealed):
    """An allowed global that the pickle may call (REDUCE): checks its arguments, then does the work."""
    __slots__ = ('name', 'function')

    def __init__(self, name, function):
        self.name, self.function = name, function

    def __call__(self, *args):
        return self.function(*args)


def _is_int(value):
    return type(value) is int


def _int_sequence(value, what):
    if type(value) not in (tuple, list) or len(value) > MAX_DIMS or not all(_is_int(v) and v >= 0 for v in value):
        raise _FileError('a tensor has %s %s: not a tuple of at most %d non-negative ints'
                         % (what, _shown(value), MAX_DIMS))
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """torch._utils._rebuild_tensor(_v2): a strided view of a storage, checked to lie inside it."""
    if not isinstance(storage, _Storage):
        raise _FileError('a tensor is rebuilt from a %s, not from a storage' % type(storage).__name__)
    if not _is_int(offset) or offset < 0:
        raise _FileError('a tensor has storage offset %s: not a non-negative int' % _shown(offset))
    shape, strides = _int_sequence(size, 'size'), _int_sequence(stride, 'stride')
    if len(shape) != len(strides):
        raise _FileError('a tensor has size %s but stride %s' % (shape, strides))
    if hooks is not None and not isinstance(hooks, dict):
        raise _FileError('a tensor has backward hooks %s: not a dict' % _shown(hooks))
    negative = False
    if metadata:   # PyTorch >= 1.10 saves the conj/neg bits when set: conj is nothing on real data
        if not isinstance(metadata, dict) or not set(metadata) <= {'conj', 'neg'}:
            raise _FileError('a tensor has metadata %s, which is not read here' % _shown(metadata))
        negative = bool(metadata.get('neg'))
    numel = int(np.prod(shape, dtype=object))
    if numel:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= storage.numel:
            raise _FileError('a tensor of size %s, stride %s and offset %d reaches element %d of a storage of %d '
                             'elements' % (shape, strides, offset, last, storage.numel))
        if numel > storage.numel:
            raise _FileError('a tensor of size %s has %d elements over a storage of %d (overlapping views are not read)'
                             % (shape, numel, storage.numel))
    return _Tensor(storage, offset, shape, strides, negative)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    """torch._utils._rebuild_parameter: an nn.Parameter wrapping a tensor: the tensor."""
    if not isinstance(data, _Tensor):
        raise _FileError('a parameter wraps a %s, not a tensor' % type(data).__name__)
    return data


# module.name -> what the unpickler hands the pickle. Nothing else resolves (see README of the reference:
# torch.save of a state dict, a training checkpoint, an optimizer state dict names only these).
_ALLOWED = {
    'collections.OrderedDict': OrderedDict,
    'torch._utils._rebuild_tensor_v2': _Callable('_rebuild_tensor_v2', _rebuild_tensor),
    'torch._utils._rebuild_tensor': _Callable('_rebuild_tensor', _rebuild_tensor),
    'torch._utils._rebuild_parameter': _Callable('_rebuild_parameter', _rebuild_parameter),
}
_ALLOWED.update(('torch.' + name, storage_type) for name, storage_type in _STORAGE_TYPES.items())


class _Unpickler(pickle.Unpickler):
    """A pickle.Unpickler resolving only `_ALLOWED` (none if `allowed` is empty), storages via `persistent`."""

    def __init__(self, file, allowed=None, persistent=None):
        super().__init__(file, encoding='utf-8')
        self._allowed = _ALLOWED if allowed is None else allowed
        self._persistent = persistent

    def find_class(self, module, name):
        # Python 2 names, as pickle itself maps them (protocol 2 writes __builtin__ for builtins)
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = '%s.%s' % (module, name)
        if full in self._allowed:
            return self._allowed[full]
        if self._allowed and module == 'torch' and isinstance(name, str) and name.endswith('Storage'):
            raise _FileError('holds a tensor of type torch.%s, which is not read here (only %s)'
                             % (_shown(name), ', '.join(sorted(STORAGE_DTYPES))))
        raise _FileError(REFUSAL % _shown(full))

    def persistent_load(self, pid):
        if self._persistent is None:
            raise _FileError('damaged file: a persistent id %s where none belongs' % _shown(pid))
        return self._persistent(pid)


def _is_truncation(error):
    """The unpickler ran out of bytes (EOFError at a pickle's start, UnpicklingError within one)."""
    return isinstance(error, EOFError) or (isinstance(error, pickle.UnpicklingError) and 'truncated' in str(error))


def _plain_load(stream, what):
    """One pickle of plain data (no globals, no storages), e.g. the magic number of a legacy file."""
    try:
        return _Unpickler(stream, allowed={}).load()
    except _FileError:
        raise
    except Exception as error:   # the C unpickler's errors on damaged bytes: UnpicklingError, ValueError, ...
        if _is_truncation(error):
            raise _FileError('truncated: it ends in its %s' % what) from None
        raise _FileError('damaged %s (%s)' % (what, ' '.join(str(error).split()) or type(error).__name__)) from None


def _storage_id(pid, length):
    """(storage type, key, numel, the rest) of a persistent id, checked (the location is not used)."""
    if type(pid) is not tuple or not pid:
        raise _FileError('damaged pickle: persistent id %s is not a storage' % _shown(pid))
    typename = pid[0].decode('ascii', 'replace') if isinstance(pid[0], bytes) else pid[0]
    if typename == 'module':
        raise _FileError('holds a whole pickled model (torch.save(model)), not a state dict: save model.state_dict()')
    if typename != 'storage' or len(pid) != length:
        raise _FileError('damaged pickle: persistent id %s is not a storage of this format' % _shown(pid))
    storage_type, key, location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
        raise _FileError('damaged pickle: storage of type %s' % _shown(storage_type))
    if not isinstance(key, str) or not isinstance(location, (str, bytes)) or not _is_int(numel) or numel < 0:
        raise _FileError('damaged pickle: storage id %s' % _shown(pid))
    return storage_type, key, numel, pid[5:]


def _to_array(raw, storage_type, byteorder):
    """A storage's raw bytes -> a 1-D native numpy array (bfloat16 as float32, bool normalised)."""
    if storage_type.dtype == 'bfloat16':
        bits = np.frombuffer(raw, np.dtype('uint16').newbyteorder(byteorder))
        return (bits.astype(np.uint32) << 16).view(np.float32)
    if storage_type.dtype == 'bool':
        return np.frombuffer(raw, np.uint8) != 0
    dtype = np.dtype(storage_type.dtype)
    return np.frombuffer(raw, dtype.newbyteorder(byteorder)).astype(dtype, copy=False)


def _same_type(storage, storage_type):
    if storage.type is not storage_type:
        raise _FileError('storage %s is read both as %s and as %s'
                         % (_shown(storage.key), storage.type.name, storage_type.name))
    return storage


# --- the two layouts ---------------------------------------------------------------------------------------
def checkpoint_format(path):
    """'zip' or 'legacy' from the first bytes of the file at `path`; 'tar' (very old PyTorch); else None."""
    with open(path, 'rb') as stream:
        head = stream.read(512)
    if head.startswith(ZIP_SIGNATURE):
        return 'zip'
    if len(head) > 262 and head[257:262] == b'ustar':
        return 'tar'
    if head[:1] == b'\x80' or head[:1] == b'L':   # a pickle: protocol 2+ or protocol 0's long
        try:
            if _plain_load(io.BytesIO(head), 'magic number') == LEGACY_MAGIC:
                return 'legacy'
        except _FileError:
            return None
    return None


def _load_zip(path):
    """(unpickled object, load(storages), close()) of a zip checkpoint."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise _FileError('damaged zip archive (%s)' % ' '.join(str(error).split())) from None
    try:
        return _read_zip(archive)
    except BaseException:
        archive.close()
        raise


def _read_zip(archive):
    names = archive.namelist()
    if not names:
        raise _FileError('an empty zip archive, not a PyTorch checkpoint')
    root = names[0].split('/')[0]
    if root + '/constants.pkl' in archive.NameToInfo:
        raise _FileError('a TorchScript archive (torch.jit.save), not a checkpoint of torch.save')
    data_name = root + '/data.pkl'
    if data_name not in archive.NameToInfo:
        raise _FileError('a zip archive without the data record of a PyTorch checkpoint (%s)' % _shown(data_name))

    def record(name):
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as error:
            raise _FileError('damaged record %s (%s)' % (_shown(name), ' '.join(str(error).split()))) from None

    byteorder = '<'
    if root + '/byteorder' in archive.NameToInfo:
        mark = record(root + '/byteorder')
        if mark not in (b'little', b'big'):
            raise _FileError('unknown byte order %s in %s/byteorder' % (_shown(mark), root))
        byteorder = '<' if mark == b'little' else '>'

    storages = {}

    def persistent_load(pid):
        storage_type, key, numel, _ = _storage_id(pid, 5)
        if key in storages:
            return _same_type(storages[key], storage_type)
        name = '%s/data/%s' % (root, key)
        info = archive.NameToInfo.get(name)
        if info is None:
            raise _FileError('missing storage record %s' % _shown(name))
        if info.file_size != numel * storage_type.itemsize:
            raise _FileError('storage record %s holds %d bytes, the pickle says %d elements of %s (%d bytes)'
                             % (_shown(name), info.file_size, numel, storage_type.name, numel * storage_type.itemsize))
        storages[key] = _Storage(key, storage_type, numel)
        return storages[key]

    obj = _unpickle(record(data_name), persistent_load)

    def load(needed):
        for storage in needed:
            name = '%s/data/%s' % (root, storage.key)
            raw = record(name)
            if len(raw) != storage.numel * storage.type.itemsize:
                raise _FileError('storage record %s holds %d bytes, not %d'
                                 % (_shown(name), len(raw), storage.numel * storage.type.itemsize))
            storage.data = _to_array(raw, storage.type, byteorder)

    return obj, load, archive.close


def _unpickle(data, persistent_load):
    try:
        return _Unpickler(io.BytesIO(data) if isinstance(data, bytes) else data, persistent=persistent_load).load()
    except _FileError:
        raise
    except Exception as error:   # UnpicklingError, ValueError, TypeError (a REDUCE with bad arguments), ...
        if _is_truncation(error):
            raise _FileError('truncated: it ends in its pickle') from None
        reason = _shown(' '.join(str(error).split()), 200)
        raise _FileError('damaged pickle (%s: %s)' % (type(error).__name__, reason)) from None


def _load_legacy(path):
    """(unpickled object, load(storages), close()) of a legacy checkpoint."""
    stream = open(path, 'rb')   # closed by the caller, or here on error
    try:
        size = os.fstat(stream.fileno()).st_size
        if _plain_load(stream, 'magic number') != LEGACY_MAGIC:
            raise _FileError('not a legacy PyTorch checkpoint (wrong magic number)')
        version = _plain_load(stream, 'protocol version')
        if version != LEGACY_PROTOCOL:
            raise _FileError('legacy protocol version %s, not %d' % (_shown(version), LEGACY_PROTOCOL))
        if not isinstance(_plain_load(stream, 'system information'), dict):
            raise _FileError('damaged system information (not a dict)')

        storages, views = {}, {}

        def persistent_load(pid):
            storage_type, key, numel, (view,) = _storage_id(pid, 6)
            if key not in storages:
                storages[key] = _Storage(key, storage_type, numel)
            root = _same_type(storages[key], storage_type)
            if view is None:
                return root
            if (type(view) is not tuple or len(view) != 3 or not isinstance(view[0], str)
                    or not all(_is_int(v) and v >= 0 for v in view[1:])):
                raise _FileError('damaged pickle: storage view %s' % _shown(view))
            view_key, offset, view_numel = view
            if offset + view_numel > root.numel:
                raise _FileError('storage view %s (elements %d to %d) lies outside storage %s of %d elements'
                                 % (_shown(view_key), offset, offset + view_numel, _shown(key), root.numel))
            if view_key not in views:
                views[view_key] = _Storage(view_key, storage_type, view_numel, root=root, offset=offset)
            return _same_type(views[view_key], storage_type)

        obj = _unpickle(stream, persistent_load)
        keys = _plain_load(stream, 'list of storage keys')
        if type(keys) is not list or not all(isinstance(k, str) for k in keys):
            raise _FileError('damaged list of storage keys (%s)' % _shown(keys))
        for key in keys:
            if key not in storages:
                raise _FileError('damaged file: its data holds storage %s, which no tensor uses' % _shown(key))
    except BaseException:
        stream.close()
        raise

    def load(needed):
        """Read (or skip) each storage in file order, checking its element count and length."""
        wanted = {id(storage.root or storage) for storage in needed}
        for key in keys:
            storage = storages[key]
            header = stream.read(8)
            if len(header) < 8:
                raise _FileError('truncated: it ends before the data of storage %s' % _shown(key))
            count, = struct.unpack('<q', header)
            if count != storage.numel:
                raise _FileError('storage %s holds %d elements, the pickle says %d'
                                 % (_shown(key), count, storage.numel))
            nbytes = count * storage.type.itemsize
            if stream.tell() + nbytes > size:
                raise _FileError('truncated: storage %s has %d of its %d bytes'
                                 % (_shown(key), max(0, size - stream.tell()), nbytes))
            if id(storage) in wanted:
                storage.data = _to_array(stream.read(nbytes), storage.type, '<')
            else:
                stream.seek(nbytes, os.SEEK_CUR)
        missing = [s.key for s in storages.values() if id(s) in wanted and s.data is None]
        if missing:
            raise _FileError('no data for storage %s (not in its list of storage keys)' % _shown(missing[0]))

    return obj, load, stream.close


# --- what the pickle holds ----------------------------------------------------------------------------------
def _tensors_in(obj):
    """The _Tensor objects anywhere inside plain containers (cycles and shared objects counted once)."""
    found, seen, stack = [], set(), [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, _Tensor):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return found


def _describe(obj):
    if isinstance(obj, dict) and not obj:
        return 'an empty %s' % type(obj).__name__
    if isinstance(obj, dict):
        keys = [_shown(k, 40) for k in list(obj)[:8]]
        return 'a dict with keys %s%s' % (', '.join(keys), ', ...' if len(obj) > 8 else '')
    return 'a %s' % type(obj).__name__


def _state_dict_of(obj):
    """(state dict, wrapper, {skipped what: tensor count}, [other top-level keys]) of the unpickled object."""
    if isinstance(obj, dict) and obj and all(isinstance(v, _Tensor) for v in obj.values()):
        return obj, 'state_dict', {}, []
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        skipped, others = {}, []
        for key, value in obj.items():
            if key == 'state_dict':
                continue
            count = len(_tensors_in(value))
            if key == 'optimizer':
                skipped['optimizer state'] = count
            elif count:
                skipped['entry %s' % _shown(key)] = count
            else:
                others.append(str(key))
        return obj['state_dict'], 'training_checkpoint', skipped, others
    raise _FileError('holds no state dict: %s (expected a dict of tensors, or one under a "state_dict" key)'
                     % _describe(obj))


def read_state_dict(path):
    """Read the state dict of a PyTorch checkpoint: (OrderedDict {name: numpy array}, info).

    Names lose nn.DataParallel's 'module.' prefix when all have it. info: `format` ('zip' or 'legacy'),
    `wrapper` ('state_dict': the file is the dict itself; 'training_checkpoint': {'state_dict', 'optimizer',
    'epoch', ...}), `prefix` ('module.' or None), `tensors` (how many are returned), `num_batches_tracked`
    (how many of them are batch-norm counters, returned: the caller skips them by rule), `skipped`
    ({'optimizer state': its tensor count, ...}: not converted), `other_entries` (other keys of a training
    checkpoint, e.g. ['epoch']), `bfloat16_as_float32` (tensors widened from bfloat16).
    Raises ConversionError (one line naming the file) for anything else: not a checkpoint, damaged or
    truncated, or a pickle that asks for anything but tensors and plain containers.
    """
    shown = os.fspath(path)
    try:
        if not os.path.isfile(path):
            raise _FileError('no such file')
        if os.path.getsize(path) == 0:
            raise _FileError('an empty file, not a PyTorch checkpoint')
        kind = checkpoint_format(path)
        if kind == 'tar':
            raise _FileError('a checkpoint in the tar layout of early PyTorch releases, which is not read here')
        if kind is None:
            with open(path, 'rb') as stream:
                head = stream.read(8)
            raise _FileError('not a PyTorch checkpoint (neither a zip archive nor a legacy .pth; it starts with %s)'
                             % head.hex())
        obj, load, close = (_load_zip if kind == 'zip' else _load_legacy)(path)
        try:
            state, wrapper, skipped, others = _state_dict_of(obj)
            for name, value in state.items():
                if not isinstance(name, str):
                    raise _FileError('its state dict has a key %s that is not a name' % _shown(name))
                if not isinstance(value, _Tensor):
                    raise _FileError('entry %s of its state dict is a %s, not a tensor'
                                     % (_shown(name), type(value).__name__))
            load([tensor.storage for tensor in state.values()])
        finally:
            close()
        prefix = DATA_PARALLEL_PREFIX if state and all(n.startswith(DATA_PARALLEL_PREFIX) for n in state) else None
        arrays = OrderedDict((name[len(prefix):] if prefix else name, tensor.materialize())
                             for name, tensor in state.items())
    except _FileError as error:
        raise ConversionError('%s: %s' % (shown, error)) from None
    except OSError as error:
        raise ConversionError('%s: cannot read (%s)' % (shown, error.strerror or error)) from None
    info = {'format': kind, 'wrapper': wrapper, 'prefix': prefix, 'tensors': len(arrays),
            'num_batches_tracked': sum(name.endswith('num_batches_tracked') for name in arrays),
            'skipped': skipped, 'other_entries': others,
            'bfloat16_as_float32': sum(t.storage.type.dtype == 'bfloat16' for t in state.values())}
    return arrays, info
