"""The conversion as a library function: `convert(source, output)` -> the metadata it wrote.

    from converters.convert import convert
    metadata = convert('deeplabv3_pascal_train_aug_2018_01_04.tar.gz', 'voc.params')

`converters/extract_weights.py` is the command line over it, and `mylib.zoo` calls it to convert the
official releases it downloads. TensorFlow is imported only when a TF checkpoint is read (stage 1).
"""
import os
import tempfile

from converters.to_gluon import CONVERTER_VERSION, convert_h5
from mylib.weights import metadata_path, momentum_path

__all__ = ['CONVERTER_VERSION', 'convert', 'default_output', 'describe', 'is_h5']


def default_output(source):
    """`<name>.params` in the current folder, named after the archive, folder or checkpoint."""
    path = os.path.normpath(os.path.abspath(source))
    name = os.path.basename(path)
    for extension in ('.tar.gz', '.pth.tar', '.tgz', '.tar', '.h5', '.index', '.pth', '.pt'):
        if name.endswith(extension):
            name = name[:-len(extension)]
            break
    if name.startswith('model.ckpt'):  # official layout: <release>/model.ckpt
        name = os.path.basename(os.path.dirname(path))
    return name + '.params'


def is_h5(path):
    """True for an HDF5 file (by its signature), such as the ones --save-h5 writes."""
    try:
        with open(path, 'rb') as stream:
            return stream.read(8) == b'\x89HDF\r\n\x1a\n'
    except OSError:
        return False


def is_pth(path):
    """True for a PyTorch checkpoint (the zip or legacy format of torch.save, by its first bytes)."""
    if not os.path.isfile(path):
        return False
    from converters.read_torch import checkpoint_format
    try:
        return checkpoint_format(path) in ('zip', 'legacy')
    except OSError:
        return False


def describe(metadata):
    """'DeepLab v3+ (xception_65, OS16), 21 classes': what converted parameters hold, for messages."""
    return metadata.get('description') or '%s, %d classes' % (metadata['kind'], metadata['num_classes'])


def convert(source, output=None, save_h5=None, h5_only=False, progress=True, log=print, optimizer_state=False,
            flags=()):
    """Convert `source` (checkpoint prefix, folder, .tar.gz release archive, or stage-1 .h5) into Gluon
    parameters at `output` (default `default_output(source)`), with their JSON beside them.

    save_h5: also keep stage 1's TF-named arrays there; h5_only: stop after stage 1 (returns None).
    optimizer_state: also keep the checkpoint's `/Momentum` slots, written beside the parameters
    (`a.momentum` beside `a.params`) for `train.py --init` to start its optimizer from them.
    flags: official model flags the checkpoint does not record, 'name=value' (`ModelSpec.with_flags`), e.g.
    ('output_stride=8',) for a network trained and evaluated at OS8.
    log: where the progress messages go. Returns the metadata written to the JSON.
    Raises ConversionError naming the file or tensor at fault; nothing is left at `output` then.
    """
    if is_pth(source):
        return _convert_pth(source, output, save_h5, h5_only, optimizer_state, flags, progress, log)
    with tempfile.TemporaryDirectory(prefix='extract_weights.') as workdir:
        if is_h5(source):
            h5_path = source
        else:
            from converters.read_tf import read_checkpoint  # stage 1: the only place that needs TensorFlow
            h5_path = save_h5 or os.path.join(workdir, 'arrays.h5')
            summary = read_checkpoint(source, h5_path, os.path.join(workdir, 'archive'), progress=progress,
                                      keep_momentum=optimizer_state)
            log('read %s: %d tensors, %d model tensors kept, skipped %s'
                % (source, summary['read'], summary['kept'],
                   ', '.join('%d %s(s)' % (count, reason) for reason, count in summary['skipped'].items())
                   or 'none'))
            if save_h5:
                log('wrote %s (TF-named arrays)' % save_h5)
        if h5_only:
            return None
        output = output or default_output(source)
        metadata = convert_h5(h5_path, output, progress=progress, optimizer_state=optimizer_state, flags=flags)
    _report(metadata, output, log)
    return metadata


def _convert_pth(source, output, save_h5, h5_only, optimizer_state, flags, progress, log):
    """`convert` for a PyTorch checkpoint: one stage, no TensorFlow, no PyTorch."""
    from converters.to_gluon import convert_state_dict
    from mylib.errors import ConversionError
    for given, option in ((save_h5 or h5_only, '--save-h5/--h5-only'), (optimizer_state, '--optimizer-state'),
                          (flags, '--flag')):
        if given:
            raise ConversionError('%s: %s is for TF checkpoints; a PyTorch checkpoint converts in one step, its '
                                  'network as its project builds it' % (source, option))
    output = output or default_output(source)
    metadata = convert_state_dict(source, output, progress=progress)
    _report(metadata, output, log)
    return metadata


def _report(metadata, output, log):
    notes = metadata.get('not_recorded_in_checkpoint', ())
    log('converted: %s%s' % (describe(metadata), '; not recorded in a checkpoint, so taken as:' if notes else ''))
    for note in notes:
        log('  %s' % note)
    log('wrote %s: %d parameters, %s values (every tensor mapped once, %d skipped by rule); details in %s'
        % (output, metadata['parameters'], format(metadata['values'], ','),
           sum(metadata['tensors']['skipped'].values()), metadata_path(output)))
    if 'optimizer_state' in metadata:
        log('wrote %s: the %d %s slots of the checkpoint (train.py --init %s starts its optimizer from them)'
            % (momentum_path(output), metadata['optimizer_state']['tensors'], metadata['optimizer_state']['slot'],
               output))
    log('load it with: net = mylib.load_model(%r)' % output)
