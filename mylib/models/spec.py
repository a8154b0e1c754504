"""What a network is, as data: `ModelSpec`, in the official DeepLab flag names.

A reader can put a spec beside the official `common.ModelOptions` of a release: the fields are its
fields (minus the ones that only concern training or input pipelines), with the same meaning, so
`ModelSpec.from_model_options(options)` reads one and `spec.to_json()` writes what the converter
stores beside the parameters. `mylib.models.build_network(spec)` builds the network.

Pure Python: no MXNet, so the converter's mapping tables and the scripts' option parsing can read it.
"""
import dataclasses
import json
from typing import Optional, Tuple

from ..errors import WeightsError

SEGMENTATION = 'segmentation'
CLASSIFICATION = 'classification'

# The backbones, by official `model_variant` name (feature_extractor.networks_map), and their family.
FAMILIES = {
    'xception_41': 'xception', 'xception_65': 'xception', 'xception_71': 'xception',
    'resnet_v1_50_beta': 'resnet', 'resnet_v1_101_beta': 'resnet',
    'mobilenet_v2': 'mobilenet', 'mobilenet_v3_large_seg': 'mobilenet', 'mobilenet_v3_small_seg': 'mobilenet',
    'mobilenet_edgetpu': 'mobilenet',
    # PyTorch DeepLabs (converted from .pth files): VoVNet-DeepLabV3's VoVNet, and torchvision's ResNet (its
    # v1.5 bottleneck, 7x7 stem), which VoVNet-DeepLabV3, DeepLab-v3-plus-cityscapes and torchvision share
    'vovnet_39': 'vovnet', 'vovnet_57': 'vovnet', 'resnet_50': 'torch_resnet', 'resnet_101': 'torch_resnet',
    'mobilenet_v3_large': 'torch_mobilenet',  # torchvision's, not the official mobilenet_v3_large_seg
    'densenet_161': 'densenet', 'densenet_201': 'densenet',  # VoVNet-DeepLabV3's
}
# The families whose originals take RGB / 255 minus the ImageNet mean, over the ImageNet std (torchvision's
# Normalize); the official TF families take RGB scaled to [-1, 1]. `layers.normalize_pixels` folds either in.
IMAGENET_NORMALIZED = ('vovnet', 'torch_resnet', 'torch_mobilenet', 'densenet')

# The official dense prediction cell of the Xception-71 Cityscapes releases
# (core/dense_prediction_cell_branch5_top1_cityscapes.json): five separable 3x3 branches, each on the
# backbone (-1) or on an earlier branch, with (height, width) rates at output stride 16.
DPC_BRANCH5_TOP1_CITYSCAPES = (
    {'op': 'conv', 'kernel': 3, 'rate': (1, 6), 'input': -1},
    {'op': 'conv', 'kernel': 3, 'rate': (18, 15), 'input': 0},
    {'op': 'conv', 'kernel': 3, 'rate': (6, 3), 'input': 1},
    {'op': 'conv', 'kernel': 3, 'rate': (1, 1), 'input': 0},
    {'op': 'conv', 'kernel': 3, 'rate': (6, 21), 'input': 0},
)


# What a checkpoint does not record, from the official release flags of each backbone (model_zoo.md,
# local_test*.sh): the output stride they were evaluated at, ResNet's multi-grid, the decoder's stride, and
# the MobileNet-v3 image-pooling gate. `output_stride` can be changed when the network is loaded.
_XCEPTION_FLAGS = {'output_stride': 16, 'decoder_output_stride': (4,)}
_MOBILENET_V3_FLAGS = {'output_stride': 32, 'decoder_output_stride_sum_merge': (8,), 'decoder_output_stride': (8,),
                       'image_pooling_crop_size': (769, 769), 'image_pooling_stride': (4, 5),
                       'image_se_uses_qsigmoid': True}
