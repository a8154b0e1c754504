"""Colour palettes for label maps: PASCAL VOC, Cityscapes and ADE20K, as 256 x 3 uint8 tables.

`palette[label]` colours an H x W label map (255 = ignore gets a neutral colour). Which dataset uses
which palette is said in `mylib.data.specs`.
"""
import numpy as np

VOC_IGNORE_COLOUR = (224, 224, 192)  # PASCAL VOC's colour for 255 (void) in its SegmentationClass PNGs

# Cityscapes colours of the 19 trainIds, road .. bicycle (cityscapesScripts labels.py; as the official
# DeepLab create_cityscapes_label_colormap)
CITYSCAPES_COLOURS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))

# ADE20K (SceneParsing benchmark) colours of classes 1..150 as RRGGBB, wall .. flag; class 0 ("other")
# is black (the official DeepLab create_ade20k_label_colormap; the same table as mmsegmentation's)
ADE20K_COLOURS_HEX = (  # one string
    '787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 '
    'e005ff ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 '
    '0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff '
    '08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 '
    'ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f '
    '14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff '
    '0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 '
    '008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff '
    'ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 '
    '00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 '
    '8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff '
    '00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 '
    'ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 '
    '00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff '
    '4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff')
VOID_BLACK = (0, 0, 0)  # Cityscapes' colour of unlabeled pixels, ADE20K's of "other": 255 for both


def voc_palette():
    """The PASCAL VOC bit-pattern palette, 256 x 3 uint8.

    Bit k of the index (k = 0, 1, 2, ...) goes to channel k % 3 (R, G, B) at bit 7 - k // 3, so
    1 -> (128, 0, 0), 2 -> (0, 128, 0), 15 -> (192, 128, 128), 255 -> (224, 224, 192).
    """
    index = np.arange(256)
    colours = np.zeros((256, 3), np.int64)
    for k in range(8):  # an index has 8 bits: at most 3 rounds of (R, G, B) bits are used
        for channel in range(3):
            bit = (index >> (3 * k + channel)) & 1
            colours[:, channel] |= bit << (7 - k)
    return colours.astype(np.uint8)


def _table(colours, ignore_colour):
    """256 x 3 uint8 with `colours` from index 0, black elsewhere, and `ignore_colour` at 255."""
    table = np.zeros((256, 3), np.uint8)
    table[:len(colours)] = colours
    table[255] = ignore_colour
    return table


def ade20k_colours():
    """151 x 3 uint8: black for class 0, then the 150 ADE20K colours."""
    colours = [VOID_BLACK] + [bytes.fromhex(code) for code in ADE20K_COLOURS_HEX.split()]
    return np.array([tuple(colour) for colour in colours], np.uint8)


def cityscapes_palette():
    """The 19 Cityscapes trainId colours, 255 (unlabeled) black."""
    return _table(np.array(CITYSCAPES_COLOURS, np.uint8), VOID_BLACK)


def ade20k_palette():
    """ADE20K: class 0 ("other") black, the 150 SceneParsing colours, 255 black."""
    return _table(ade20k_colours(), VOID_BLACK)
