"""The official DeepLab training augmentation, exact, in numpy: random scale, pad, random crop, flip.

Ported from the semantics of tensorflow/models research/deeplab `input_preprocess.py`
(`preprocess_image_and_label`, is_training=True) and `core/preprocess_utils.py`:

  1. scale: one value drawn uniformly from linspace(min_scale, max_scale, num_steps) with
     num_steps = int((max - min) / step + 1) (from [min, max) when step is 0); the new size of each
     side is int(float32(size) * scale); the image (as float32) is resized bilinearly with corners
     aligned (tf.image.resize_bilinear, align_corners=True), the label with nearest neighbour, corners
     aligned (tf.image.resize_nearest_neighbor); the official skips both at scale 1, where they are
     the identity anyway;
  2. pad at the bottom and right up to the crop size (where smaller): image with the mean pixel 127.5,
     label with the ignore label 255;
  3. random crop of crop_size, offsets uniform in [0, padded - crop] per side;
  4. left-right flip of image and label together with probability 0.5.

Only the crop window of the resized image is ever computed, and a flip computes the window's columns
in reverse order: every output pixel of a resize depends on its own coordinates only, so the result
is the same as resizing the whole image, padding, cropping and flipping.
"""
import numpy as np
from mxnet import gluon

from ..models.layers import MEAN_PIXEL
from .specs import DEFAULT_CROP, IGNORE_LABEL

FLIP_PROBABILITY = 0.5  # official input_preprocess: _PROB_OF_FLIP
ROWS_PER_BLOCK = 64  # output rows resized at a time (fastest of 16-128 on 513 x 513 crops of VOC images)


def aligned_scale(in_size, out_size):
    """TF's source-per-output step with corners aligned: float32 (in - 1) / (out - 1)."""
    if out_size > 1:
        return np.float32(in_size - 1) / np.float32(out_size - 1)
    return np.float32(in_size) / np.float32(out_size)  # TF's value for a 1-pixel output (only index 0 is used)


def source_positions(in_size, out_size, indices):
    """float32 source coordinates of the output `indices` along one axis: float32(index) * scale, as TF."""
    return np.asarray(indices, np.float32) * aligned_scale(in_size, out_size)


def output_indices(out_size, indices):
    """`indices` (output positions to compute, in the order wanted) or every position of the axis."""
    return np.arange(out_size) if indices is None else np.asarray(indices)


def nearest_indices(in_size, out_size, indices=None):
    """Source index of each output index for a nearest-neighbour resize, corners aligned.

    TF rounds half away from zero (roundf) and clips to the last pixel.
    """
    position = source_positions(in_size, out_size, output_indices(out_size, indices)).astype(np.float64)
    return np.minimum(np.floor(position + 0.5), in_size - 1).astype(np.intp)  # exact roundf for x >= 0


def bilinear_weights(in_size, out_size, indices=None):
    """(lower, upper, lerp) of each output index for a bilinear resize, corners aligned.

    As TF's legacy kernel: lower = floor(x), upper = min(ceil(x), in - 1), lerp = x - floor(x) (float32).
    """
    position = source_positions(in_size, out_size, output_indices(out_size, indices))
    lower = np.floor(position)
    upper = np.minimum(np.ceil(position), in_size - 1)
    return lower.astype(np.intp), upper.astype(np.intp), position - lower


def gather(values, indices, axis):
    """values[..., indices, ...] along `axis` (fancy indexing is the faster gather on the last axis)."""
    if axis == values.ndim - 1:
        return values[..., indices]
    return np.take(values, indices, axis=axis, mode='clip')  # indices are in range: no check needed


def lerp_along(values, axis, lower, upper, lerp, out=None):
    """a + (b - a) * lerp along `axis`, a and b the values at `lower` and `upper` (float32, TF's roundings).

    b - a is formed in place in the gathered b; the result goes to `out` if given.
    """
    shape = [1] * values.ndim
    shape[axis] = -1
    first = gather(values, lower, axis)
    change = gather(values, upper, axis)
    change -= first
    change *= lerp.reshape(shape)
    return np.add(first, change, out=out)  # float32 addition commutes: a + (b - a) * lerp exactly


