#!/usr/bin/env python
"""CPU latency of DeepLab v3+ (Xception-65) on one 513 x 513 image, printed as a table.

    python bench/inference.py [--threads 2] [--runs 7] [--params voc21.params]

Hybridized with static memory, after warm-up, median of --runs. "fused" is the oneDNN graph that
`mylib.inference.LogitsRunner` builds (convolution + batch norm + ReLU + sum fused). "onnxruntime" is
the ONNX file of export.py (`mylib.export.export_onnx`) on onnxruntime's CPU provider, with
--threads intra-op threads. The official TF graph's times are those measured for the project on a
2-core machine (issue "Exact DeepLab v3+"). --onednn-isa caps oneDNN's kernels as evaluate.py and
predict.py do (`mylib.inference.cap_onednn_isa`); ALL lets oneDNN choose.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import cpu_description, median_seconds, reference_params, set_threads  # noqa: E402

OFFICIAL_TF_SECONDS = {16: 0.67, 8: 2.2}  # official TF graph, 1 x 513 x 513, this 2-core machine


def onnxruntime_seconds(net, x, threads, runs):
    """Median latency of `net` exported to ONNX for `x`'s size, on onnxruntime's CPU; None without it."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from mylib.export import INPUT_NAME, export_onnx, onnxruntime_session
    with tempfile.TemporaryDirectory(prefix='deeplab-bench.') as workdir:
        path, _ = export_onnx(net, os.path.join(workdir, 'model.onnx'), x.shape[2:])
        session = onnxruntime_session(path, threads)
    feed = {INPUT_NAME: x.asnumpy()}
    return median_seconds(lambda: session.run(None, feed), runs)


def seconds_and_ratio(seconds, official):
    """('0.626 s', '0.93'): a time and its ratio to the official TF time, '-' where unknown."""
    return ('%.3f s' % seconds if seconds else '-',
            '%.2f' % (seconds / official) if seconds and official else '-')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='OpenMP threads (default: all cores)')
    parser.add_argument('--runs', type=int, default=7, help='timed runs per row (median reported)')
    parser.add_argument('--params', help='converted weights (default: convert the shared reference checkpoint)')
    parser.add_argument('--output-strides', default='16,8', help='comma-separated, default 16,8')
    parser.add_argument('--onednn-isa', default=None,
                        help="DNNL_MAX_CPU_ISA for MXNet's oneDNN (default: the inference scripts' cap, "
                             'AVX512_MIC, unless set in the environment; ALL: no cap)')
    args = parser.parse_args()
    set_threads(args.threads)
    import mxnet as mx
    import numpy as np

    from mylib.inference import LogitsRunner, cap_onednn_isa, resize
    from mylib.weights import load_deeplab

    if args.onednn_isa:
        os.environ['DNNL_MAX_CPU_ISA'] = args.onednn_isa
    isa = cap_onednn_isa()

    params = reference_params(args.params)
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (1, 3, 513, 513)).astype(np.float32))
    print('CPU latency, 1 x 3 x 513 x 513, %s, OMP_NUM_THREADS=%d, oneDNN ISA cap %s, median of %d runs '
          'after warm-up\n' % (cpu_description(), args.threads, isa, args.runs))
    print('| output stride | MXNet hybridized | MXNet fused (oneDNN) | onnxruntime (CPU) | official TF graph '
          '| fused / TF | onnxruntime / TF |')
    print('|---|---|---|---|---|---|---|')
    for output_stride in map(int, args.output_strides.split(',')):
        times = {}
        for fuse in (False, True):
            runner = LogitsRunner(load_deeplab(params, output_stride), fuse=fuse)
            times[fuse] = median_seconds(lambda: resize(runner(x), (513, 513)).wait_to_read(),  # noqa: B023
                                         args.runs)
        official = OFFICIAL_TF_SECONDS.get(output_stride)
        fused, fused_ratio = seconds_and_ratio(times[True], official)
        ort, ort_ratio = seconds_and_ratio(
            onnxruntime_seconds(load_deeplab(params, output_stride), x, args.threads, args.runs), official)
        print('| %d | %.3f s | %s | %s | %s | %s | %s |' % (
            output_stride, times[False], fused, ort, '%.2f s' % official if official else '-', fused_ratio,
            ort_ratio))


if __name__ == '__main__':
    main()
