"""The official Xception-65 DeepLab releases by name: downloaded once, converted once, loaded.

    from mylib import zoo
    net = zoo.get_model('xception65_coco_voc_trainaug')   # DeepLabV3Plus(21) with the official weights

Files are cached in MXNet's model folder, `$MXNET_HOME/models/deeplab` (by default
`~/.mxnet/models/deeplab`): the release archive as published, and `<name>.params` + `<name>.json`
converted from it (the conversion reads the checkpoint with TensorFlow, once). `$DEEPLAB_GLUON_MIRROR`
(a base URL, `file://` too) fetches the same archive file names from a mirror instead.

The facts of the releases (archive URLs, published results and their evaluation settings) are those of
the official model zoo: tensorflow/models, research/deeplab/g3doc/model_zoo.md; the dataset facts are
from research/deeplab/datasets/data_generator.py and the dataset pages beside model_zoo.md.
"""
import gzip
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import OrderedDict, namedtuple
from contextlib import contextmanager

import mxnet as mx
from tqdm import tqdm

from converters.convert import CONVERTER_VERSION, convert

from .data.specs import DATASETS, SINGLE_SCALE
from .errors import ConversionError, ZooError
from .fileio import atomic_path, sha256_of, write_json
from .models import Xception65
from .weights import load_deeplab, metadata_path

logger = logging.getLogger(__name__)

MIRROR_VARIABLE = 'DEEPLAB_GLUON_MIRROR'
USER_AGENT = 'deeplab-gluon (mylib.zoo)'
CHUNK = 1 << 20
RETRY_HTTP_CODES = (408, 429, 500, 502, 503, 504)  # answers that may go away if asked again


Release = namedtuple('Release', ['name', 'url', 'kind', 'num_classes', 'dataset', 'results', 'archive_size',
                                 'sha256'])
Release.__doc__ = """An official release archive and what it holds.

kind: 'deeplabv3plus' (mylib.DeepLabV3Plus) or 'xception65_imagenet' (mylib.Xception65).
dataset: 'voc', 'cityscapes', 'ade20k' (whose facts, such as the evaluation crop, are in
mylib.data.DATASETS) or 'imagenet'. results: the published Result(s). archive_size (bytes) and
sha256 (hex) of the archive: None where not published (the model zoo gives only rounded sizes).
"""

Result = namedtuple('Result', ['output_stride', 'scales', 'flip', 'miou', 'split', 'pixel_accuracy'],
                    defaults=(None,))
Result.__doc__ = """One published evaluation: mIoU (percent) on `split` ('val' or 'test') at `output_stride`
with the input `scales` and left-right `flip` averaged; pixel_accuracy (percent) where published."""

_MODELS = 'http://download.tensorflow.org/models/'  # the links of model_zoo.md, as published (http)

