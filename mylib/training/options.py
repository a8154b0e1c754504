"""The command line of train.py and train_multi_gpu.py: one parser, defaults from the official recipe."""
import argparse

from ..cli import (
    ArgumentParser,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    size_type,
)
from ..data.specs import DATASETS
from ..models.spec import RELEASE_FLAGS

# Official DeepLab v3+ PASCAL recipe (research/deeplab train.py flags and g3doc/pascal.md):
OFFICIAL = {
    'lr': 0.007,          # base_learning_rate (VOC train_aug)
    'power': 0.9,         # learning_power, 'poly' policy
    'momentum': 0.9,      # momentum
    'wd': 4e-5,           # weight_decay
    'batch_size': 16,     # train_batch_size
    'iterations': 30000,  # training_number_of_steps
    'min_scale': 0.5,     # min_scale_factor
    'max_scale': 2.0,     # max_scale_factor
    'scale_step': 0.25,   # scale_factor_step_size
    'dropout_keep': 0.9,  # model.py concat_projection_dropout keep_prob
}
# options that a resumed run must keep (the rest, like devices or workers, may change); --resume takes the
# saved value of every option not written on its command line, except these (of the session, not the run)
NOT_RESUMED = ('gpus', 'quiet', 'resume', 'run_dir', 'amp')  # amp: a property of the devices
FIXED_ON_RESUME = ('dataset', 'train_split', 'val_split', 'num_classes', 'crop_size', 'init', 'backbone',
                   'output_stride', 'freeze_bn', 'bn_momentum', 'lr', 'power', 'momentum', 'wd', 'batch_size',
                   'iterations', 'seed', 'kvstore', 'optimizer', 'min_scale', 'max_scale', 'scale_step', 'no_flip',
                   'dropout_keep')
# a run saved before an option existed resumes with the value that run had
BEFORE_OPTION = {'optimizer': 'sgd', 'backbone': 'xception_65'}


