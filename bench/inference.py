#!/usr/bin/env python
"""CPU latency of DeepLab v3+ (Xception-65) on one 513 x 513 image, printed as a table.

    python bench/inference.py [--threads 2] [--runs 7] [--params voc21.params]

Hybridized with static memory, after warm-up, median of --runs. "fused" is the oneDNN graph that
`mylib.inference.LogitsRunner` builds (convolution + batch norm + ReLU + sum fused). The official TF
graph's times are those measured for the project on a 2-core machine (issue "Exact DeepLab v3+").
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import machine, median_seconds, reference_params, set_threads  # noqa: E402

OFFICIAL_TF_SECONDS = {16: 0.67, 8: 2.2}  # official TF graph, 1 x 513 x 513, this 2-core machine


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='OpenMP threads (default: all cores)')
    parser.add_argument('--runs', type=int, default=7, help='timed runs per row (median reported)')
    parser.add_argument('--params', help='converted weights (default: convert the shared reference checkpoint)')
    parser.add_argument('--output-strides', default='16,8', help='comma-separated, default 16,8')
    args = parser.parse_args()
    set_threads(args.threads)
    import mxnet as mx
    import numpy as np

    from mylib import DeepLabV3Plus
    from mylib.inference import LogitsRunner, resize

    params = reference_params(args.params)
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (1, 3, 513, 513)).astype(np.float32))
    print('CPU latency, 1 x 3 x 513 x 513, %s, OMP_NUM_THREADS=%d, median of %d runs after warm-up\n'
          % (machine(), args.threads, args.runs))
    print('| output stride | MXNet hybridized | MXNet fused (oneDNN) | official TF graph | fused / TF |')
    print('|---|---|---|---|---|')
    for output_stride in map(int, args.output_strides.split(',')):
        times = {}
        for fuse in (False, True):
            net = DeepLabV3Plus(num_classes=21, output_stride=output_stride)
            net.load_parameters(params)
            runner = LogitsRunner(net, fuse=fuse)
            times[fuse] = median_seconds(lambda: resize(runner(x), (513, 513)).wait_to_read(),  # noqa: B023
                                         args.runs)
        official = OFFICIAL_TF_SECONDS.get(output_stride)
        print('| %d | %.3f s | %.3f s | %s | %s |' % (
            output_stride, times[False], times[True], '%.2f s' % official if official else '-',
            '%.2f' % (times[True] / official) if official else '-'))


if __name__ == '__main__':
    main()
