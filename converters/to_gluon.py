"""Stage 2: map a .h5 of TF-named arrays (stage 1) onto Gluon parameters. Needs mxnet, not TensorFlow.

Strict accounting: every model tensor of the file is used exactly once, every Gluon parameter is
filled, optimizer slots and training state are skipped by rule and counted; anything missing,
unexpected or of the wrong shape stops the conversion with an error naming the tensor.
"""
import json
import os

import numpy as np
from tqdm import tqdm

from converters.mapping import MOMENTUM_SLOT, SLOT_GROUP, detect_model, skip_reason, table_for, to_gluon_layout
from converters.tables.heads import flag_text
from mylib.errors import ConversionError
from mylib.fileio import atomic_path, write_json
from mylib.weights import metadata_path, momentum_path

CONVERTER_VERSION = 2  # 2: the model specification in the JSON (every family)


def build_model(spec):
    """The mylib network whose parameters a checkpoint of `spec` fills."""
    from mylib.models import build_network
    return build_network(spec)


def _list_arrays(h5):
    """{TF name: h5 dataset} for every dataset of the file."""
    import h5py
    datasets = {}
    h5.visititems(lambda name, item: datasets.__setitem__(name, item)
                  if isinstance(item, h5py.Dataset) else None)
    return datasets


def _name_list(names, limit=5):
    names = sorted(names)
    return ', '.join(names[:limit]) + (' and %d more' % (len(names) - limit) if len(names) > limit else '')


def account(table, datasets, skip=skip_reason):
    """Check the file's tensors against the table in both directions; return the skipped ones.

    Returns {reason: [names]} of the tensors skipped by rule (`skip(name)`: the reason or None). Raises
    ConversionError naming the missing or unexpected tensors.
    """
    skipped, model_names = {}, set()
    for name in datasets:
        reason = skip(name)
        if reason:
            skipped.setdefault(reason, []).append(name)
        else:
            model_names.add(name)
    missing = set(table) - model_names
    unexpected = model_names - set(table)
    if missing:
        raise ConversionError('checkpoint is missing %d tensor(s) of the model: %s'
                              % (len(missing), _name_list(missing)))
    if unexpected:
        raise ConversionError('checkpoint has %d tensor(s) that the model does not have: %s'
                              % (len(unexpected), _name_list(unexpected)))
    return skipped


def convert_h5(h5_path, params_path, progress=True, optimizer_state=False, flags=()):
    """Convert a stage-1 .h5 into Gluon parameters at `params_path` (+ a JSON beside it).

    optimizer_state: also write the checkpoint's `/Momentum` slots, mapped like their variables, to
    `momentum_path(params_path)` (the official fine-tuning restores them with the weights; they are
    the `deeplab_momentum` optimizer's accumulators). Needs a .h5 read with them.
    Returns the metadata written to the JSON: kind, classes, source and its sha256, tensor counts (and
    the optimizer state's file and counts). The files are written atomically; nothing is left on error.
    """
    import h5py
    import mxnet as mx
    try:
        h5 = h5py.File(h5_path, 'r')
    except OSError as error:
        raise ConversionError('%s: not a readable .h5 file (%s)' % (h5_path, error)) from None
    with h5:
        datasets = _list_arrays(h5)
        slots = {name[len(SLOT_GROUP) + 1:]: datasets.pop(name) for name in list(datasets)
                 if name.startswith(SLOT_GROUP + '/')}
        shapes = {name: dataset.shape for name, dataset in datasets.items() if not skip_reason(name)}
        spec, notes = detect_model(shapes)
        if flags:
            try:
                spec = spec.with_flags(flags)
            except ValueError as error:
                raise ConversionError(str(error)) from None
            given = {flag.lstrip('-').partition('=')[0] for flag in flags}
            stale = given | ({'atrous_rates'} if 'output_stride' in given else set())
            notes = ['%s (--flag)' % flag.lstrip('-') for flag in flags] + [
                note for note in notes if note.partition('=')[0] not in stale]
            if 'output_stride' in given and 'atrous_rates' not in given and spec.atrous_rates:
                notes.append('atrous_rates=%s (the official rates at output_stride=%d)'
                             % (flag_text(spec.atrous_rates), spec.output_stride))
        table = table_for(spec)
        model, expected = _model_for(spec, table)
        skipped = account(table, datasets)
        arrays = map_arrays(table, datasets, expected, to_gluon_layout, progress)
        momenta = map_momenta(slots, table, expected, h5_path) if optimizer_state else None
        attributes = dict(h5.attrs)
    with atomic_path(params_path) as temporary:
        mx.nd.save(temporary, arrays)
        model.load_parameters(temporary)  # proves the file loads as it is, strictly
    if momenta is not None:
        with atomic_path(momentum_path(params_path)) as temporary:
            mx.nd.save(temporary, momenta)
    metadata = {
        'kind': spec.task,
        'num_classes': spec.num_classes,
        'model': spec.to_json(),
        'description': spec.describe(),
        'not_recorded_in_checkpoint': notes,
        'source': str(attributes.get('source', os.path.abspath(h5_path))),
        'source_files': json.loads(attributes.get('source_files', '[]')),
        'tensors': _tensor_counts(len(table), _name_counts(json.loads(attributes.get('skipped', '{}'))),
                                  _name_counts(skipped)),
        'parameters': len(arrays),
        'values': int(sum(array.size for array in arrays.values())),
        'converter_version': CONVERTER_VERSION,
    }
    if momenta is not None:
        metadata['optimizer_state'] = {
            'file': os.path.basename(momentum_path(params_path)), 'slot': MOMENTUM_SLOT, 'tensors': len(momenta),
            'doc': "the checkpoint's tf.train.MomentumOptimizer accumulators, by Gluon name; train.py --init "
                   'starts the deeplab_momentum optimizer from them'}
    write_json(metadata_path(params_path), metadata)
    return metadata


