"""Export a DeepLab network for serving: MXNet symbol + parameters, or ONNX at a fixed input size.

The Gluon model is size-agnostic: its bilinear resizes take their output size from another tensor
(`BilinearResize2D(mode='like')`) and image pooling is spread back over the map with
`broadcast_like`. MXNet's own serving (`mx.gluon.SymbolBlock.imports`) runs that graph as it is, at
any input size. mxnet's ONNX exporter converts neither operator in that form, so for ONNX the traced
graph is rewritten for one input size (`fixed_size_graph`): every node's shape is inferred for that
size, like-mode resizes become fixed-size ones and `broadcast_like` becomes a `tile` by the known
height and width. The batch axis stays free. `mylib.models` is not touched by any of this.

Both exported graphs take N x 3 x H x W float32 RGB pixel values in [0, 255] (normalised inside, as
the Gluon model) as `data`, and give the logits N x classes x H x W (bilinear, corners aligned) as
`logits`.
"""
import json
import os
import tempfile
import warnings

import mxnet as mx
import numpy as np

from .errors import ExportError
from .fileio import atomic_path

INPUT_NAME = 'data'
OUTPUT_NAME = 'logits'
ONNX_OPSET = 13  # mx2onnx (mxnet 1.9.1) translates operators for ONNX opsets 12 and 13
CHECK_TOLERANCE = 1e-3  # of max |logit|: float32 round-off of a reordered graph is about 1e-5


def symbol_files(prefix):
    """[PREFIX-symbol.json, PREFIX-0000.params]: the names `HybridBlock.export` gives (epoch 0)."""
    return [os.fspath(prefix) + '-symbol.json', os.fspath(prefix) + '-0000.params']


# --- the graph -------------------------------------------------------------------------------------
def traced_symbol(net):
    """(symbol, {name: NDArray} of its arguments, {name: NDArray} of its auxiliary states) of `net`.

    The symbol is the hybridized graph of the Gluon network, its input named `data` and its single
    output `logits`; the arrays are its parameters (batch-norm moving statistics are auxiliary).
    """
    graph = json.loads(net(mx.sym.var(INPUT_NAME)).tojson())
    (head, _, _), = graph['heads']
    graph['nodes'][head]['name'] = OUTPUT_NAME
    symbol = mx.sym.load_json(json.dumps(graph))
    values = {param.name: param.data(param.list_ctx()[0]) for param in net.collect_params().values()}
    args = {name: values[name] for name in symbol.list_arguments() if name != INPUT_NAME}
    aux = {name: values[name] for name in symbol.list_auxiliary_states()}
    return symbol, args, aux


def entry_shapes(graph, entries, input_shape):
    """Shapes of `entries` ([node, output, version] of a symbol's JSON graph) for an input shape.

    They are inferred on a copy of the graph whose outputs are those entries.
    """
    probe = mx.sym.load_json(json.dumps(dict(graph, heads=[list(entry) for entry in entries])))
    _, shapes, _ = probe.infer_shape(**{INPUT_NAME: tuple(input_shape)})
    return [tuple(shape) for shape in shapes]


def _steps(node):
    return node.get('attrs', {}).get('step', '').replace(' ', '')


def fixed_size_subsampling(graph, input_shape):
    """Replace in `graph` (a symbol's JSON) each pair of slices of `tf_same.every_second_from_end` (steps
    -2 then -1: rows H - 1, H - 3, ... whatever H's parity) by the one slice with step 2 that takes the same
    rows at the known size, from (H - 1) % 2: mxnet 1.9's ONNX exporter translates no negative step."""
    nodes = graph['nodes']
    pairs = [(index, _restoring_slice(nodes, index, 'a step -2 slice')) for index, node in enumerate(nodes)
             if node['op'] == 'slice' and _steps(node) == '(1,1,-2,-2)']
    if not pairs:
        return graph
    shapes = entry_shapes(graph, [nodes[first]['inputs'][0] for first, _ in pairs], input_shape)
    moved = {}
    for (first, restore), (_, _, height, width) in zip(pairs, shapes):
        nodes[first]['attrs'] = {'begin': str((None, None, (height - 1) % 2, (width - 1) % 2)),
                                 'end': str((None, None, None, None)), 'step': str((1, 1, 2, 2))}
        moved[restore] = first
    return _bypass(graph, moved)  # whatever read the restoring slice reads the single one


