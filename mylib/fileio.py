"""Writing files so that nothing half-written is ever left under the final name, and every failed write
is an OSError that names the file (MXNet's own write errors included)."""
import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager

import mxnet as mx

LOW_SPACE = 1 << 20  # bytes: a failed write with less free space than this is taken for a full disk
MXNET_WRITE_FAILURE = 'FileStream.Write incomplete'  # dmlc-core's message for a short fwrite


@contextmanager
def named_write_errors(path, temporary=None):
    """Make the write errors of the block OSErrors that name `path`.

    MXNet reports a short write (a full disk) as an MXNetError without the file's name; Python's own
    writes raise OSErrors that name the `temporary` file being written, or nothing. Both become
    OSError(errno, reason, path); OSErrors about other files pass unchanged.
    """
    try:
        yield
    except OSError as error:
        if error.errno is None or error.filename not in (None, temporary):
            raise
        raise OSError(error.errno, error.strerror, os.fspath(path)) from None
    except mx.base.MXNetError as error:
        if MXNET_WRITE_FAILURE not in str(error):
            raise
        directory = os.path.dirname(os.path.abspath(path))
        if shutil.disk_usage(directory).free < LOW_SPACE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path)) from None
        raise OSError(errno.EIO, 'MXNet could not write all of it', os.fspath(path)) from None


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is flushed to disk and renamed to `path`.

    If the block raises (or the process is killed), `path` keeps its previous content (or stays
    absent) and the temporary file is removed (or, after a kill, left as a hidden `.*.tmp` file).
    A failed write (a full disk, by Python or by MXNet) is an OSError naming `path`.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, a device such as /dev/stdout
        raise OSError(errno.EEXIST, 'exists and is not a regular file: give the name of a file to write', path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp',
                                         dir=directory)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the final file the usual mode
    try:
        with named_write_errors(path, temporary):
            yield temporary
            with open(temporary, 'rb+') as written:
                os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path, data):
    """Write `data` as indented JSON to `path`, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, 'w') as stream:
            json.dump(data, stream, indent=1, sort_keys=False, allow_nan=False)  # strict JSON: no NaN
            stream.write('\n')


def sha256_of(path, chunk=1 << 20):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()