RELEASES = OrderedDict((release.name, release) for release in (
    # model_zoo.md, PASCAL VOC 2012 table: 82.20% (val) at OS16 [1.0] no flip, 83.58% (val) at OS8
    # [0.5:0.25:1.75] with flip; "439MB". 21 classes: data_generator.py _PASCAL_VOC_SEG_INFORMATION.
    Release('xception65_coco_voc_trainaug', _MODELS + 'deeplabv3_pascal_train_aug_2018_01_04.tar.gz',
            'deeplabv3plus', 21, 'voc',
            (Result(16, SINGLE_SCALE, False, 82.20, 'val'), Result(8, DATASETS['voc'].scales, True, 83.58, 'val')),
            None, None),
    # model_zoo.md: 87.80% (test) at OS8 [0.5:0.25:1.75] with flip, the only published result; "439MB".
    Release('xception65_coco_voc_trainval', _MODELS + 'deeplabv3_pascal_trainval_2018_01_04.tar.gz',
            'deeplabv3plus', 21, 'voc',
            (Result(8, DATASETS['voc'].scales, True, 87.80, 'test'),),
            None, None),
    # model_zoo.md, Cityscapes table: 78.79% (val) at OS16 [1.0] no flip, 80.42% (val) at OS8
    # [0.75:0.25:1.25] with flip; "439MB". 19 classes: data_generator.py _CITYSCAPES_INFORMATION.
    # The only Cityscapes trainval release is xception71_dpc_cityscapes_trainval (Xception-71 + dense
    # prediction cell, not this model).
    Release('xception65_cityscapes_trainfine', _MODELS + 'deeplabv3_cityscapes_train_2018_02_06.tar.gz',
            'deeplabv3plus', 19, 'cityscapes',
            (Result(16, SINGLE_SCALE, False, 78.79, 'val'), Result(8, DATASETS['cityscapes'].scales, True, 80.42,
                                                                   'val')),
            None, None),
    # model_zoo.md, ADE20K table: 45.65% mIoU and 82.52% pixel accuracy (val) at OS8 [0.5:0.25:1.75]
    # with flip, the only published result; "439MB". 151 classes (150 + "ignore" 0): data_generator.py.
    Release('xception65_ade20k_train', _MODELS + 'deeplabv3_xception_ade20k_train_2018_05_29.tar.gz',
            'deeplabv3plus', 151, 'ade20k',
            (Result(8, DATASETS['ade20k'].scales, True, 45.65, 'val', pixel_accuracy=82.52),),
            None, None),
    # model_zoo.md, "Checkpoints pretrained on ImageNet": xception_65 (later named xception_65_imagenet),
    # "447MB", no accuracy published, no evaluation crop. 1001 classes (1000 + background 0): not in
    # model_zoo.md; from ../shared/reference/README.md, and checked against the checkpoint on conversion.
    Release('xception_65', _MODELS + 'deeplabv3_xception_2018_01_04.tar.gz',
            'xception65_imagenet', 1001, 'imagenet', (),
            None, None),
))

DEFAULT_MODEL = 'xception65_coco_voc_trainaug'


# --- names, places ---------------------------------------------------------------------------------
def get_release(name):
    """The Release of `name`; a Release passed in is returned as it is (e.g. one with another url)."""
    if isinstance(name, Release):
        return name
    if name not in RELEASES:
        raise ZooError('unknown model %r; the known models are: %s' % (name, ', '.join(RELEASES)))
    return RELEASES[name]


def model_root(root=None):
    """The folder of cached archives and converted params: `root`, or `$MXNET_HOME/models/deeplab`
    (MXNet's usual model folder, ~/.mxnet/models by default, in a 'deeplab' subfolder)."""
    if root is not None:
        return os.path.abspath(os.path.expanduser(os.fspath(root)))
    return os.path.join(mx.base.data_dir(), 'models', 'deeplab')


def archive_name(release):
    """The file name of a release archive, as published (`deeplabv3_pascal_train_aug_2018_01_04.tar.gz`)."""
    return os.path.basename(urllib.parse.urlparse(release.url).path)


def release_url(release, mirror=None):
    """Where to fetch a release: its url, or its archive name under `mirror` (default $DEEPLAB_GLUON_MIRROR)."""
    mirror = os.environ.get(MIRROR_VARIABLE, '') if mirror is None else mirror
    if not mirror:
        return release.url
    return mirror.rstrip('/') + '/' + archive_name(release)


def format_result(result):
    """'83.58% val (OS8, scales 0.5-1.75, flip)': a published result and its evaluation settings."""
    scales = ('scale %s' % result.scales[0] if len(result.scales) == 1
              else 'scales %s-%s' % (result.scales[0], result.scales[-1]))
    accuracy = ', pixel accuracy %.2f%%' % result.pixel_accuracy if result.pixel_accuracy is not None else ''
    return '%.2f%% %s (OS%d, %s%s)%s' % (result.miou, result.split, result.output_stride, scales,
                                        ', flip' if result.flip else '', accuracy)


# --- download --------------------------------------------------------------------------------------
class _TransferError(Exception):
    """A transfer that stopped early and may succeed when tried again (dropped connection, timeout, ...)."""