def resize_bilinear(image, size, rows=None, cols=None, out=None):
    """Bilinear resize of an H x W x C image to `size` (h, w), corners aligned: float32 C x h x w.

    Exactly tf.compat.v1.image.resize_bilinear(align_corners=True) on the image cast to float32: each
    row is interpolated along x first, then along y. `rows`, `cols`: the output indices to compute,
    in the order wanted (default all; a window, or a reversed one for a mirrored crop); the result is
    then C x len(rows) x len(cols). `out` receives the result.

    Works through blocks of output rows, so that every temporary array stays small: large temporaries
    cost more in page faults than the arithmetic (numpy hands their memory back to the system).
    """
    rows = bilinear_weights(image.shape[0], size[0], rows)
    cols = bilinear_weights(image.shape[1], size[1], cols)
    if out is None:
        out = np.empty((image.shape[2], len(rows[0]), len(cols[0])), np.float32)
    col0, col1 = cols[0].min(), cols[1].max() + 1  # the source columns that are read
    for start in range(0, len(rows[0]), ROWS_PER_BLOCK):
        lower, upper, lerp = (weights[start:start + ROWS_PER_BLOCK] for weights in rows)
        row0, row1 = lower.min(), upper.max() + 1  # the source rows of this block
        source = np.ascontiguousarray(image[row0:row1, col0:col1].transpose(2, 0, 1), dtype=np.float32)
        across = lerp_along(source, 2, cols[0] - col0, cols[1] - col0, cols[2])
        lerp_along(across, 1, lower - row0, upper - row0, lerp, out=out[:, start:start + ROWS_PER_BLOCK])
    return out


def resize_nearest(label, size, rows=None, cols=None):
    """Nearest-neighbour resize of an H x W label to `size` (h, w), corners aligned (tf, align_corners=True).

    `rows`, `cols`: the output indices to compute, in the order wanted (default all).
    """
    return label[np.ix_(nearest_indices(label.shape[0], size[0], rows), nearest_indices(label.shape[1], size[1], cols))]


def scale_choices(min_scale, max_scale, scale_step):
    """The official `get_random_scale` set: linspace(min, max, int((max - min) / step + 1)) as float32.

    None when the scale is drawn from the interval [min, max) (step 0).
    """
    if min_scale <= 0 or min_scale > max_scale or scale_step < 0:
        raise ValueError('scales need 0 < min_scale <= max_scale and scale_step >= 0, got %r, %r, %r'
                         % (min_scale, max_scale, scale_step))
    if min_scale == max_scale:
        return np.array([min_scale], np.float32)
    if scale_step == 0:
        return None
    steps = int((max_scale - min_scale) / scale_step + 1)
    return np.linspace(min_scale, max_scale, steps).astype(np.float32)