def _model_for(spec, table):
    """(the network of `spec`, {Gluon name: shape}); AssertionError if `table` does not fill it exactly."""
    model = build_model(spec)
    expected = {name: param.shape for name, param in model._collect_params_with_prefix().items()}
    homes = [gluon_name for gluon_name, _ in table.values()]
    if sorted(homes) != sorted(expected):  # the table and the network disagree: a bug here
        raise AssertionError('mapping table does not cover the Gluon parameters exactly: %s'
                             % _name_list(set(homes) ^ set(expected)))
    return model, expected


def map_arrays(table, datasets, expected, layout_change, progress=True):
    """{Gluon name: float32 NDArray} of every tensor of the table, in its Gluon layout (`layout_change(array,
    layout)`); ConversionError naming the tensor whose shape does not fit or that is not floating point."""
    import mxnet as mx
    arrays = {}
    for name, (gluon_name, layout) in tqdm(table.items(), desc='mapping to Gluon', unit='tensor',
                                           disable=not progress):
        original = np.asarray(datasets[name][()])
        array = layout_change(original, layout)
        if array.shape != expected[gluon_name]:
            raise ConversionError('tensor %s has shape %s; %s needs %s (after layout change)'
                                  % (name, tuple(original.shape), gluon_name, expected[gluon_name]))
        if not np.issubdtype(array.dtype, np.floating):
            raise ConversionError('tensor %s has dtype %s, not floating point' % (name, array.dtype))
        arrays[gluon_name] = mx.nd.array(array, dtype='float32')
    return arrays


def convert_state_dict(pth_path, params_path, progress=True):
    """Convert a PyTorch DeepLab checkpoint (.pth, read without PyTorch) into Gluon parameters at
    `params_path` (+ the JSON beside them). The project and network come from the tensors
    (`converters.torch_mapping.detect_model`); every tensor is mapped once or skipped by rule.
    Returns the metadata written; nothing is left at `params_path` on error."""
    import mxnet as mx

    from converters import torch_mapping
    from converters.read_torch import read_state_dict
    from mylib.fileio import sha256_of
    state, info = read_state_dict(pth_path)
    shapes = {name: array.shape for name, array in state.items() if not torch_mapping.skip_reason(name)}
    spec, notes, project = torch_mapping.detect_model(shapes)
    table = torch_mapping.table_for(spec, project)
    model, expected = _model_for(spec, table)
    skipped = account(table, state, torch_mapping.skip_reason)
    arrays = map_arrays(table, state, expected, torch_mapping.to_gluon_layout, progress)
    with atomic_path(params_path) as temporary:
        mx.nd.save(temporary, arrays)
        model.load_parameters(temporary)  # proves the file loads as it is, strictly
    metadata = {
        'kind': spec.task,
        'num_classes': spec.num_classes,
        'model': spec.to_json(),
        'description': '%s (%s)' % (spec.describe(), torch_mapping.PROJECT_NAMES[project]),
        'project': project,
        'not_recorded_in_checkpoint': notes,
        'source': os.path.abspath(pth_path),
        'source_files': [{'path': os.path.abspath(pth_path), 'sha256': sha256_of(pth_path)}],
        'pytorch_file': {name: info[name] for name in ('format', 'wrapper', 'prefix')},
        'tensors': _tensor_counts(len(table), {reason: count for reason, count in info['skipped'].items() if count},
                                  _name_counts(skipped)),
        'parameters': len(arrays),
        'values': int(sum(array.size for array in arrays.values())),
        'converter_version': CONVERTER_VERSION,
    }
    write_json(metadata_path(params_path), metadata)
    return metadata


def map_momenta(slots, table, expected, h5_path):
    """{Gluon name: NDArray} of the `<variable>/Momentum` slots, mapped as their variables; every slot is
    used, every one names a variable of the table; ConversionError otherwise (or if there are none)."""
    import mxnet as mx
    if not slots:
        raise ConversionError('%s holds no %s slots: read the checkpoint with --optimizer-state (and the checkpoint '
                              'must have them: release checkpoints do)' % (h5_path, MOMENTUM_SLOT))
    by_variable = {name[:-len('/' + MOMENTUM_SLOT)]: dataset for name, dataset in slots.items()}
    unknown = set(by_variable) - set(table)
    if unknown:
        raise ConversionError('%d %s slot(s) of variables the model does not have: %s'
                              % (len(unknown), MOMENTUM_SLOT, _name_list(unknown)))
    momenta = {}
    for tf_name, dataset in by_variable.items():
        gluon_name, layout = table[tf_name]
        array = to_gluon_layout(np.asarray(dataset[()]), layout)
        if array.shape != expected[gluon_name]:
            raise ConversionError('slot %s/%s has shape %s; %s needs %s' % (
                tf_name, MOMENTUM_SLOT, tuple(dataset.shape), gluon_name, expected[gluon_name]))
        momenta[gluon_name] = mx.nd.array(array, dtype='float32')
    return momenta


def _name_counts(names_by_reason):
    """{reason: count} of {reason: [names]}."""
    return {reason: len(names) for reason, names in names_by_reason.items()}


def _tensor_counts(converted, *skipped_by_stage):
    """{'read', 'converted', 'skipped': {reason: count}} over the stages' {reason: count} (reading first)."""
    skipped = {}
    for counts in skipped_by_stage:
        for reason, count in counts.items():
            skipped[reason] = skipped.get(reason, 0) + count
    return {'read': converted + sum(skipped.values()), 'converted': converted, 'skipped': skipped}
