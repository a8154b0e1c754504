#!/usr/bin/env python
"""Time and peak memory of converters/extract_weights.py on the shared reference checkpoint.

    python bench/converter.py

The reference checkpoint (880 tensors, 350 MB, official names) is written first; each stage runs
in its own process, as a user runs it, and its peak resident memory is that process's.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import REPO, cpu_description, reference_checkpoint  # noqa: E402

SCRIPT = str(REPO / 'converters' / 'extract_weights.py')


def measured(command):
    """(seconds, peak RSS in MB) of a command run in a fresh process."""
    code = ('import resource, subprocess, sys, time; t = time.perf_counter(); '
            'subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); '
            'print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)')
    out = subprocess.run([sys.executable, '-c', code] + command, check=True, capture_output=True, text=True)
    seconds, peak_kb = out.stdout.split()
    return float(seconds), int(peak_kb) / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=1, help='runs per row (median reported; default 1)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='deeplab-bench.') as workdir:
        checkpoint = str(reference_checkpoint(workdir))
        h5 = os.path.join(workdir, 'voc.h5')
        rows = [
            ('both stages (CKPT -> .params)', [sys.executable, SCRIPT, checkpoint, '-q', '-o',
                                                os.path.join(workdir, 'a.params')]),
            ('stage 1 (CKPT -> .h5, TensorFlow)', [sys.executable, SCRIPT, checkpoint, '-q', '--save-h5', h5,
                                                    '--h5-only']),
            ('stage 2 (.h5 -> .params, mxnet only)', [sys.executable, SCRIPT, h5, '-q', '-o',
                                                       os.path.join(workdir, 'b.params')]),
        ]
        print('extract_weights.py on the reference checkpoint (880 tensors, 732 converted), %s, median of %d\n'
              % (cpu_description(), args.runs))
        print('| run | time | peak memory |')
        print('|---|---|---|')
        for name, command in rows:
            runs = [measured(command) for _ in range(args.runs)]
            seconds, peak = statistics.median(r[0] for r in runs), max(r[1] for r in runs)
            print('| %s | %.1f s | %.0f MB |' % (name, seconds, peak))


if __name__ == '__main__':
    main()