class TrainAugmentation:
    """The official DeepLab training augmentation of one (image, label) pair (see the module docstring).

    crop_size: (height, width) of the output (an int for a square). Scales: official flags for VOC,
    Cityscapes and ADE20K are min 0.5, max 2.0, step 0.25. `flip`: random left-right flips. pad_value:
    the colour of the padding, the official mean pixel 127.5, or per channel the colour the network's
    normalisation makes 0 (`layers.mean_pixel`: the ImageNet mean of the PyTorch DeepLabs).

    Call with (image H x W x 3 uint8 RGB, label H x W uint8 with 255 = ignore, numpy Generator);
    returns (image 3 x h x w float32 with pixel values 0-255, label h x w float32 with 255 = ignore).
    """

    def __init__(self, crop_size=DEFAULT_CROP, min_scale=0.5, max_scale=2.0, scale_step=0.25, flip=True,
                 pad_value=MEAN_PIXEL):
        crop = (crop_size, crop_size) if np.isscalar(crop_size) else tuple(crop_size)
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError('crop_size must be (height, width) of positive ints, got %r' % (crop_size,))
        self.crop_size = tuple(int(side) for side in crop)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.scales = scale_choices(self.min_scale, self.max_scale, scale_step)
        self.flip = bool(flip)
        self.pad_value = np.asarray(pad_value, np.float32).reshape(-1, 1, 1)

    def __repr__(self):
        return 'TrainAugmentation(crop_size=%r, scales=%s, flip=%s)' % (
            self.crop_size, 'uniform [%g, %g)' % (self.min_scale, self.max_scale) if self.scales is None
            else list(self.scales.tolist()), self.flip)

    def draw(self, image_size, rng):
        """The random choices for an image of `image_size` (H, W): (scale, (top, left), flipped)."""
        if self.scales is None:
            scale = np.float32(rng.uniform(self.min_scale, self.max_scale))
        else:
            scale = self.scales[rng.integers(len(self.scales))]
        scaled = scaled_size(image_size, scale)
        offset = tuple(int(rng.integers(max(side, crop) - crop + 1)) for side, crop in zip(scaled, self.crop_size))
        flipped = bool(self.flip and rng.random() < FLIP_PROBABILITY)  # official: uniform <= 0.5, same odds
        return scale, offset, flipped

    def apply(self, image, label, scale, offset, flipped):
        """Scale, pad, crop at `offset` (top, left) of the padded image, and flip if `flipped`.

        Only the part of the crop inside the scaled image is resized (the rest is padding), and a
        flip reads the crop's columns in reverse order: no full-size resize, no copies.
        """
        scaled = scaled_size(image.shape[:2], scale)
        height, width = self.crop_size
        top, left = offset
        inside = (min(height, scaled[0] - top), min(width, scaled[1] - left))
        rows, cols = np.arange(top, top + inside[0]), np.arange(left, left + inside[1])
        target = (slice(0, inside[0]), slice(0, inside[1]))
        if flipped:
            cols, target = cols[::-1], (target[0], slice(width - inside[1], width))
        out_image = np.empty((3, height, width), np.float32)
        out_image[:] = self.pad_value
        out_label = np.full((height, width), IGNORE_LABEL, np.float32)
        resize_bilinear(image, scaled, rows, cols, out=out_image[(slice(None),) + target])
        out_label[target] = resize_nearest(label, scaled, rows, cols)
        return out_image, out_label

    def __call__(self, image, label, rng):
        check_pair(image, label)
        return self.apply(image, label, *self.draw(image.shape[:2], rng))


def scaled_size(image_size, scale):
    """The official new size: int(float32(side) * scale) per side (at least 1 pixel)."""
    return tuple(max(1, int(np.float32(side) * np.float32(scale))) for side in image_size)


def check_pair(image, label):
    """ValueError unless image is H x W x 3 uint8 and label is H x W uint8 of the same size."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('image must be H x W x 3 uint8, got %s %s' % (image.shape, image.dtype))
    if label.shape != image.shape[:2] or label.dtype != np.uint8:
        raise ValueError('label must be H x W uint8 of the image size %s, got %s %s'
                         % (image.shape[:2], label.shape, label.dtype))


class AugmentedDataset(gluon.data.Dataset):
    """`augmentation` applied to the items of `dataset`, reproducibly: key = epoch * len(dataset) + index.

    train[key] is the augmentation of dataset[index] drawn with np.random.default_rng([seed, epoch, index]),
    so a sample depends only on (seed, epoch, index), whichever process or order computes it (what an
    exact resume of training needs). len(train) == len(dataset); keys of later epochs go beyond it.
    Items: (image 3 x h x w float32, 0-255; label h x w float32, 255 = ignore).
    """

    def __init__(self, dataset, augmentation, seed):
        self.dataset = dataset
        self.augmentation = augmentation
        self.seed = int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        if not isinstance(key, (int, np.integer)) or key < 0:
            raise IndexError('keys are epoch * len(dataset) + index >= 0, got %r' % (key,))
        epoch, index = divmod(int(key), len(self.dataset))
        image, label = self.dataset[index]
        return self.augmentation(image, label, np.random.default_rng([self.seed, epoch, index]))
