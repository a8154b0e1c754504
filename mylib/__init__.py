"""deeplab-gluon: DeepLab v3+ (Xception-65) in MXNet Gluon, exact to the official TF releases."""
from .models import DeepLabV3Plus, Xception65

__all__ = ['DeepLabV3Plus', 'Xception65']
