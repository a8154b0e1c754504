"""The networks: arrays in, arrays out. No TensorFlow names, no datasets."""
from .deeplab import ASPP, DEFAULT_RATES, Decoder, DecoderLogits, DeepLabV3Plus
from .xception import XCEPTION_65, BlockSpec, Xception65, XceptionBackbone, unit_plan

__all__ = ['ASPP', 'DEFAULT_RATES', 'Decoder', 'DecoderLogits', 'DeepLabV3Plus', 'XCEPTION_65', 'BlockSpec',
           'Xception65', 'XceptionBackbone', 'unit_plan']
