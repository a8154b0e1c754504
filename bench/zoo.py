#!/usr/bin/env python
"""CPU latency of every family of the official model zoo on its reference configuration, as a table.

    python bench/zoo.py [--threads 2] [--runs 5] [--families x65,r101,x71dpc,mnv2,mnv3l,edgetpu,edgetpu_slim]
                        [--pytorch vovnet39,coin_r101,tv_r50,vovnet57,densenet161,tv_mnv3l]

Each row is one image at the family's reference size (../shared/reference/zoo, `config.json`), run as
the inference scripts run it (`mylib.inference.LogitsRunner`: hybridized, oneDNN-fused, oneDNN capped
as predict.py caps it) plus the final upsampling, median of --runs after warm-up. The weights are the
official initializers' (the time does not depend on the values). The official TF graph's times are the
issue's figures, measured on a 2-core AVX2 EPYC (TF 2.15, default kernels): compare them on an AVX2
machine only. The ratio to our Xception-65 on the same machine carries across machines.

A second table times the PyTorch DeepLabs (../shared/reference/pytorch: the network its converter detects
from each reference's state dict) on one 513x513 image, beside the original PyTorch code's time (the
issue's figures: torch 2.14, 2 threads, median of 5, on the same kind of 2-core AVX2 EPYC).
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPOSITORY = Path(__file__).resolve().parents[1]
from bench.common import REFERENCE, cpu_description, median_seconds, set_threads  # noqa: E402

# name: (reference folder or None for Xception-65's, official TF seconds on a 2-core AVX2 EPYC (low, high))
FAMILIES = {
    'x65': (None, (1.4, 1.4)),             # Xception-65 v3+ OS16 513x513
    'r101': ('r101_v3_os16', (1.43, 1.43)),  # ResNet-101-beta DeepLab v3 OS16 513x513
    'x71dpc': ('x71_dpc_os16', (1.83, 1.83)),  # Xception-71 + DPC OS16 385x769
    'mnv2': ('mnv2_voc_os16', (0.3, 0.5)),   # MobileNet-v2 VOC OS16 513x513 (measured on a busy machine)
    'mnv3l': ('mnv3l_city', (0.73, 0.91)),   # MobileNet-v3-large Cityscapes OS32 769x769 (busy machine)
    # EdgeTPU-DeepLab (tests/data/official): not in the figures; the official graph measured by this
    # project the same way (TF 2.15 default kernels, 2 threads, median of 9 after 3 warm-ups, same kind of EPYC)
    'edgetpu': ('edgetpu_city_os16', (0.164, 0.164)),            # x1.0, OS16 513x513
    'edgetpu_slim': ('edgetpu_slim_city_os32', (0.212, 0.212)),  # x0.75, 128 ASPP filters, OS32 769x769
}
GOAL = 0.7  # issue "The whole official DeepLab model zoo": at most 0.7x the official graph
# name: (reference config of ../shared/reference/pytorch, PyTorch seconds at 513x513 on a 2-core AVX2 EPYC)
PYTORCH = {  # None: no PyTorch figure measured on that machine (ours and the ratio to our X65 only)
    'vovnet39': ('vovnet39_voc', 1.25),         # VoVNet-39 DeepLabV3 OS16
    'coin_r101': ('coin_r101_city', 2.09),      # DeepLab-v3-plus-cityscapes ResNet-101 OS16
    'tv_r50': ('tv_deeplabv3_resnet50', 3.11),  # torchvision deeplabv3_resnet50 OS8
    'vovnet57': ('vovnet57_voc', None),
    'densenet161': ('vov_densenet161_voc', None),
    'tv_mnv3l': ('tv_deeplabv3_mobilenet_v3_large', None),
}
PYTORCH_GOAL = 0.8  # issue "PyTorch DeepLab checkpoints into Gluon": at most 0.8x PyTorch's time


def pytorch_spec(config):
    """The ModelSpec that the converter detects from a PyTorch reference's state dict (its manifest)."""
    from converters.torch_mapping import detect_model, skip_reason
    more = REPOSITORY / 'tests' / 'data' / 'pytorch' / config / 'manifest.json'  # the suite's further references
    with open(more if more.exists() else REFERENCE / 'pytorch' / ('manifest_%s.json' % config)) as stream:
        tensors = json.load(stream)['tensors']
    return detect_model({entry['name']: tuple(entry['shape']) for entry in tensors
                         if not skip_reason(entry['name'])})[0]


