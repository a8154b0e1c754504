"""Writing files so that nothing half-written is ever left under the final name."""
import json
import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is flushed to disk and renamed to `path`.

    If the block raises (or the process is killed), `path` keeps its previous content (or stays
    absent) and the temporary file is removed (or, after a kill, left as a hidden `.*.tmp` file).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp',
                                         dir=directory)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the final file the usual mode
    try:
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
            json.dump(data, stream, indent=1, sort_keys=False)
            stream.write('\n')
