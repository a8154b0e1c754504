"""Stage 1: read an official TF checkpoint into a framework-neutral .h5 of TF-named arrays.

The only module of the project that imports TensorFlow (inside `read_checkpoint`, so that importing
this module stays cheap). Model variables are written as h5 datasets under their TF names
(`xception_65/entry_flow/conv1_1/weights`, ...); optimizer slots and `global_step` are skipped by
the rule of `converters.mapping.skip_reason`, and their names and counts are kept in the attributes.
"""
import glob
import json
import os
import re
import tarfile
import zlib

from tqdm import tqdm

from converters.mapping import MOMENTUM_SLOT, SLOT_GROUP, skip_reason
from mylib.errors import ConversionError
from mylib.fileio import atomic_path, sha256_of

H5_FORMAT = 'deeplab-gluon/tf-named-arrays/1'


def is_archive(path):
    return os.path.isfile(path) and re.search(r'\.(tar\.gz|tgz|tar)$', path) is not None


def extract_archive(archive, directory):
    """Extract the regular files of a (gzipped) tar archive into `directory`, refusing unsafe paths."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                target = os.path.realpath(os.path.join(directory, member.name))
                if not target.startswith(os.path.realpath(directory) + os.sep):
                    raise ConversionError('%s: unsafe path in archive: %s' % (archive, member.name))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with tar.extractfile(member) as source, open(target, 'wb') as out:
                    while True:
                        block = source.read(1 << 20)
                        if not block:
                            break
                        out.write(block)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        reason = 'damaged or not a tar archive' if isinstance(error, tarfile.ReadError) else error
        raise ConversionError('%s: not a readable checkpoint archive (%s)' % (archive, reason)) from None


def _prefixes_in(directory):
    """Checkpoint prefixes (`<prefix>.index`) in a folder, or in its subfolders if it has none."""
    found = sorted(path[:-len('.index')] for path in glob.glob(os.path.join(directory, '*.index')))
    if not found:
        found = sorted(path[:-len('.index')] for path in glob.glob(os.path.join(directory, '*', '*.index')))
    state = os.path.join(directory, 'checkpoint')
    if len(found) > 1 and os.path.isfile(state):
        # TF's bookkeeping file names the newest checkpoint: model_checkpoint_path: "model.ckpt-30000"
        with open(state) as stream:
            match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', stream.read(), re.M)
        if match:
            named = os.path.join(directory, match.group(1))
            if named in found:
                return [named]
    return found


def resolve_checkpoint(path, workdir):
    """(TF checkpoint prefix, files that hold it) for a prefix, a folder or a release archive.

    `workdir` receives the content of an archive. Raises ConversionError naming the path when there
    is no checkpoint to read.
    """
    if not os.path.exists(path) and not os.path.exists(path + '.index'):
        raise ConversionError('%s: no such file or folder' % path)
    if is_archive(path):
        extract_archive(path, workdir)
        prefixes = _prefixes_in(workdir)
        where = 'archive %s' % path
    elif os.path.isdir(path):
        prefixes = _prefixes_in(path)
        where = 'folder %s' % path
    else:
        prefix = re.sub(r'\.(index|meta|data-\d+-of-\d+)$', '', path)
        prefixes = [prefix] if os.path.isfile(prefix + '.index') else []
        where = path
    if not prefixes:
        raise ConversionError('%s: no TF checkpoint (no <prefix>.index file) in %s' % (path, where))
    if len(prefixes) > 1:
        raise ConversionError('%s: several checkpoints in %s, pass one of: %s'
                              % (path, where, ', '.join(prefixes)))
    prefix = prefixes[0]
    data = sorted(glob.glob(glob.escape(prefix) + '.data-*-of-*'))
    if not data:
        raise ConversionError('%s: checkpoint %s has an .index but no .data-*-of-* file' % (path, prefix))
    return prefix, [prefix + '.index'] + data


def _import_tensorflow():
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    try:
        import tensorflow as tf
    except ImportError:
        raise ConversionError('reading a TF checkpoint needs TensorFlow (pip install -r requirements.txt); '
                              'a .h5 written by --save-h5 converts without it') from None
    return tf


def _first_line(error):
    message = getattr(error, 'message', None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


def read_checkpoint(source, h5_path, workdir, progress=True, keep_momentum=False):
    """Read the checkpoint `source` (prefix, folder or archive) into `h5_path`; return a summary.

    The summary: {'source', 'source_files': [{'path', 'sha256'}], 'read', 'kept', 'skipped':
    {reason: count}, 'momentum_slots': count}. With `keep_momentum` the `<variable>/Momentum` slots are
    kept too, under `optimizer_slots/<variable>/Momentum` (they are still skipped as model tensors).
    `h5_path` is written atomically; nothing is left there on error.
    """
    prefix, files = resolve_checkpoint(source, workdir)
    hashed = [source] if is_archive(source) else files
    source_files = [{'path': os.path.abspath(path), 'sha256': sha256_of(path)} for path in hashed]
    tf = _import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except Exception as error:  # TF raises several kinds for corrupted or truncated files
        raise ConversionError('%s: cannot read the checkpoint index %s.index: %s'
                              % (source, os.path.basename(prefix), _first_line(error))) from None
    names = sorted(shapes)
    skipped, slots = {}, 0
    import h5py
    with atomic_path(h5_path) as temporary, h5py.File(temporary, 'w') as out:
        for name in tqdm(names, desc='reading TF checkpoint', unit='tensor', disable=not progress):
            reason = skip_reason(name)
            if reason:
                skipped.setdefault(reason, []).append(name)
                if keep_momentum and name.endswith('/' + MOMENTUM_SLOT):
                    out.create_dataset('%s/%s' % (SLOT_GROUP, name), data=reader.get_tensor(name))
                    slots += 1
                continue
            try:
                array = reader.get_tensor(name)
            except Exception as error:
                raise ConversionError('%s: cannot read tensor %s from %s: %s'
                                      % (source, name, os.path.basename(files[-1]), _first_line(error))) from None
            try:
                out.create_dataset(name, data=array)
            except (ValueError, TypeError) as error:  # a name that is also another tensor's scope
                raise ConversionError('%s: tensor %s cannot be stored under its name (%s)'
                                      % (source, name, _first_line(error))) from None
        out.attrs['format'] = H5_FORMAT
        out.attrs['source'] = os.path.abspath(source)
        out.attrs['source_files'] = json.dumps(source_files)
        out.attrs['skipped'] = json.dumps(skipped)
    return {'source': os.path.abspath(source), 'source_files': source_files, 'read': len(names),
            'kept': len(names) - sum(map(len, skipped.values())),
            'skipped': {reason: len(group) for reason, group in skipped.items()}, 'momentum_slots': slots}
