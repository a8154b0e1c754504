"""Named intermediate outputs of a network's own forward pass, for inspection and stage-by-stage checks.

    with record(net, ['backbone.entry_block2_unit1', 'aspp.projection']) as taps:
        net(x)
    skip = taps['backbone.entry_block2_unit1'].output[1]    # the decoder's stride-4 skip
    concat = taps['aspp.projection'].inputs[0]              # the ASPP branches, concatenated

A path is the dotted name of a child block, as in parameter files without the parameter's own name
(`backbone.exit_block2_unit1.separable_conv1.depthwise`, `aspp.aspp1`, `decoder.conv0`); `''` is the
network itself. Nothing of the forward pass is rewritten: Gluon forward hooks see each block's call as
the network makes it. They see imperative calls only: a hybridized block runs its children inside one
cached graph (and calls them with symbols while it builds that graph), so `record` refuses a path that
runs through a hybridized block; record before `net.hybridize()`, or after `net.hybridize(False)`.
"""
from collections import namedtuple
from contextlib import contextmanager

Tap = namedtuple('Tap', ['inputs', 'output'])
Tap.__doc__ = """One call of a block: `inputs`, the tuple of its positional arguments; `output`, what it
returned (an NDArray, or a tuple of them for blocks with several outputs)."""


def blocks_along(net, path):
    """[net, ..., the block at dotted `path`] ('' is `net`); KeyError naming the known children if none."""
    blocks = [net]
    for depth, name in enumerate(path.split('.') if path else []):
        children = blocks[-1]._children  # Gluon 1.x keeps registered children, with their names, here only
        if name not in children:
            where = '.'.join(path.split('.')[:depth]) or 'the network'
            raise KeyError('%r: %s has no child %r (its children: %s)'
                           % (path, where, name, ', '.join(children) or 'none'))
        blocks.append(children[name])
    return blocks


def find_block(net, path):
    """The child block of `net` at dotted `path` ('' is `net`); KeyError naming the known children if none."""
    return blocks_along(net, path)[-1]


class Taps(dict):
    """{path: Tap} of one recording; a path whose block was not called raises a KeyError that says so."""

    def __missing__(self, path):
        raise KeyError('%r was not called while recording' % (path,))


@contextmanager
def record(net, paths):
    """Record the inputs and output of the blocks at `paths` while the body of the `with` runs.

    Yields a `Taps` dict, filled as the blocks are called: path -> Tap(inputs, output), from the last
    call if a block is called several times. The hooks are removed when the `with` ends, also on an
    error; the dict keeps what was recorded. Unknown paths raise KeyError, and paths that run through a
    hybridized block ValueError, before anything is hooked.
    """
    blocks = {}
    for path in paths:
        along = blocks_along(net, path)
        # a hybridized block's children run in its cached graph; its own call is seen (not for `path` itself)
        if any(getattr(block, '_active', False) for block in along[:-1]):
            raise ValueError('%r runs inside a hybridized block, where hooks do not see it: record before '
                             'hybridize(), or after hybridize(False)' % (path,))
        blocks[path] = along[-1]
    taps, handles = Taps(), []

    def keeper(path):
        def hook(block, inputs, output):
            taps[path] = Tap(tuple(inputs), output)
        return hook

    try:
        for path, block in blocks.items():
            handles.append(block.register_forward_hook(keeper(path)))
        yield taps
    finally:
        for handle in handles:
            handle.detach()