def reference_spec(folder):
    """(ModelSpec, crop) of a zoo reference configuration (Xception-65 v3+ OS16 513x513 for None)."""
    from mylib.models.spec import ModelSpec, xception65_spec
    if folder is None:
        return xception65_spec(21), (513, 513)
    ours = REPOSITORY / 'tests' / 'data' / 'official' / folder / 'config.json'  # the suite's own zoo references
    with open(ours if ours.exists() else REFERENCE / 'zoo' / folder / 'config.json') as stream:
        config = json.load(stream)
    return ModelSpec.from_model_options(config['model_options']), tuple(config['crop_size'])


def family_seconds(spec, crop, runs):
    """Median seconds of one image of `crop` through the network of `spec`, as the inference scripts run it."""
    import mxnet as mx
    import numpy as np

    from mylib.inference import LogitsRunner, resize
    from mylib.models import build_network
    net = build_network(spec)
    mx.random.seed(0)
    net.initialize(mx.init.Xavier())
    runner = LogitsRunner(net)
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (1, 3) + crop).astype(np.float32))
    return median_seconds(lambda: resize(runner(x), crop, spec.align_corners).wait_to_read(), runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='OpenMP threads (default: all cores)')
    parser.add_argument('--runs', type=int, default=5, help='timed runs per row (median reported)')
    parser.add_argument('--families', default=','.join(FAMILIES), help='comma-separated, default all: %(default)s')
    parser.add_argument('--pytorch', default=','.join(PYTORCH),
                        help='PyTorch DeepLabs, comma-separated ("" for none), default all: %(default)s')
    args = parser.parse_args()
    set_threads(args.threads)
    from mylib.inference import cap_onednn_isa
    isa = cap_onednn_isa()
    print('CPU latency of one image, %s, OMP_NUM_THREADS=%d, oneDNN ISA cap %s, median of %d runs after warm-up'
          % (cpu_description(), args.threads, isa, args.runs))
    print('official TF figures: 2-core AVX2 EPYC (compare on an AVX2 machine; otherwise use the last column)\n')
    print('| family | configuration | input | ours (fused) | official TF graph | ours / TF | ours / our X65 |')
    print('|---|---|---|---|---|---|---|')
    x65 = None
    for name in ['x65'] + [family for family in args.families.split(',') if family != 'x65']:
        folder, (low, high) = FAMILIES[name]
        spec, crop = reference_spec(folder)
        seconds = family_seconds(spec, crop, args.runs)
        x65 = seconds if name == 'x65' else x65
        official = '%.2f s' % low if low == high else '%.2f-%.2f s' % (low, high)
        ratio = '%.2f' % (seconds / low) if low == high else '%.2f-%.2f' % (seconds / high, seconds / low)
        print('| %s | %s | %dx%d | %.3f s | %s | %s | %.2f |' % (
            name, spec.describe(), crop[0], crop[1], seconds, official, ratio, seconds / x65))
    print('\ngoal: at most %.1fx the official graph' % GOAL)
    names = [name for name in args.pytorch.split(',') if name]
    if names:
        print('\nPyTorch DeepLabs, 513x513 (PyTorch figures: torch 2.14, 2 threads, 2-core AVX2 EPYC)\n')
        print('| network | configuration | ours (fused) | original in PyTorch | ours / PyTorch | ours / our X65 |')
        print('|---|---|---|---|---|---|')
        for name in names:
            config, torch_seconds = PYTORCH[name]
            spec = pytorch_spec(config)
            seconds = family_seconds(spec, (513, 513), args.runs)
            if torch_seconds is None:
                print('| %s | %s | %.3f s | | | %.2f |' % (name, spec.describe(), seconds, seconds / x65))
                continue
            print('| %s | %s | %.3f s | %.2f s | %.2f | %.2f |' % (name, spec.describe(), seconds, torch_seconds,
                                                                 seconds / torch_seconds, seconds / x65))
        print('\ngoal: at most %.1fx PyTorch' % PYTORCH_GOAL)


if __name__ == '__main__':
    main()