@contextmanager
def _exclusive(path):
    """Hold an exclusive lock on the lock file `path` (other processes wait); no lock without fcntl."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent downloads of the same file are not guarded
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(path):
    """The hidden lock file beside `path`."""
    return os.path.join(os.path.dirname(path), '.%s.lock' % os.path.basename(path))


def _size_of(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def _reason(error):
    """A short reason for a network error: 'timed out', 'Connection refused', ..."""
    reason = getattr(error, 'reason', None) or error
    return ' '.join(str(reason).split()) or type(error).__name__


def _content_range(header):
    """(first byte, total or None) of a Content-Range header `bytes A-B/T` or `bytes */T`."""
    match = re.match(r'bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)', header or '')
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    return first, int(match.group(2)) if match.group(2) != '*' else None


def _open(url, offset, timeout):
    """The response to GET `url` (from byte `offset` with a Range request); raises on HTTP errors."""
    headers = {'User-Agent': USER_AGENT}
    if offset:
        headers['Range'] = 'bytes=%d-' % offset
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _answer(url, partial, size, timeout):
    """Send one request for what `partial` lacks; return (response or None if `partial` is whole, offset).

    The offset is where the response's bytes go: the size of `partial`, or 0 if the server sends
    the whole file (ignoring Range; `partial` is then emptied).
    """
    offset = _size_of(partial)
    if size is not None and offset > size:  # longer than the release: not a prefix of it
        os.remove(partial)
        offset = 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing from `offset` on: whole already, or not a prefix
            if _content_range(error.headers.get('Content-Range'))[1] == offset:
                return None, offset
            os.remove(partial)
            raise _TransferError('the server refused to resume at byte %d (HTTP 416)' % offset) from None
        if error.code in RETRY_HTTP_CODES:
            raise _TransferError('HTTP %d %s' % (error.code, error.reason)) from None
        raise ZooError('%s: download failed: HTTP %d %s' % (url, error.code, error.reason)) from None
    except (http.client.HTTPException, OSError) as error:  # URLError, refused, timed out, reset
        raise _TransferError(_reason(error)) from None
    if getattr(response, 'status', None) == 206:  # file:// answers have no status before Python 3.9
        first, _ = _content_range(response.headers.get('Content-Range'))
        if first != offset:
            response.close()
            os.remove(partial)
            raise _TransferError('the server answered the range from byte %s, not %d' % (first, offset))
        return response, offset
    if offset:
        logger.warning('%s ignores Range requests: downloading all of it again', url)
    open(partial, 'wb').close()
    return response, 0


def _expected_total(response, offset):
    """The byte count the whole file has according to the response, None if it does not say."""
    _, total = _content_range(response.headers.get('Content-Range'))
    length = response.headers.get('Content-Length')
    if total is None and length is not None and length.isdigit():
        total = offset + int(length)
    return total


def _read(response):
    """The next chunk of a response; a connection that breaks is a _TransferError (tried again)."""
    try:
        return response.read(CHUNK)
    except (http.client.HTTPException, OSError) as error:  # IncompleteRead, reset, timed out
        raise _TransferError(_reason(error)) from None


def _transfer(url, partial, size, progress, timeout):
    """One request: append what `partial` lacks. Raises _TransferError if the transfer stops early."""
    response, offset = _answer(url, partial, size, timeout)
    if response is None:
        return
    with response:
        total = _expected_total(response, offset)
        if size is not None and total is not None and total != size:
            os.remove(partial)
            raise ZooError('%s: the server announces %d bytes, the release has %d bytes' % (url, total, size))
        total = size if total is None else total
        received = 0
        with open(partial, 'ab') as out, tqdm(total=total, initial=offset, unit='B', unit_scale=True,
                                              unit_divisor=1024, desc=os.path.basename(partial[:-len('.part')]),
                                              disable=not progress) as bar:
            for block in iter(lambda: _read(response), b''):
                out.write(block)  # a full disk raises OSError here: not a transfer to try again
                received += len(block)
                bar.update(len(block))
    if total is not None and offset + received < total:
        raise _TransferError('the connection closed after %d of %d bytes' % (offset + received, total))


def _fetch(url, partial, size, progress, timeout, retries, wait):
    """Complete `partial` from `url`, resuming after interruptions.

    An attempt that leaves `partial` longer than ever before is retried at once; at most `retries`
    attempts in a row may fail to, with waits of `wait`, 2 * `wait`, ... seconds between them.
    """
    failures, longest = 0, _size_of(partial)
    while True:
        try:
            _transfer(url, partial, size, progress, timeout)
            return
        except _TransferError as error:
            reached = _size_of(partial)
            failures, longest = (0, reached) if reached > longest else (failures + 1, longest)
            if failures > retries:
                kept = ('; %s keeps the %d bytes received, run again to resume' % (partial, reached)
                        if reached else '')
                raise ZooError('%s: download failed: %s (%d attempts in a row made no progress)%s'
                               % (url, error, failures, kept)) from None
            logger.warning('%s: %s; trying again from byte %d', url, error, reached)
            if failures:
                time.sleep(wait * 2 ** (failures - 1))


def _archive_problem(path, compressed):
    """Why the tar archive `path` is unusable (reading every byte, and the gzip check), or None."""
    names = []
    try:
        with (gzip.open if compressed else open)(path, 'rb') as stream:
            with tarfile.open(fileobj=stream, mode='r|') as tar:
                for member in tar:
                    names.append(member.name)
                    if member.isfile():
                        content = tar.extractfile(member)
                        while content.read(CHUNK):
                            pass
            while stream.read(CHUNK):  # to the end of the gzip stream, where its CRC is checked
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        return 'not a complete %s archive (%s)' % ('.tar.gz' if compressed else '.tar', _reason(error))
    if not any(name.endswith('.index') for name in names):
        return 'the archive holds no TF checkpoint (no .index file among %d files)' % len(names)
    return None


def _problem(path, checked_as, size, sha256):
    """Why the file `path` (named `checked_as`) is not the expected one, or None."""
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        return 'it has %d bytes, the release has %d' % (actual, size)
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256.lower():
            return 'its sha256 is %s, the release has %s' % (digest, sha256.lower())
    if re.search(r'\.(tar\.gz|tgz|tar)$', checked_as):
        return _archive_problem(path, compressed=not checked_as.endswith('.tar'))
    return None


def _matches(path, size, sha256):
    """True if the file at `path` has the known size and sha256 (each checked only when known)."""
    return ((size is None or os.path.getsize(path) == size)
            and (sha256 is None or sha256_of(path) == sha256.lower()))


def download(url, path, size=None, sha256=None, progress=True, timeout=60, retries=5, wait=1.0):
    """Download `url` to `path`, resumably, and rename it into place only once verified; return `path`.

    The bytes go to `<path>.part`; a retry after a dropped connection, or a later call, continues it
    with an HTTP Range request (and starts over if the server ignores Range). Verified before the
    rename: the byte count (Content-Length, and `size` in bytes if known), the `sha256` (hex) if known,
    and a .tar.gz / .tgz / .tar must read through completely and hold a TF checkpoint. A file that fails
    is deleted. An existing `path` of the known size and sha256 is returned without network access.
    timeout: seconds per socket operation. An interrupted attempt that made progress is retried at
    once; `retries` attempts in a row may make none, with waits of `wait`, 2 * `wait`, ... seconds.
    Raises ZooError naming the URL or file and the reason.
    """
    path = os.path.abspath(os.fspath(path))
    partial = path + '.part'
    with _exclusive(_lock_file(path)):
        if os.path.isfile(path):
            if _matches(path, size, sha256):
                return path
            logger.warning('%s is not the expected file (size or sha256): downloading it again', path)
            os.remove(path)
        _fetch(url, partial, size, progress, timeout, retries, wait)
        problem = _problem(partial, path, size, sha256)
        if problem:
            os.remove(partial)
            raise ZooError('%s: the file downloaded from %s is damaged: %s; deleted it, run again to download '
                           'it afresh' % (path, url, problem))
        with open(partial, 'rb+') as stream:
            os.fsync(stream.fileno())
        os.replace(partial, path)
    return path


# --- conversion, loading ---------------------------------------------------------------------------
def _cached_metadata(release, params):
    """The metadata of a usable cached conversion of `release` at `params`, or None."""
    try:
        with open(metadata_path(params)) as stream:
            metadata = json.load(stream)
    except (OSError, ValueError):
        return None
    usable = (os.path.isfile(params) and metadata.get('converter_version') == CONVERTER_VERSION
              and metadata.get('kind') == release.kind and metadata.get('num_classes') == release.num_classes)
    return metadata if usable else None


def _convert(release, archive, params, progress, log):
    """Convert the release archive into `params` (+ JSON) with the project's converter; check what it holds."""
    try:
        metadata = convert(archive, params, progress=progress, log=log)
    except ConversionError as error:
        reason = ' '.join(str(error).split())
        if reason.startswith(archive + ': '):  # the converter names the archive too
            reason = reason[len(archive) + 2:]
        raise ZooError('%s: cannot convert %s: %s' % (release.name, archive, reason)) from None
    if (metadata['kind'], metadata['num_classes']) != (release.kind, release.num_classes):
        for path in (params, metadata_path(params)):
            os.remove(path)
        raise ZooError('%s: %s holds a %s checkpoint with %d classes, the release is a %s with %d classes'
                       % (release.name, archive, metadata['kind'], metadata['num_classes'], release.kind,
                          release.num_classes))
    write_json(metadata_path(params), dict(metadata, release=release.name, dataset=release.dataset))


