"""Reading photos as the network wants them, and drawing label maps."""
import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError
from .fileio import atomic_path


def to_rgb(image):
    """A PIL image of any mode as an H x W x 3 uint8 RGB array.

    Grayscale (8 and 16 bit, and 32-bit integer or float) is repeated over the three channels, 16-bit
    values scaled to 8 bits; palette and CMYK images are converted; an alpha channel is dropped.
    """
    if image.mode in ('I;16', 'I;16L', 'I;16B', 'I', 'F'):
        values = np.asarray(image, dtype=np.float64)
        full_scale = 65535.0 if image.mode.startswith('I;16') or values.max() > 255 else 255.0
        gray = np.clip(np.round(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert('RGB'), dtype=np.uint8)


def read_rgb(path):
    """H x W x 3 uint8 RGB of an image file (JPEG, PNG, BMP, ...), upright by its EXIF orientation."""
    try:
        with Image.open(path) as image:
            return to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError('%s: not a readable image (%s)' % (path, ' '.join(str(error).split()))) from None


def fit_within(image, size):
    """The official demo's resize: a photo larger than `size` (its long side) is shrunk, aspect kept,
    with LANCZOS, to int(ratio * w) x int(ratio * h); smaller photos are returned as they are."""
    height, width = image.shape[:2]
    if max(height, width) <= size:
        return image
    ratio = size / max(height, width)
    shrunk = (max(1, int(ratio * width)), max(1, int(ratio * height)))  # a side of 0 is kept at 1 (8000 x 4)
    resized = Image.fromarray(image).resize(shrunk, Image.LANCZOS)
    return np.asarray(resized)


def label_image(labels, palette):
    """An H x W label map as a palette ('P') PIL image with the given 256 x 3 palette."""
    image = Image.fromarray(np.asarray(labels, np.uint8), mode='P')
    image.putpalette(np.asarray(palette, np.uint8).ravel().tolist())
    return image


def overlay(image, labels, palette, alpha=0.5):
    """H x W x 3 uint8: the photo blended with the colours of its labels."""
    colours = np.asarray(palette, np.uint8)[np.asarray(labels, np.int64)]
    return np.round((1 - alpha) * image + alpha * colours).astype(np.uint8)


def save_image(image, path, **options):
    """Save a PIL image (or an H x W x 3 uint8 array) atomically; the format follows the extension."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_path(path) as temporary:
        image.save(temporary, format=Image.registered_extensions()[('.' + str(path).rsplit('.', 1)[-1]).lower()],
                   **options)