RELEASE_FLAGS = {
    'xception_41': _XCEPTION_FLAGS, 'xception_65': _XCEPTION_FLAGS, 'xception_71': _XCEPTION_FLAGS,
    'resnet_v1_50_beta': dict(_XCEPTION_FLAGS, multi_grid=(1, 2, 4)),
    'resnet_v1_101_beta': dict(_XCEPTION_FLAGS, multi_grid=(1, 2, 4)),
    'mobilenet_v2': _XCEPTION_FLAGS,
    'mobilenet_v3_large_seg': _MOBILENET_V3_FLAGS, 'mobilenet_v3_small_seg': _MOBILENET_V3_FLAGS,
    # model_zoo.md, EdgeTPU-DeepLab: "the same train/eval flags used for MobileNet-v2 DeepLab model" with
    # --decoder_output_stride='' (none); evaluated at OS32 and OS16
    'mobilenet_edgetpu': {'output_stride': 16},
}


def _tuple(value):
    return None if value is None else tuple(value)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything a release's network needs, in `common.ModelOptions` names (official defaults).

    task: 'segmentation' (DeepLab: RGB 0-255 NCHW in, logits at the input size out) or
    'classification' (the ImageNet checkpoints: N x num_classes logits).
    atrous_rates: the ASPP rates at `output_stride` (official flags: 6,12,18 at OS16; 12,24,36 at OS8).
    image_pooling_crop_size: None pools over the whole feature map of the input (the official graph with
    crop_size = the input's size); (h, w) pools with a fixed window, scale_dimension(crop, 1/OS), moved
    by `image_pooling_stride`, as the MobileNet-v3 releases do.
    decoder_output_stride: the strides of the decoder's skips, e.g. (4,); None for DeepLab v3.
    dense_prediction_cell_config: the DPC branches (replaces ASPP), rates at output stride 16.

    The last fields describe PyTorch DeepLabs; their defaults are the official graph's:
    align_corners: every bilinear resize with corners aligned (TF, VoVNet-DeepLabV3, DeepLab-v3-plus-
    cityscapes) or not (torchvision). relu_slope: the negative slope of every ReLU (DeepLab-v3-plus-
    cityscapes' InPlaceABN: 0.01). head_conv_bias: the head's convolutions have biases (DeepLab-v3-plus-
    cityscapes). head_bn_epsilon: the head's batch norm (VoVNet-DeepLabV3's ASPP passes its momentum 3e-4
    where BatchNorm2d takes eps). head_output_conv: a 3x3 conv + BN + ReLU between the head and the logits
    (torchvision's DeepLabHead). logits_bias: the logits conv has a bias. first_unit_dilated: the first unit
    of a dilated stage runs at the stage's rate (DeepLab-v3-plus-cityscapes), not at the previous stage's
    (torchvision's ResNet). aspp_projection_padding: zeros around the input of the ASPP's 1x1 projection
    (DeepLab-v3-plus-cityscapes' conv_out keeps ConvBNReLU's default padding=1: its output is 2 pixels
    larger, a border that the decoder's resize spreads over the skip's grid).
    finegrain_classification_mode: a slim MobileNet ImageNet classifier whose last conv (Conv_1) keeps its
    1280 channels below depth multiplier 1 (slim's mobilenet_v2_050/_035 and mobilenet_v3.edge_tpu_075).
    """
    model_variant: str
    num_classes: int
    task: str = SEGMENTATION
    output_stride: int = 16
    atrous_rates: Optional[Tuple[int, ...]] = None
    add_image_level_feature: bool = True
    image_pooling_crop_size: Optional[Tuple[int, int]] = None
    image_pooling_stride: Tuple[int, int] = (1, 1)
    aspp_with_separable_conv: bool = True
    multi_grid: Optional[Tuple[int, ...]] = None
    decoder_output_stride: Optional[Tuple[int, ...]] = None
    decoder_use_separable_conv: bool = True
    depth_multiplier: float = 1.0
    divisible_by: Optional[int] = None
    dense_prediction_cell_config: Optional[tuple] = None
    aspp_with_concat_projection: bool = True
    aspp_with_squeeze_and_excitation: bool = False
    aspp_convs_filters: int = 256
    decoder_use_sum_merge: bool = False
    decoder_filters: int = 256
    decoder_output_is_logits: bool = False
    image_se_uses_qsigmoid: bool = False
    align_corners: bool = True
    relu_slope: float = 0.0
    head_conv_bias: bool = False
    head_bn_epsilon: float = 1e-5  # official model.py batch norm: epsilon 1e-5
    head_output_conv: bool = False
    logits_bias: bool = True
    first_unit_dilated: bool = False
    aspp_projection_padding: int = 0
    finegrain_classification_mode: bool = False

    def __post_init__(self):
        for name in ('atrous_rates', 'image_pooling_crop_size', 'image_pooling_stride', 'multi_grid',
                     'decoder_output_stride'):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        if self.dense_prediction_cell_config is not None:
            object.__setattr__(self, 'dense_prediction_cell_config', tuple(
                dict(branch, rate=tuple(branch.get('rate', (1, 1)))) for branch in self.dense_prediction_cell_config))
        self.check()

    @property
    def family(self):
        return FAMILIES[self.model_variant]

    @property
    def input_normalization(self):
        """'imagenet' ((RGB / 255 - mean) / std, the PyTorch originals) or 'unit_range' (RGB to [-1, 1], official)."""
        return 'imagenet' if self.family in IMAGENET_NORMALIZED else 'unit_range'

    def check(self):
        """ValueError naming the field for what the networks cannot build."""
        if self.model_variant not in FAMILIES:
            raise ValueError('model_variant %r is not one of %s' % (self.model_variant, ', '.join(FAMILIES)))
        if self.task not in (SEGMENTATION, CLASSIFICATION):
            raise ValueError('task %r is neither %r nor %r' % (self.task, SEGMENTATION, CLASSIFICATION))
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError('num_classes must be a positive integer, not %r' % (self.num_classes,))
        if self.output_stride not in (8, 16, 32):
            raise ValueError('output_stride %r cannot be reached: use 8, 16 or 32' % (self.output_stride,))
        if self.decoder_use_sum_merge and len(self.decoder_output_stride or ()) != 1:
            raise ValueError('decoder_use_sum_merge needs exactly one decoder_output_stride')
        for branch in self.dense_prediction_cell_config or ():
            if branch.get('op') != 'conv':
                raise ValueError('dense prediction cell op %r: only the official cells\' "conv" ops are built'
                                 % (branch.get('op'),))

    def with_output_stride(self, output_stride):
        """The same network run at another output stride: the ASPP rates scale with it, as the official
        flags do (6,12,18 at OS16 are 12,24,36 at OS8); the weights are the same."""
        if output_stride is None or output_stride == self.output_stride:
            return self
        rates = self.atrous_rates
        if rates is not None:
            scaled = [rate * self.output_stride / output_stride for rate in rates]
            if any(rate != int(rate) or rate < 1 for rate in scaled):
                raise ValueError('atrous_rates %s at output stride %d have no integer equivalent at %d'
                                 % (rates, self.output_stride, output_stride))
            rates = tuple(int(rate) for rate in scaled)
        return dataclasses.replace(self, output_stride=output_stride, atrous_rates=rates)

    def with_flags(self, flags):
        """The spec with official DeepLab flags set (`parse_flags`); `model_variant` must be the spec's own.
        A new output_stride without atrous_rates scales the rates, as the official flags do."""
        changes = parse_flags(flags)
        if changes.get('model_variant', self.model_variant) != self.model_variant:
            raise ValueError('flag model_variant=%s, but the checkpoint holds %s' % (changes['model_variant'],
                                                                                     self.model_variant))
        spec = self
        if 'output_stride' in changes and 'atrous_rates' not in changes:  # the rates follow, as the flags' do
            spec = spec.with_output_stride(changes['output_stride'])
        return dataclasses.replace(spec, **changes) if changes else spec

    def with_num_classes(self, num_classes):
        """The same network predicting `num_classes` (a decoder whose output is the logits has as many filters)."""
        changes = {'num_classes': num_classes}
        if self.decoder_output_is_logits:
            changes['decoder_filters'] = num_classes
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_model_options(cls, options, task=SEGMENTATION):
        """A spec from the official ModelOptions as a dict (e.g. `config.json` of the references):
        `outputs_to_num_classes['semantic']` gives num_classes; training-only fields are ignored."""
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in options.items() if name in fields}
        if 'num_classes' not in values:
            values['num_classes'] = options['outputs_to_num_classes']['semantic']
        return cls(task=task, **values)

    def to_json(self):
        """A JSON-ready dict of every field (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data, where='model spec'):
        """The spec of `to_json()`; WeightsError naming `where` if it is not one."""
        if not isinstance(data, dict):
            raise WeightsError('%s: not a model specification' % where)
        unknown = set(data) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise WeightsError('%s: unknown model field(s) %s (written by a newer deeplab-gluon?)'
                               % (where, ', '.join(sorted(unknown))))
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise WeightsError('%s: %s' % (where, error)) from None

    def describe(self):
        """'DeepLab v3+ (xception_65, OS16), 21 classes' for messages."""
        if self.task == CLASSIFICATION:
            return '%s ImageNet classifier, %d classes' % (self.model_variant, self.num_classes)
        head = ('DPC' if self.dense_prediction_cell_config else
                'v3+' if self.decoder_output_stride else 'v3')
        variant = self.model_variant + ('' if self.depth_multiplier == 1.0 else ' x%g' % self.depth_multiplier)
        return 'DeepLab %s (%s, OS%d), %d classes' % (head, variant, self.output_stride, self.num_classes)

    @property
    def from_pytorch(self):
        """True for the networks of PyTorch projects (converted from .pth files)."""
        return self.family in IMAGENET_NORMALIZED


def parse_flags(flags):
    """{field: value} of official DeepLab flags, as `--name=value` strings of the official train/eval scripts
    or `name=value` ('output_stride=8', 'atrous_rates=12,24,36', 'image_pooling_crop_size=769,769',
    'dense_prediction_cell_json=FILE'); a repeated list flag accumulates, as the official multi-integer
    flags do (`--atrous_rates=12 --atrous_rates=24 ...`). ValueError naming the flag for an unknown name
    or a bad value."""
    values = {}
    for flag in flags:
        name, separator, text = flag.lstrip('-').partition('=')
        if not separator:
            raise ValueError('flag %r: write name=value' % flag)
        values.setdefault(name.strip(), []).append(text.strip())
    changes = {}
    for name, texts in values.items():
        if name == 'dense_prediction_cell_json':
            changes['dense_prediction_cell_config'] = read_dense_prediction_cell(texts[-1])
            continue
        if name not in FLAG_TYPES:
            raise ValueError('flag %r is not one of the official model flags: %s'
                             % (name, ', '.join(sorted(FLAG_TYPES) + ['dense_prediction_cell_json'])))
        try:
            changes[name] = FLAG_TYPES[name](texts)
        except ValueError:
            raise ValueError('flag %s=%s: not a valid value' % (name, ','.join(texts))) from None
    return changes


def _integers(texts):
    found = tuple(int(value) for text in texts for value in text.split(',') if value.strip())
    return found or None


def _boolean(texts):
    text = texts[-1].lower()
    if text not in ('1', '0', 'true', 'false'):
        raise ValueError(text)
    return text in ('1', 'true')


# The official model flags (common.py) a spec takes, and how their text reads; lists may be repeated flags.
FLAG_TYPES = {
    'model_variant': lambda texts: texts[-1], 'output_stride': lambda texts: int(texts[-1]),
    'atrous_rates': _integers, 'multi_grid': _integers, 'decoder_output_stride': _integers,
    'image_pooling_crop_size': _integers, 'image_pooling_stride': _integers,
    'depth_multiplier': lambda texts: float(texts[-1]), 'divisible_by': lambda texts: int(texts[-1]),
    'aspp_convs_filters': lambda texts: int(texts[-1]), 'decoder_filters': lambda texts: int(texts[-1]),
    **{name: _boolean for name in ('add_image_level_feature', 'aspp_with_separable_conv',
                                   'decoder_use_separable_conv', 'aspp_with_concat_projection',
                                   'aspp_with_squeeze_and_excitation', 'decoder_use_sum_merge',
                                   'decoder_output_is_logits', 'image_se_uses_qsigmoid')},
}


def read_dense_prediction_cell(path):
    """The branches of an official dense prediction cell JSON file (`dense_prediction_cell_json`)."""
    try:
        with open(path) as stream:
            config = json.load(stream)
    except (OSError, ValueError) as error:
        raise ValueError('dense_prediction_cell_json %s: %s' % (path, error)) from None
    if not isinstance(config, list) or not all(isinstance(branch, dict) for branch in config):
        raise ValueError('dense_prediction_cell_json %s: not a list of branches' % path)
    return tuple(config)


def xception65_spec(num_classes=21, output_stride=16, atrous_rates=None, decoder=True):
    """The spec of the Xception-65 DeepLab v3+ releases (DeepLab v3 with decoder=False)."""
    rates = atrous_rates if atrous_rates is not None else default_rates(output_stride)
    return ModelSpec('xception_65', num_classes, output_stride=output_stride, atrous_rates=rates,
                     decoder_output_stride=(4,) if decoder else None)


def release_spec(model_variant, num_classes, depth_multiplier=1.0):
    """The DeepLab network that the official release flags build on a backbone: what training from its
    ImageNet checkpoint makes (model_zoo.md, local_test*.sh). Xception and ResNet: DeepLab v3+ (ASPP 6,12,18
    at OS16, decoder at 4; ResNet with multi-grid 1,2,4); MobileNet-v2: image pooling + 1x1 (no atrous
    branches, no decoder), and so EdgeTPU-MobileNet (with 128 ASPP filters below depth multiplier 1, as
    EdgeTPU-DeepLab-slim); MobileNet-v3: the Cityscapes releases' head (OS32, gated image pooling, sum-merge
    decoder at 8 whose output is the logits)."""
    if model_variant not in RELEASE_FLAGS:
        raise ValueError('model_variant %r has no official release head: use one of %s (a PyTorch DeepLab trains '
                         'from its converted .pth, with --init)' % (model_variant, ', '.join(RELEASE_FLAGS)))
    flags = RELEASE_FLAGS[model_variant]
    common = dict(num_classes=num_classes, depth_multiplier=depth_multiplier, output_stride=flags['output_stride'])
    if model_variant.startswith('mobilenet_v3'):
        return ModelSpec(model_variant, image_pooling_crop_size=flags['image_pooling_crop_size'],
                         image_pooling_stride=flags['image_pooling_stride'], aspp_convs_filters=128,
                         aspp_with_concat_projection=False, aspp_with_squeeze_and_excitation=True,
                         decoder_output_stride=flags['decoder_output_stride'], decoder_use_sum_merge=True,
                         decoder_filters=num_classes, decoder_output_is_logits=True,
                         image_se_uses_qsigmoid=flags['image_se_uses_qsigmoid'], **common)
    if model_variant == 'mobilenet_v2':
        return ModelSpec(model_variant, **common)
    if model_variant == 'mobilenet_edgetpu':  # EdgeTPU-DeepLab-slim (x0.75): --aspp_convs_filters=128
        return ModelSpec(model_variant, aspp_convs_filters=256 if depth_multiplier == 1.0 else 128, **common)
    return ModelSpec(model_variant, atrous_rates=default_rates(flags['output_stride']),
                     multi_grid=flags.get('multi_grid'), decoder_output_stride=flags['decoder_output_stride'], **common)


def default_rates(output_stride):
    """The official ASPP rates of the release flags: 6,12,18 at OS16 and 12,24,36 at OS8."""
    rates = {8: (12, 24, 36), 16: (6, 12, 18)}  # official local_test.sh / model_zoo.md flags
    if output_stride not in rates:
        raise ValueError('no default atrous_rates for output_stride %r; pass atrous_rates' % (output_stride,))
    return rates[output_stride]
