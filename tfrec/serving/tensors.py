"""TensorProto <-> numpy on the hot path: common dtypes handled directly, TF's converters else.

Strings go through `string_val` and numbers through `tensor_content` (raw little-endian bytes),
which is what `tf.make_tensor_proto` produces and what `tf.make_ndarray` reads, only without
their per-call checks. TensorFlow is imported only for the other cases (the REST gateway of
`tfrec serve --native` never meets them: tfrec-native-serve answers in these two forms).
"""

import functools

import numpy as np

from tfrec.serving.protos import tensor_pb2, types_pb2


_NUMPY = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
}
_PROTO = {np.dtype(v): k for k, v in _NUMPY.items()}


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The array a TensorProto holds (ValueError if its values do not fill its shape)."""
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == types_pb2.DT_STRING:
        values = proto.string_val
        size = int(np.prod(shape))
        if len(values) == size:
            array = np.empty(size, dtype=object)
            array[:] = list(values)
            return array.reshape(shape)
    elif proto.dtype in _NUMPY and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=_NUMPY[proto.dtype]).reshape(shape)
    return _tf().make_ndarray(proto)  # scalars in int_val, repeated-last-value fills, ...


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of `array` (strings as bytes, numbers as tensor_content)."""
    proto = tensor_pb2.TensorProto()
    fill(proto, array)
    return proto


def fill(proto: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Writes `array` into the empty `proto` in place (e.g. a response's output entry)."""
    kind = array.dtype.kind
    dtype = types_pb2.DT_STRING if kind in "OSU" else _PROTO.get(array.dtype)
    if dtype is None:
        proto.CopyFrom(_tf().make_tensor_proto(array))
        return
    proto.dtype = dtype
    dims = proto.tensor_shape.dim
    for n in array.shape:
        dims.add(size=n)
    if dtype == types_pb2.DT_STRING:  # TF string outputs are object arrays of bytes
        values = array.ravel().tolist()
        proto.string_val.extend([v.encode() for v in values] if kind == "U" else values)
    else:
        proto.tensor_content = np.ascontiguousarray(
            array, array.dtype.newbyteorder("<")).tobytes()


@functools.cache
def _tf():
    from tfrec.tf_setup import import_tf

    return import_tf()
