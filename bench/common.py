"""Shared by the benchmark scripts: thread settings, timing, and the reference weights."""
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get('DEEPLAB_REFERENCE', REPO.parent / 'shared' / 'reference'))


def set_threads(threads):
    """OpenMP threads for MXNet (read when mxnet is imported: call this first)."""
    os.environ['OMP_NUM_THREADS'] = str(threads)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def median_seconds(function, runs, warmup=2):
    """Median wall time of `function()` over `runs` calls, after `warmup` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_checkpoint(workdir):
    """The TF checkpoint of the shared reference recipe, written into `workdir`."""
    prefix = Path(workdir) / 'model.ckpt'
    subprocess.run([sys.executable, str(REFERENCE / 'make_checkpoint.py'), str(REFERENCE / 'manifest_voc21.json'),
                    str(REFERENCE / 'statistics_voc21.npz'), str(prefix)], check=True, capture_output=True)
    return prefix


def reference_params(path=None):
    """Converted reference weights: `path` if given, else made in a temporary folder (about 20 s)."""
    if path:
        return str(path)
    workdir = tempfile.mkdtemp(prefix='deeplab-bench.')
    output = Path(workdir) / 'voc21.params'
    subprocess.run([sys.executable, str(REPO / 'converters' / 'extract_weights.py'),
                    str(reference_checkpoint(workdir)), '--output', str(output), '--quiet'],
                   check=True, capture_output=True)
    return str(output)


def cpu_description():
    """'AMD EPYC 7B13, 2 cores, AVX2 (no AVX-512), Python 3.11.x': the CPU kind that a time belongs to."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as stream:
            for line in stream:
                if line.startswith('model name') and ':' in line:
                    model = line.split(':', 1)[1].strip()
                elif line.startswith('flags') and ':' in line:
                    flags = set(line.split(':', 1)[1].split())
    except OSError:
        pass
    isa = ('AVX-512' if 'avx512f' in flags else 'AVX2 (no AVX-512)' if 'avx2' in flags else
           'no AVX2' if flags else 'flags unknown')
    return '%s, %d cores, %s, Python %s' % (model, os.cpu_count(), isa, platform.python_version())