def _restoring_slice(nodes, index, what):
    """The index of the one slice with step -1 that reads node `index` (NotImplementedError naming `what`)."""
    found = [later for later, other in enumerate(nodes) if other['op'] == 'slice'
             and _steps(other) == '(1,1,-1,-1)' and other['inputs'][0][0] == index]
    if len(found) != 1:
        raise NotImplementedError('%s: %s without its restoring slice' % (nodes[index]['name'], what))
    return found[0]


def _bypass(graph, moved):
    """`graph` with every input (and head) that read node `old` reading node `moved[old]` instead."""
    for node in graph['nodes']:
        node['inputs'] = [[moved.get(entry[0], entry[0])] + list(entry[1:]) for entry in node['inputs']]
    graph['heads'] = [[moved.get(entry[0], entry[0])] + list(entry[1:]) for entry in graph['heads']]
    return graph


def fixed_size_reversed_convolutions(graph, input_shape):
    """Replace in `graph` each stride-2 convolution of `tf_same.SameStride2Conv2D` (its input and kernel
    reversed by slices with step -1, its output reversed back) by TF's own form at the known size: the
    input padded (total (ceil(H / 2) - 1) * 2 + k - H, the smaller half before; the same for W), then
    the convolution of the kernel as it is without padding. mxnet 1.9's ONNX exporter translates no
    negative step."""
    nodes = graph['nodes']

    def reversing(entry):
        node = nodes[entry[0]]
        return node['op'] == 'slice' and _steps(node) == '(1,1,-1,-1)'

    found = [(index, _restoring_slice(nodes, index, 'a reversed convolution')) for index, node in enumerate(nodes)
             if node['op'] == 'Convolution' and reversing(node['inputs'][0]) and reversing(node['inputs'][1])]
    if not found:
        return graph
    shapes = entry_shapes(graph, [nodes[nodes[conv]['inputs'][0][0]]['inputs'][0] for conv, _ in found],
                          input_shape)
    moved = {}
    for (conv, after), (_, _, height, width) in zip(found, shapes):
        node = nodes[conv]
        attrs = {name: node['attrs'].get(name, '').replace(' ', '') for name in ('kernel', 'stride', 'pad', 'dilate')}
        kernel = int(attrs['kernel'].strip('()').split(',')[0])
        if attrs != {'kernel': '(%d,%d)' % (kernel, kernel), 'stride': '(2,2)', 'pad': '(%d,%d)' % ((kernel // 2,) * 2),
                     'dilate': attrs['dilate'] if attrs['dilate'] in ('', '(1,1)') else None}:
            raise NotImplementedError('%s: a reversed convolution that is not SameStride2Conv2D\'s (%s)'
                                      % (node['name'], attrs))
        pads = []
        for size in (height, width):
            total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        padding = nodes[node['inputs'][0][0]]
        padding.update(op='Pad', attrs={'mode': 'constant', 'constant_value': '0',
                                        'pad_width': str((0, 0, 0, 0) + tuple(pads))})
        node['inputs'][1] = nodes[node['inputs'][1][0]]['inputs'][0]  # the kernel as it is
        node['attrs'] = dict(node['attrs'], pad='(0, 0)')
        moved[after] = conv
    return _bypass(graph, moved)  # whatever read the restoring slice reads the convolution


def fixed_size_graph(symbol, input_shape):
    """`symbol` with its size-taking operators replaced by fixed sizes for `input_shape` (NCHW).

    `BilinearResize2D(x, like=y, mode='like')` -> `BilinearResize2D(x, height=, width=)` with y's
    height and width; `broadcast_like(x, y)` of a 1 x 1 map -> `tile(x, reps=(1, 1, H, W))` with
    y's; TF 'SAME' subsampling (`fixed_size_subsampling`) -> one slice with step 2; TF 'SAME' stride-2
    convolutions on reversed inputs (`fixed_size_reversed_convolutions`) -> padding + convolution. No replacement
    depends on the batch size; every other node is kept as it is.
    """
    graph = json.loads(symbol.tojson())
    graph = fixed_size_subsampling(fixed_size_reversed_convolutions(graph, input_shape), input_shape)
    resizes = [node for node in graph['nodes'] if node['op'] == '_contrib_BilinearResize2D'
               and node.get('attrs', {}).get('mode') == 'like']
    broadcasts = [node for node in graph['nodes'] if node['op'] == 'broadcast_like']
    for node in broadcasts:
        axes = [node.get('attrs', {}).get(name, '').replace(' ', '') for name in ('lhs_axes', 'rhs_axes')]
        if axes != ['(2,3)', '(2,3)']:
            raise NotImplementedError('%s: broadcast_like over axes %s; only height and width (2, 3) are '
                                      'exported' % (node['name'], axes))
    changed = resizes + broadcasts
    if not changed:
        return mx.sym.load_json(json.dumps(graph))
    shapes = entry_shapes(graph, [node['inputs'][1] for node in changed]
                          + [node['inputs'][0] for node in broadcasts], input_shape)
    for node, pooled_shape in zip(broadcasts, shapes[len(changed):]):
        if pooled_shape[2:] != (1, 1):
            raise NotImplementedError('%s: broadcast_like of a %s map; only 1 x 1 maps are exported'
                                      % (node['name'], pooled_shape))
    for node, (_, _, height, width) in zip(changed, shapes):
        if node['op'] == 'broadcast_like':
            node.update(op='tile', attrs={'reps': str((1, 1, height, width))})
        else:
            node['attrs'] = dict(node['attrs'], mode='size', height=str(height), width=str(width))
        node['inputs'] = node['inputs'][:1]
    return mx.sym.load_json(json.dumps(graph))


def mx2onnx_model(symbol, weights, input_shape):
    """ONNX ModelProto of `symbol` with `weights` ({name: NDArray}), input N x C x H x W, N free.

    Works around five defects of mx2onnx (mxnet 1.9.1), all in this one function:
    - it exports every BilinearResize2D as an ONNX Resize with corners aligned, also those with
      align_corners=False (torchvision's networks): theirs get 'pytorch_half_pixel', MXNet's and
      PyTorch's rule (src = (dst + 0.5) / scale - 0.5, clamped at 0; a length-1 output takes index 0);
    - handed the weights, it converts each to a Python list of floats (about 10 s and 1 GB for this
      network), so it is handed none: the weights are declared inputs, and are attached here as
      initializers from their raw bytes;
    - it lists its own constants (initializers) as graph inputs too, which makes ONNX runtimes treat
      them as overridable inputs (onnxruntime then folds no batch norm into its convolution), so
      every initializer is removed from the inputs;
    - with `dynamic=True` it leaves the free batch axis unnamed and declares every output axis
      unknown, so the batch axis is named 'N' and the output is declared N x C x H x W;
    - it declares the newest opset of the installed onnx (19 with onnx 1.14), although its operator
      translations are those of opsets 12 and 13, which shuts out older runtimes; the model is
      declared opset 13 with the oldest IR version that allows it (the checker verifies both).
    """
    import onnx
    from mxnet.onnx import export_model
    from onnx import numpy_helper
    names = symbol.list_inputs()  # mx2onnx pairs in_shapes with this order
    shapes = [tuple(input_shape) if name == INPUT_NAME else weights[name].shape for name in names]
    free_batch = [(None,) + shape[1:] if name == INPUT_NAME else shape for name, shape in zip(names, shapes)]
    with tempfile.TemporaryDirectory(prefix='deeplab-export.') as workdir:
        path = export_model(symbol, {}, in_shapes=shapes, in_types=[np.float32] * len(names),
                            onnx_file_path=os.path.join(workdir, 'model.onnx'), dynamic=True,
                            dynamic_input_shapes=free_batch)
        model = onnx.load(path)
    unaligned = {node['name'] for node in json.loads(symbol.tojson())['nodes']
                 if node['op'] == '_contrib_BilinearResize2D'
                 and node.get('attrs', {}).get('align_corners', 'True').lower() in ('false', '0')}
    for node in model.graph.node:
        if node.op_type == 'Resize' and node.name in unaligned:
            for attribute in node.attribute:
                if attribute.name == 'coordinate_transformation_mode':
                    attribute.s = b'pytorch_half_pixel'
    model.graph.initializer.extend(numpy_helper.from_array(weights[name].asnumpy(), name)
                                   for name in names if name != INPUT_NAME)
    constants = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in constants]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    output_shape = symbol.infer_shape(**{INPUT_NAME: tuple(input_shape)})[1][0]
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    for value, known in ((graph_input, input_shape), (graph_output, output_shape)):
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = 'N'
        for dim, size in zip(dims[1:], known[1:]):
            dim.dim_value = size
    del model.opset_import[:]
    model.opset_import.extend([onnx.helper.make_opsetid('', ONNX_OPSET)])
    model.ir_version = onnx.helper.find_min_ir_version_for(model.opset_import)
    onnx.checker.check_model(model, full_check=True)
    return model


# --- writing and checking --------------------------------------------------------------------------
def relative_difference(result, reference):
    """max |result - reference| / max |reference| (numpy arrays of the same shape)."""
    return float(np.abs(result - reference).max() / max(np.abs(reference).max(), 1e-30))


def checked(run_exported, net, check_input):
    """Relative difference of `run_exported(x)` from the Gluon `net(x)` on `check_input` (NCHW numpy).

    ExportError if it exceeds CHECK_TOLERANCE. None when there is no `check_input`.
    """
    if check_input is None:
        return None
    difference = relative_difference(run_exported(check_input), net(mx.nd.array(check_input)).asnumpy())
    if not difference <= CHECK_TOLERANCE:
        raise ExportError('the exported model differs from the Gluon model by %.2g of max |logit| '
                          '(more than %g); nothing was written' % (difference, CHECK_TOLERANCE))
    return difference


def export_symbol(net, prefix, check_input=None):
    """Write PREFIX-symbol.json and PREFIX-0000.params: the Gluon graph for MXNet, any input size.

    Load them with `mx.gluon.SymbolBlock.imports(json, ['data'], params)`. With `check_input`
    (N x 3 x H x W float32, 0-255) the written pair is first run against `net` (see `checked`).
    Returns ([json path, params path], relative difference or None).
    """
    symbol, args, aux = traced_symbol(net)
    arrays = {'arg:%s' % name: value for name, value in args.items()}
    arrays.update({'aux:%s' % name: value for name, value in aux.items()})
    paths = symbol_files(prefix)
    with atomic_path(paths[0]) as json_temporary, atomic_path(paths[1]) as params_temporary:
        symbol.save(json_temporary)
        mx.nd.save(params_temporary, arrays)
        difference = checked(lambda x: symbol_logits(json_temporary, params_temporary, x), net, check_input)
    return paths, difference


def export_onnx(net, path, size, check_input=None):
    """Write the network as ONNX for inputs N x 3 x H x W, `size` = (H, W), N free (any batch).

    With `check_input` (N x 3 x H x W float32, 0-255) the written file is first run in onnxruntime
    against `net` (see `checked`). Returns (path, relative difference or None).
    """
    symbol, args, aux = traced_symbol(net)
    input_shape = (1, 3) + tuple(size)
    model = mx2onnx_model(fixed_size_graph(symbol, input_shape), dict(args, **aux), input_shape)
    with atomic_path(path) as temporary:
        with open(temporary, 'wb') as stream:
            stream.write(model.SerializeToString())
        difference = checked(lambda x: onnxruntime_logits(temporary, x), net, check_input)
    return path, difference


def symbol_logits(json_path, params_path, x):
    """Logits of an exported symbol + params pair for `x` (N x 3 x H x W float32, 0-255), in MXNet."""
    with warnings.catch_warnings():  # imports warns that it cannot tell the type of `data`: float32
        warnings.simplefilter('ignore', UserWarning)
        block = mx.gluon.SymbolBlock.imports(json_path, [INPUT_NAME], params_path)
    return block(mx.nd.array(x)).asnumpy()


def onnxruntime_session(path, threads=None):
    """An onnxruntime CPU session of the ONNX file `path`; `threads`: its intra-op threads (default all)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(os.fspath(path), options, providers=['CPUExecutionProvider'])


def onnxruntime_logits(path, x, threads=None):
    """Logits of the ONNX file `path` for `x` (N x 3 x H x W float32, 0-255), on onnxruntime's CPU."""
    session = onnxruntime_session(path, threads)
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, np.float32)})[0]