def build_parser(description, multi_gpu, prog='train.py'):
    """The argparse parser; `multi_gpu` selects train_multi_gpu.py's --gpus (several devices, SyncBatchNorm)."""
    parser = ArgumentParser(prog=prog, description=description)
    data = parser.add_argument_group('data')
    data.add_argument('--dataset', default='voc', choices=tuple(DATASETS) + ('folder',),
                      help='voc: VOC 2012 + SBD (train_aug, 10,582 images, no val image); folder: your own data '
                           'in the VOC layout with --num-classes (default voc)')
    data.add_argument('--data-root', metavar='DIR', help="dataset folder (default: gluoncv's, ~/.mxnet/datasets/...)")
    data.add_argument('--train-split', help='default: train_aug for voc, train otherwise')
    data.add_argument('--val-split', default='val', help='validation split (default val); "none" to skip')
    data.add_argument('--num-classes', type=positive_int,
                      help='classes of a --dataset folder (labels 0..N-1, 255 ignored)')
    data.add_argument('--crop-size', type=size_type,
                      help="HxW (default: the dataset's official training crop, 513x513 for VOC, ADE20K and your "
                           'own data, 769x769 for Cityscapes)')
    data.add_argument('--num-workers', type=nonnegative_int, default=4, help='data loading processes (default 4)')
    augment = parser.add_argument_group('augmentation (defaults: the official flags)')
    augment.add_argument('--min-scale', type=positive_float, default=OFFICIAL['min_scale'],
                         help='smallest random scale (official min_scale_factor, default 0.5)')
    augment.add_argument('--max-scale', type=positive_float, default=OFFICIAL['max_scale'],
                         help='largest random scale (official max_scale_factor, default 2.0)')
    augment.add_argument('--scale-step', type=nonnegative_float, default=OFFICIAL['scale_step'],
                         help='step between the scales (official scale_factor_step_size, default 0.25; 0: any)')
    augment.add_argument('--no-flip', action='store_true', help='no random left-right flip')
    model = parser.add_argument_group('model')
    model.add_argument('--init', metavar='FILE.params',
                       help='start from converted weights: a DeepLab checkpoint of any family, also a converted '
                            'PyTorch DeepLab (fine-tune its network; '
                            'logits kept if the classes match) or an ImageNet backbone (xception_41/65/71, '
                            'resnet_v1_50/101_beta, mobilenet_v2), under the official release head of its family')
    model.add_argument('--backbone', choices=tuple(RELEASE_FLAGS),
                       help='the network to train without --init (official release head of that backbone; default '
                            "xception_65); with --init it must be the checkpoint's")
    model.add_argument('--os', dest='output_stride', type=int, choices=(8, 16, 32),
                       help="training output stride (default: the network's, 16; 32 for MobileNet-v3)")
    model.add_argument('--freeze-bn', action='store_true',
                       help='keep batch-norm statistics fixed (for small batches; gamma/beta still train)')
    model.add_argument('--bn-momentum', type=fraction,
                       help='weight of the old running statistics per step, in every batch norm (default: the '
                            'official decays, 0.9997 in the head and Xception, 0.95 in ResNet, 0.997 in MobileNet; '
                            'lower it, e.g. 0.9, for short runs on small data)')
    model.add_argument('--accurate-bn', action='store_true',
                       help="sum each batch norm's batch variance accurately (MXNet's CPU kernel sums it "
                            'sequentially in float32, which puts step 1 about 7 %% off the official one in the '
                            'backbone; with this, about 1 %%); one device, about 2.5x slower on CPU')
    model.add_argument('--dropout-keep', type=probability, default=OFFICIAL['dropout_keep'],
                       help='keep probability of the ASPP dropout (official 0.9; 1.0 turns it off)')
    optim = parser.add_argument_group('optimization (defaults: the official VOC recipe)')
    optim.add_argument('--optimizer', choices=('deeplab_momentum', 'sgd'), default='deeplab_momentum',
                       help="deeplab_momentum: the official update (TF's momentum, the learning rate applied to "
                            "the whole accumulator, biases' gradients x2); sgd: MXNet's (default deeplab_momentum)")
    optim.add_argument('--lr', type=positive_float, default=OFFICIAL['lr'], help='base learning rate (default 0.007)')
    optim.add_argument('--power', type=positive_float, default=OFFICIAL['power'], help='poly power (default 0.9)')
    optim.add_argument('--momentum', type=fraction, default=OFFICIAL['momentum'], help='SGD momentum (default 0.9)')
    optim.add_argument('--wd', type=nonnegative_float, default=OFFICIAL['wd'],
                       help='weight decay on convolution weights; none on BN, biases, depthwise (default 4e-5)')
    optim.add_argument('--batch-size', type=positive_int, default=OFFICIAL['batch_size'],
                       help='images per iteration over all devices (per worker with dist_sync) (default 16)')
    optim.add_argument('--iterations', type=positive_int, default=OFFICIAL['iterations'], help='default 30000')
    optim.add_argument('--amp', action='store_true', help="mixed precision on GPUs (MXNet's AMP, float16)")
    run = parser.add_argument_group('run')
    run.add_argument('--run-dir', required=True, metavar='DIR',
                     help='where checkpoints, metrics.jsonl, curves.png, config.json and best.params go')
    run.add_argument('--resume', action='store_true',
                     help='continue the run in --run-dir from its last checkpoint, with its saved settings '
                          '(options written here may change devices, workers, logging; not the recipe)')
    if multi_gpu:
        run.add_argument('--gpus', required=True,
                         help='devices sharing each batch, with SyncBatchNorm: 0,1,2,3 (or cpu:N to try it on CPU)')
    else:
        run.add_argument('--gpus', default=None, help='one device: a GPU number, or cpu (default: GPU 0 if any)')
    run.add_argument('--kvstore', default='device', choices=('device', 'local', 'dist_sync', 'dist_device_sync'),
                     help='gradient aggregation; dist_sync across machines (see README) (default device)')
    run.add_argument('--seed', type=nonnegative_int, default=0,
                     help='data order, augmentation and dropout (default 0)')
    run.add_argument('--checkpoint-every', type=positive_int, default=500, metavar='N',
                     help='iterations (default 500)')
    run.add_argument('--val-every', type=positive_int, metavar='N',
                     help='validate every N iterations (default: every epoch)')
    run.add_argument('--val-os', type=int, choices=(8, 16), help='output stride of validation (default: training)')
    run.add_argument('--val-limit', type=positive_int, metavar='N', help='validate on the first N images only')
    run.add_argument('--log-every', type=positive_int, default=10, metavar='N',
                     help='metrics.jsonl every N iterations')
    run.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def given_options(parser, argv=None):
    """The destinations of the options written in `argv` (default: sys.argv), not left to their defaults.

    `parser` is used up: a fresh one from build_parser, whose defaults are suppressed here.
    """
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))