def get_params_file(name, root=None, progress=True, log=None):
    """The path of the converted `.params` of a release (its `.json` beside it), made once and cached.

    name: a release name (see RELEASES) or a Release. root: the cache folder (default model_root()).
    The first call downloads the archive (see `download`) and converts it (needs TensorFlow); later
    calls return the cached file without touching the network. log: where messages go (default: the
    module's logger, at INFO).
    """
    release = get_release(name)
    log = log or logger.info
    root = model_root(root)
    params = os.path.join(root, release.name + '.params')
    if _cached_metadata(release, params):
        return params
    archive = os.path.join(root, archive_name(release))
    url = release_url(release)
    if not os.path.isfile(archive):
        log('downloading %s from %s to %s' % (release.name, url, root))
    download(url, archive, release.archive_size, release.sha256, progress=progress)
    with _exclusive(_lock_file(params)):
        if not _cached_metadata(release, params):
            log('converting %s (once; cached in %s)' % (archive, root))
            _convert(release, archive, params, progress, log)
    return params


def get_model(name, output_stride=16, ctx=None, root=None):
    """The network of a release with its official weights: DeepLabV3Plus, or Xception65 for 'xception_65'.

    output_stride: 8 or 16 for DeepLab (the ImageNet classifier always runs at 32, as trained).
    ctx: an mx.Context or a list of them (default CPU). root: the cache folder (default model_root()).
    """
    release = get_release(name)
    params = get_params_file(release, root)
    if release.kind == 'xception65_imagenet':
        net = Xception65(num_classes=release.num_classes)
        net.load_parameters(params, ctx=ctx or mx.cpu())
        return net
    return load_deeplab(params, output_stride=output_stride, ctx=ctx)


def copy_params(name, output, root=None, progress=True, log=None):
    """Write the converted params of a release (and its JSON) to `output`, from the cache; return the metadata."""
    cached = get_params_file(name, root, progress, log)
    for source, target in ((cached, output), (metadata_path(cached), metadata_path(output))):
        if os.path.abspath(source) != os.path.abspath(target):
            with atomic_path(target) as temporary:
                shutil.copyfile(source, temporary)
    with open(metadata_path(cached)) as stream:
        return json.load(stream)
