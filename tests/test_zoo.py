"""The model zoo: its release facts, downloads from a local HTTP server, conversion, cache and CLI.

Nothing here reaches the internet: a server on 127.0.0.1 (in a thread of this process) serves a
generated archive packed like an official release, and counts the requests it answers. Conversions
(TensorFlow) run in subprocesses; this process only ever reads the cache.
"""
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mxnet as mx
import numpy as np
import pytest
from helpers import reference_manifest, run_script, write_tf_checkpoint

from converters.mapping import skip_reason
from mylib import DeepLab, zoo
from mylib.data.specs import DATASETS
from mylib.models.spec import FAMILIES

SCRIPT = 'converters/extract_weights.py'
ARCHIVE = 'deeplabv3_pascal_train_aug_2018_01_04.tar.gz'  # model_zoo.md: xception65_coco_voc_trainaug
DEFAULT_FILES = ['xception65_coco_voc_trainaug.json', 'xception65_coco_voc_trainaug.params']
LOGITS_BIASES = np.arange(21, dtype=np.float32)  # the one non-zero tensor, to find in the converted file
SMALL = 'small_release.tar.gz'


class ReleaseServer:
    """Serves `files` ({name: bytes}) over HTTP on 127.0.0.1 from a thread; `requests` lists
    (path, Range header or None) of every request.

    drop: 'first' or 'every' response announces the whole length, sends half of it and closes the
    connection. ignore_range: Range requests get the whole file (200), as from servers without Range.
    """

    def __init__(self, files, drop=None, ignore_range=False):
        self.files, self.drop, self.ignore_range = files, drop, ignore_range
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                server.answer(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name=''):
        return 'http://127.0.0.1:%d/%s' % (self.httpd.server_address[1], name)

    def answer(self, request):
        wanted = request.headers.get('Range')
        self.requests.append((request.path, wanted))
        data = self.files.get(request.path.lstrip('/'))
        if data is None:
            request.send_error(404)
            return
        ranged = wanted is not None and not self.ignore_range
        start = int(re.match(r'bytes=(\d+)-$', wanted).group(1)) if ranged else 0
        request.send_response(206 if ranged else 200)
        if ranged:
            request.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(data) - 1, len(data)))
        request.send_header('Content-Length', str(len(data) - start))
        request.end_headers()
        body = data[start:]
        if self.drop == 'every' or (self.drop == 'first' and len(self.requests) == 1):
            body = body[:len(body) // 2]  # HTTP/1.0: the connection closes when the handler returns
        try:
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up, as a refusing client does
            pass

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """serve(files, **behaviour) -> a running ReleaseServer, stopped after the test."""
    servers = []

    def start(files, **behaviour):
        servers.append(ReleaseServer(files, **behaviour))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


def tar_gz(members, compresslevel=9):
    """The bytes of a .tar.gz holding `members` ({path in archive: bytes})."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', compresslevel=compresslevel) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope='module')
def release_archive(tmp_path_factory):
    """An archive packed like the official release: a full-size checkpoint with the official names, of
    zeros except logits/semantic/biases = 0..20, plus global_step and frozen_inference_graph.pb."""
    folder = tmp_path_factory.mktemp('release') / 'deeplabv3_pascal_train_aug'
    folder.mkdir()
    arrays = {t['name']: np.zeros(t['shape'], np.float32) for t in reference_manifest() if not skip_reason(t['name'])}
    arrays['logits/semantic/biases'] = LOGITS_BIASES
    arrays['global_step'] = np.array(30000, np.int64)
    prefix = write_tf_checkpoint(folder / 'model.ckpt', arrays)
    members = {'deeplabv3_pascal_train_aug/' + os.path.basename(path): open(path, 'rb').read()
               for path in (prefix + '.index', prefix + '.data-00000-of-00001')}
    members['deeplabv3_pascal_train_aug/frozen_inference_graph.pb'] = b'not used by the converter'
    return tar_gz(members, compresslevel=1)


@pytest.fixture(scope='module')
def small_archive():
    """A 1 MiB archive of random bytes with checkpoint file names, for the download tests."""
    rng = np.random.default_rng(0)
    return tar_gz({'release/model.ckpt.index': rng.bytes(300),
                   'release/model.ckpt.data-00000-of-00001': rng.bytes(1 << 20)})


def local_release(server):
    return zoo.RELEASES[zoo.DEFAULT_MODEL]._replace(url=server.url(ARCHIVE))


def files_in(folder):
    """The visible files of a folder, sorted; its hidden files may only be lock files."""
    names = os.listdir(folder)
    assert all(name.endswith('.lock') for name in names if name.startswith('.')), names
    return sorted(name for name in names if not name.startswith('.'))


# --- the release facts ------------------------------------------------------------------------------
PYTORCH_FAMILIES = ('vovnet', 'torch_resnet', 'torch_mobilenet', 'densenet')


@pytest.mark.fast
def test_pytorch_releases_point_to_their_original_hosts(tmp_path):
    releases = {name: release for name, release in zoo.RELEASES.items() if release.family in PYTORCH_FAMILIES}
    assert {name: (release.model_variant, release.dataset, release.num_classes)
            for name, release in releases.items()} == {
        'vovnet39_voc': ('vovnet_39', 'voc', 21), 'vovnet57_voc': ('vovnet_57', 'voc', 21),
        'resnet50_vovnet_voc': ('resnet_50', 'voc', 21), 'resnet101_vovnet_voc': ('resnet_101', 'voc', 21),
        'densenet161_vovnet_voc': ('densenet_161', 'voc', 21), 'densenet201_vovnet_voc': ('densenet_201', 'voc', 21),
        'resnet101_cityscapes_deeplabv3plus': ('resnet_101', 'cityscapes', 19),
        'torchvision_deeplabv3_resnet50': ('resnet_50', 'voc', 21),
        'torchvision_deeplabv3_resnet101': ('resnet_101', 'voc', 21),
        'torchvision_deeplabv3_mobilenet_v3_large': ('mobilenet_v3_large', 'voc', 21)}
    assert zoo.archive_name(releases['vovnet39_voc']) == 'deeplab_vovnet39_pascal_v3_bn_lr7e-3_epoch50.pth'
    assert [(r.miou, r.output_stride) for r in releases['vovnet57_voc'].results] == [(77.4, 16)]
    # a link that opens a page for a person (Baidu pan, with an extraction code) is not fetched: the zoo says how
    with pytest.raises(zoo.ZooError) as caught:
        zoo.get_params_file('resnet101_cityscapes_deeplabv3plus', root=tmp_path)
    assert 'by hand' in str(caught.value) and 'extract_weights.py model_final.pth' in str(caught.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.fast
def test_releases_follow_the_official_model_zoo():
    by_dataset = {}
    for release in zoo.RELEASES.values():
        if release.family not in PYTORCH_FAMILIES:
            by_dataset.setdefault(release.dataset, []).append(release.name)
    # model_zoo.md (newest stored version) + quantize.md's two 8-bit releases; slim's MobileNet-v2 at 224
    assert by_dataset == {
        'voc': ['mobilenetv2_dm05_coco_voc_trainaug', 'mobilenetv2_dm05_coco_voc_trainval',
                'mobilenetv2_coco_voc_trainaug', 'mobilenetv2_coco_voc_trainval', 'xception65_coco_voc_trainaug',
                'xception65_coco_voc_trainval', 'mobilenetv2_dm05_coco_voc_trainaug_8bit',
                'mobilenetv2_coco_voc_trainaug_8bit'],
        'cityscapes': ['mobilenetv2_coco_cityscapes_trainfine', 'mobilenetv3_large_cityscapes_trainfine',
                       'mobilenetv3_small_cityscapes_trainfine', 'EdgeTPU-DeepLab', 'EdgeTPU-DeepLab-slim',
                       'xception65_cityscapes_trainfine', 'xception71_dpc_cityscapes_trainfine',
                       'xception71_dpc_cityscapes_trainval'],
        'ade20k': ['mobilenetv2_ade20k_train', 'xception65_ade20k_train'],
        'imagenet': ['xception_41_imagenet', 'xception_65_imagenet', 'xception_71_imagenet',
                     'resnet_v1_50_beta_imagenet', 'resnet_v1_101_beta_imagenet', 'mobilenet_v2_1.4_224',
                     'mobilenet_v2_1.3_224', 'mobilenet_v2_1.0_224', 'mobilenet_v2_0.75_224', 'mobilenet_v2_0.5_224',
                     'mobilenet_v2_0.35_224', 'mobilenet_edgetpu_224_1.0']}
    assert zoo.DEFAULT_MODEL == 'xception65_coco_voc_trainaug'
    assert zoo.archive_name(zoo.RELEASES[zoo.DEFAULT_MODEL]) == ARCHIVE
    trainaug = zoo.RELEASES['xception65_coco_voc_trainaug']
    assert (trainaug.model_variant, trainaug.depth_multiplier, trainaug.task, trainaug.family) == (
        'xception_65', 1.0, 'segmentation', 'xception')
    assert [(r.miou, r.split, r.scales) for r in trainaug.results] == [
        (82.20, 'val', (1.0,)), (83.58, 'val', (0.5, 0.75, 1.0, 1.25, 1.5, 1.75))]
    assert zoo.format_result(trainaug.results[1]) == '83.58% val (OS8, scales 0.5-1.75, flip)'
    variants = {name: (release.model_variant, release.depth_multiplier) for name, release in zoo.RELEASES.items()}
    assert variants['mobilenetv2_dm05_coco_voc_trainaug_8bit'] == ('mobilenet_v2', 0.5)
    assert variants['mobilenetv3_small_cityscapes_trainfine'] == ('mobilenet_v3_small_seg', 1.0)
    assert variants['xception71_dpc_cityscapes_trainval'] == ('xception_71', 1.0)
    assert variants['EdgeTPU-DeepLab-slim'] == ('mobilenet_edgetpu', 0.75)  # model_zoo.md: --depth_multiplier=0.75
    assert [(r.output_stride, r.miou) for r in zoo.RELEASES['EdgeTPU-DeepLab'].results] == [(32, 70.6), (16, 74.1)]
    assert variants['resnet_v1_101_beta_imagenet'] == ('resnet_v1_101_beta', 1.0)
    assert variants['mobilenet_v2_1.4_224'] == ('mobilenet_v2', 1.4)
    mnv3 = zoo.RELEASES['mobilenetv3_large_cityscapes_trainfine']
    assert mnv3.results == (zoo.Result(32, (1.0,), False, 72.41, 'val'),)
    assert zoo.RELEASES['xception71_dpc_cityscapes_trainval'].results[0].scales == (
        0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # model_zoo.md: [0.75:0.25:2]
    for name in ('mobilenetv2_dm05_coco_voc_trainaug_8bit', 'mobilenetv2_coco_voc_trainaug_8bit'):
        assert any('quantization-aware' in note for note in zoo.RELEASES[name].notes), name
    for release in zoo.RELEASES.values():  # the pages publish rounded sizes only
        assert release.archive_size is None and release.sha256 is None


@pytest.mark.fast
def test_every_release_is_buildable_and_well_formed():
    archives = set()
    for name, release in zoo.RELEASES.items():
        assert release.name == name
        assert release.model_variant in FAMILIES, name  # a network mylib builds
        assert release.family == FAMILIES[release.model_variant]
        assert isinstance(release.depth_multiplier, float) and 0 < release.depth_multiplier <= 1.4, name
        assert release.depth_multiplier == 1.0 or release.family == 'mobilenet', name
        if release.family in PYTORCH_FAMILIES:  # the .pth at the original host, or a page to fetch it by hand
            assert (zoo.archive_name(release).endswith('.pth')
                    or urllib.parse.urlparse(release.url).hostname in zoo.MANUAL_HOSTS), name
        else:
            assert re.match(r'https?://[^/]+/\S+\.(tar\.gz|tgz)$', release.url), name
        archives.add(zoo.archive_name(release))
        if release.dataset == 'imagenet':
            assert release.task == 'classification' and release.results == (), name
            assert release.num_classes in (None,) + zoo.IMAGENET_CLASSES, name
        else:
            assert release.task == 'segmentation' and release.results, name
            assert release.num_classes == DATASETS[release.dataset].num_classes, name
        for result in release.results:
            assert result.output_stride in (8, 16, 32), name
            assert result.split in ('val', 'test', 'coco-val2017') and 0 < result.miou < 100, name
            assert list(result.scales) == sorted(result.scales) and result.flip == (len(result.scales) > 1), name
        assert all(isinstance(note, str) and note for note in release.notes), name
    assert len(archives) == len(zoo.RELEASES)  # one cache file each
    assert not set(zoo.NOT_SUPPORTED) & set(zoo.RELEASES)
    assert all(zoo.ALIASES[old] in zoo.RELEASES for old in zoo.ALIASES)


@pytest.mark.fast
def test_earlier_names_and_unsupported_releases():
    assert zoo.get_release('xception_65') is zoo.RELEASES['xception_65_imagenet']
    with pytest.raises(zoo.ZooError) as error:
        zoo.get_release('xception_65_imagenet_coco')
    assert 'does not support' in str(error.value) and 'task and classes are not published' in str(error.value)


@pytest.mark.fast
def test_release_list_is_grouped_by_dataset():
    lines = zoo.format_release_list(root='/cache/deeplab').splitlines()
    assert lines[0].startswith('official DeepLab releases') and lines[0].endswith('cached in /cache/deeplab:')
    headers = [line for line in lines[1:] if not line.startswith(' ')]
    assert headers == ['PASCAL VOC 2012:', 'Cityscapes:', 'ADE20K:', 'ImageNet (classifiers, to start training from):',
                       'not supported: xception_65_imagenet_coco']
    rows = {line.split()[0]: line for line in lines if line.startswith('  ')}
    assert sorted(rows) == sorted(zoo.RELEASES)
    assert rows['xception65_coco_voc_trainaug'].split()[1:5] == ['xception', 'xception_65', '21', 'classes']
    assert rows['xception65_coco_voc_trainaug'].endswith(
        '82.20% val (OS16, scale 1.0); 83.58% val (OS8, scales 0.5-1.75, flip)  (default)')
    assert rows['mobilenetv2_dm05_coco_voc_trainaug'].split()[1:4] == ['mobilenet', 'mobilenet_v2', 'x0.5']
    assert '72.41% val (OS32, scale 1.0)' in rows['mobilenetv3_large_cityscapes_trainfine']
    assert rows['resnet_v1_50_beta_imagenet'].split()[3:5] == ['?', 'classes']  # not published


@pytest.mark.fast
def test_model_root_is_mxnet_model_folder(monkeypatch, tmp_path):
    monkeypatch.setenv('MXNET_HOME', str(tmp_path))
    assert zoo.model_root() == os.path.join(str(tmp_path), 'models', 'deeplab')
    assert zoo.model_root(tmp_path / 'elsewhere') == str(tmp_path / 'elsewhere')


@pytest.mark.fast
def test_mirror_folder_through_a_file_url(monkeypatch, small_archive, tmp_path):
    (tmp_path / 'mirror').mkdir()
    (tmp_path / 'mirror' / ARCHIVE).write_bytes(small_archive)
    monkeypatch.setenv(zoo.MIRROR_VARIABLE, (tmp_path / 'mirror').as_uri())
    url = zoo.release_url(zoo.RELEASES[zoo.DEFAULT_MODEL])
    assert zoo.download(url, tmp_path / 'cache' / ARCHIVE, progress=False) == str(tmp_path / 'cache' / ARCHIVE)
    assert (tmp_path / 'cache' / ARCHIVE).read_bytes() == small_archive


@pytest.mark.fast
def test_mirror_keeps_the_official_file_name(monkeypatch):
    release = zoo.RELEASES['xception65_cityscapes_trainfine']
    monkeypatch.delenv(zoo.MIRROR_VARIABLE, raising=False)
    assert zoo.release_url(release) == release.url
    monkeypatch.setenv(zoo.MIRROR_VARIABLE, 'file:///data/mirror/')
    assert zoo.release_url(release) == 'file:///data/mirror/deeplabv3_cityscapes_train_2018_02_06.tar.gz'


@pytest.mark.fast
@pytest.mark.parametrize('call', [zoo.get_params_file, zoo.get_model])
def test_unknown_model_names_the_known_ones(call, tmp_path):
    with pytest.raises(zoo.ZooError) as error:
        call('xception65_coco_voc_nope', root=tmp_path / 'models')
    assert "'xception65_coco_voc_nope'" in str(error.value)
    assert all(name in str(error.value) for name in zoo.RELEASES)
    assert os.listdir(tmp_path) == []


# --- download, conversion, cache --------------------------------------------------------------------
def test_download_convert_then_cached_without_network(serve, release_archive, tmp_path):
    server = serve({ARCHIVE: release_archive})
    root = tmp_path / 'models'
    code = ('import sys; from mylib import zoo\n'
            'release = zoo.RELEASES[zoo.DEFAULT_MODEL]._replace(url=sys.argv[1])\n'
            'print(zoo.get_params_file(release, root=sys.argv[2], progress=False))\n')
    result = run_script('-c', code, server.url(ARCHIVE), root)  # converts with TensorFlow: not here
    params = root / 'xception65_coco_voc_trainaug.params'
    assert result.stdout.strip().splitlines()[-1] == str(params)
    assert server.requests == [('/' + ARCHIVE, None)]
    assert files_in(root) == [ARCHIVE] + DEFAULT_FILES
    assert (root / ARCHIVE).read_bytes() == release_archive
    metadata = json.loads((root / DEFAULT_FILES[0]).read_text())
    assert (metadata['kind'], metadata['num_classes'], metadata['model']['model_variant']) == (
        'segmentation', 21, 'xception_65')
    assert (metadata['release'], metadata['dataset']) == ('xception65_coco_voc_trainaug', 'voc')
    assert metadata['source_files'][0]['sha256'] == hashlib.sha256(release_archive).hexdigest()

    server.stop()  # the second call must need neither the network nor the converter
    stamp = params.stat().st_mtime_ns
    assert zoo.get_params_file(local_release(server), root=root) == str(params)
    net = zoo.get_model(local_release(server), output_stride=8, root=root)
    own = zoo.get_model(local_release(server), root=root)  # the release's own output stride
    assert len(server.requests) == 1 and params.stat().st_mtime_ns == stamp
    assert 'tensorflow' not in sys.modules
    assert isinstance(net, DeepLab) and net.output_stride == 8 and net.spec.atrous_rates == (12, 24, 36)
    assert net.spec.model_variant == 'xception_65' and (own.output_stride, own.spec.atrous_rates) == (16, (6, 12, 18))
    assert np.array_equal(net.logits.bias.data().asnumpy(), LOGITS_BIASES)


def converted_metadata(release, **changes):
    """The JSON the converter writes for a checkpoint of `release`, with `changes` to its model fields."""
    model = {'model_variant': release.model_variant, 'num_classes': release.num_classes, 'task': release.task,
             'depth_multiplier': release.depth_multiplier, 'output_stride': 16}
    model.update(changes)
    return {'kind': model['task'], 'num_classes': model['num_classes'], 'model': model,
            'description': 'a %s of %d classes' % (model['model_variant'], model['num_classes']),
            'converter_version': zoo.CONVERTER_VERSION}


@pytest.mark.fast
@pytest.mark.parametrize('change, reason', [
    ({}, None),
    ({'model_variant': 'mobilenet_v2'}, 'model_variant mobilenet_v2 (the release: xception_65)'),
    ({'num_classes': 19}, 'num_classes 19 (the release: 21)'),
    ({'task': 'classification'}, 'task classification (the release: segmentation)'),
    ({'depth_multiplier': 0.5}, 'depth_multiplier 0.5 (the release: 1)'),
    ({'converter_version': 1}, 'converted by converter version 1'),
])
def test_cache_is_used_only_if_it_holds_the_release(tmp_path, change, reason):
    release = zoo.RELEASES[zoo.DEFAULT_MODEL]
    params = tmp_path / 'release.params'
    params.write_bytes(b'params')
    metadata = converted_metadata(release, **{k: v for k, v in change.items() if k != 'converter_version'})
    metadata.update({k: v for k, v in change.items() if k == 'converter_version'})
    (tmp_path / 'release.json').write_text(json.dumps(metadata))
    cached, problem = zoo._cache_state(release, str(params))
    if reason is None:
        assert cached == metadata and problem is None and zoo._cached_metadata(release, str(params)) == metadata
    else:
        assert cached is None and reason in problem and zoo._cached_metadata(release, str(params)) is None


@pytest.mark.fast
def test_conversion_of_another_model_is_refused_and_deleted(monkeypatch, serve, small_archive, tmp_path):
    release = zoo.RELEASES['mobilenetv2_dm05_coco_voc_trainaug']
    server = serve({SMALL: small_archive})

    def fake_convert(archive, output, **options):  # what the converter finds: the full-width MobileNet-v2
        metadata = converted_metadata(release, depth_multiplier=1.0)
        with open(output, 'wb') as stream:
            stream.write(b'params')
        with open(zoo.metadata_path(output), 'w') as stream:
            json.dump(metadata, stream)
        return metadata
    monkeypatch.setattr(zoo, 'convert', fake_convert)
    with pytest.raises(zoo.ZooError) as error:
        zoo.get_params_file(release._replace(url=server.url(SMALL)), root=tmp_path / 'models', progress=False)
    assert str(error.value).startswith('mobilenetv2_dm05_coco_voc_trainaug: ')
    assert 'is not this release: it holds a mobilenet_v2 of 21 classes; it differs in depth_multiplier 1.0 ' \
        '(the release: 0.5)' in str(error.value)
    assert files_in(tmp_path / 'models') == [SMALL]  # the archive is kept, the conversion is not


@pytest.mark.fast
def test_dropped_connection_resumes_with_a_range_request(serve, small_archive, tmp_path):
    server = serve({SMALL: small_archive}, drop='first')
    target = tmp_path / SMALL
    path = zoo.download(server.url(SMALL), target, size=len(small_archive),
                        sha256=hashlib.sha256(small_archive).hexdigest(), progress=False)
    assert path == str(target) and target.read_bytes() == small_archive
    assert server.requests == [('/' + SMALL, None), ('/' + SMALL, 'bytes=%d-' % (len(small_archive) // 2))]
    assert files_in(tmp_path) == [SMALL]


@pytest.mark.fast
def test_retries_stop_when_attempts_make_no_progress(serve, small_archive, tmp_path):
    server = serve({SMALL: small_archive}, drop='every', ignore_range=True)
    with pytest.raises(zoo.ZooError) as error:
        zoo.download(server.url(SMALL), tmp_path / SMALL, progress=False, retries=2, wait=0)
    half = len(small_archive) // 2
    assert 'closed after %d of %d bytes (3 attempts in a row made no progress)' % (half, len(small_archive)) \
        in str(error.value)
    assert len(server.requests) == 4  # the first made progress, then 3 restarts got no further
    assert files_in(tmp_path) == [SMALL + '.part'] and str(tmp_path / (SMALL + '.part')) in str(error.value)


@pytest.mark.fast
def test_a_later_call_continues_the_partial_file(serve, small_archive, tmp_path):
    server = serve({SMALL: small_archive})
    (tmp_path / (SMALL + '.part')).write_bytes(small_archive[:1000])
    zoo.download(server.url(SMALL), tmp_path / SMALL, progress=False)
    assert server.requests == [('/' + SMALL, 'bytes=1000-')]
    assert (tmp_path / SMALL).read_bytes() == small_archive and files_in(tmp_path) == [SMALL]


@pytest.mark.fast
def test_server_that_ignores_range_gets_a_fresh_start(serve, small_archive, tmp_path):
    server = serve({SMALL: small_archive}, ignore_range=True)
    (tmp_path / (SMALL + '.part')).write_bytes(b'x' * 1000)  # appending the answer to it would corrupt it
    zoo.download(server.url(SMALL), tmp_path / SMALL, progress=False)
    assert server.requests == [('/' + SMALL, 'bytes=1000-')]
    assert (tmp_path / SMALL).read_bytes() == small_archive and files_in(tmp_path) == [SMALL]


@pytest.mark.fast
def test_damaged_file_under_the_final_name_is_replaced(serve, small_archive, tmp_path):
    server = serve({SMALL: small_archive})
    (tmp_path / SMALL).write_bytes(small_archive[:-1] + b'!')
    zoo.download(server.url(SMALL), tmp_path / SMALL, sha256=hashlib.sha256(small_archive).hexdigest(),
                 progress=False)
    assert (tmp_path / SMALL).read_bytes() == small_archive and len(server.requests) == 1


@pytest.mark.fast
@pytest.mark.parametrize('damage, culprit', [
    ('sha256', 'its sha256 is'),
    ('size', 'the server announces'),
    ('truncated', 'not a complete .tar.gz archive'),
    ('not gzip', 'not a complete .tar.gz archive'),
    ('no checkpoint', 'no TF checkpoint'),
])
def test_damaged_download_is_refused_and_deleted(serve, small_archive, tmp_path, damage, culprit):
    served = {'truncated': small_archive[:len(small_archive) // 2], 'not gzip': small_archive[10:],
              'no checkpoint': tar_gz({'release/README': b'no checkpoint here'})}.get(damage, small_archive)
    server = serve({SMALL: served})
    expected = {'sha256': {'sha256': '0' * 64}, 'size': {'size': len(small_archive) + 1}}.get(damage, {})
    with pytest.raises(zoo.ZooError) as error:
        zoo.download(server.url(SMALL), tmp_path / SMALL, progress=False, **expected)
    assert culprit in str(error.value) and server.url(SMALL) in str(error.value)
    assert files_in(tmp_path) == []  # neither the final name nor a .part


@pytest.mark.fast
@pytest.mark.parametrize('failure', ['HTTP 404', 'refused'])
def test_failed_download_names_url_and_reason(serve, tmp_path, failure):
    server = serve({})
    if failure == 'refused':
        server.stop()  # nothing listens on its port any more
    with pytest.raises(zoo.ZooError) as error:
        zoo.download(server.url(SMALL), tmp_path / SMALL, progress=False, retries=1, wait=0)
    message = str(error.value)
    assert message.startswith(server.url(SMALL) + ': download failed') and failure in message
    assert files_in(tmp_path) == []


# --- the converter's --model and --list-models ------------------------------------------------------
def zoo_env(tmp_path, server):
    return dict(os.environ, MXNET_HOME=str(tmp_path / 'home'), DEEPLAB_GLUON_MIRROR=server.url())


def test_cli_model_downloads_converts_and_caches(serve, release_archive, tmp_path):
    server = serve({ARCHIVE: release_archive})
    out = tmp_path / 'out'
    out.mkdir()
    result = run_script(SCRIPT, '--model', 'xception65_coco_voc_trainaug', cwd=out, env=zoo_env(tmp_path, server))
    assert files_in(out) == DEFAULT_FILES and server.requests == [('/' + ARCHIVE, None)]
    assert files_in(tmp_path / 'home' / 'models' / 'deeplab') == [ARCHIVE] + DEFAULT_FILES
    assert np.array_equal(mx.nd.load(str(out / DEFAULT_FILES[1]))['logits.bias'].asnumpy(), LOGITS_BIASES)
    assert 'xception_65' in result.stdout and '21 classes' in result.stdout

    again = run_script(SCRIPT, '--model', 'xception65_coco_voc_trainaug', '--output', out / 'again.params',
                       cwd=out, env=zoo_env(tmp_path, server))
    assert len(server.requests) == 1, again.stdout  # from the cache
    assert (out / 'again.params').read_bytes() == (out / DEFAULT_FILES[1]).read_bytes()
    assert json.loads((out / 'again.json').read_text())['num_classes'] == 21


def test_cli_model_without_tensorflow_says_so(serve, release_archive, tmp_path):
    server = serve({ARCHIVE: release_archive})
    blocked = ("import runpy, sys; sys.modules['tensorflow'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = run_script('-c', blocked, SCRIPT, '--model', zoo.DEFAULT_MODEL, cwd=tmp_path,
                        env=zoo_env(tmp_path, server), check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith('extract_weights.py: error: xception65_coco_voc_trainaug: cannot convert')
    cache = tmp_path / 'home' / 'models' / 'deeplab'
    assert str(cache / ARCHIVE) in lines[0] and 'needs TensorFlow' in lines[0]
    assert files_in(cache) == [ARCHIVE]  # downloaded once, kept for the next attempt
    assert files_in(tmp_path) == ['home']


def test_cli_list_models_shows_the_official_results():
    result = run_script(SCRIPT, '--list-models')
    lines = result.stdout.splitlines()
    for name in zoo.RELEASES:
        assert sum(line.split()[0] == name for line in lines[1:]) == 1, name
    # model_zoo.md: xception65_coco_voc_trainaug 82.20% (OS16) and 83.58% (OS8, multi-scale + flip) on val
    assert '82.20% val (OS16, scale 1.0); 83.58% val (OS8, scales 0.5-1.75, flip)' in result.stdout
    assert '72.41% val (OS32, scale 1.0)' in result.stdout  # model_zoo.md: mobilenetv3_large_cityscapes_trainfine


@pytest.mark.parametrize('args, status, culprit', [
    (['--model', 'nope'], 1, "unknown model 'nope'; the known models are: mobilenetv2_dm05_coco_voc_trainaug, "),
    (['--model', 'xception_65_imagenet_coco'], 1,
     'xception_65_imagenet_coco is an official release that this project does not support'),
    (['x.ckpt', '--model', 'xception_65'], 2, 'not allowed with argument'),
    (['--model', 'xception_65', '--save-h5', 'x.h5'], 2, '--save-h5 and --h5-only take a CKPT'),
    ([], 2, 'one of the arguments CKPT --model --list-models is required'),
])
def test_cli_model_errors(tmp_path, args, status, culprit):
    result = run_script(SCRIPT, *args, cwd=tmp_path, env=dict(os.environ, MXNET_HOME=str(tmp_path)),
                        check=False)
    assert result.returncode == status and culprit in result.stderr.strip().splitlines()[-1], result.stderr
    assert os.listdir(tmp_path) == []


if __name__ == '__main__':
    sys.exit(pytest.main([__file__]))
