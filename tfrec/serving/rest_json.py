"""TF Serving's REST JSON <-> the PredictRequest / PredictResponse protos, for every backend of
the REST API (rest.RestApp): the in-process model store of `tfrec serve` and the gRPC server of
`tfrec serve --native`.

Row format (`instances`) stacks the instances along a new batch dimension (so a per-instance
`k` arrives as int32 [B], which the tfrec signatures accept) and answers {"predictions": [one
object per row]} (a bare value with a single output); columnar format (`inputs`) answers
{"outputs": {name: value}}. Strings are JSON strings (UTF-8) or {"b64": ...}. A value that does
not fit the signature's dtype, or a ragged list, is a RequestError in one sentence.
"""

import base64
import json

import numpy as np
from google.protobuf import json_format

from tfrec.serving import tensors
from tfrec.serving.errors import invalid
from tfrec.serving.protos import predict_pb2, types_pb2

_NUMBERS = {types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
            types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64}


def predict_request(spec, signature_name: str, named: dict,
                    dtypes: dict[str, int]) -> predict_pb2.PredictRequest:
    """The PredictRequest of a REST body's `named` inputs, converted to the signature's `dtypes`
    ({input name: DataType}); a name the signature does not take is sent empty, for the server
    to name it in its refusal."""
    request = predict_pb2.PredictRequest(model_spec=spec)
    request.model_spec.signature_name = signature_name
    for name, value in named.items():
        if name in dtypes:
            request.inputs[name].CopyFrom(tensors.to_proto(to_array(value, dtypes[name], name)))
        else:
            request.inputs[name].dtype = types_pb2.DT_STRING
    return request


def named_inputs(value, rows: bool, names: list[str]) -> dict:
    """{input name: nested lists}: a row-format `instances` list stacked per input, or the
    columnar `inputs` (an object, or a bare value for a single-input signature)."""
    if not rows:
        if isinstance(value, dict) and not _is_b64(value):
            return value
        if len(names) != 1:
            raise invalid(f"'inputs' must be an object naming the inputs {', '.join(names)}")
        return {names[0]: value}
    if not isinstance(value, list) or not value:
        raise invalid("'instances' must be a non-empty list")
    if not all(isinstance(row, dict) and not _is_b64(row) for row in value):
        if any(isinstance(row, dict) and not _is_b64(row) for row in value):
            raise invalid("'instances' mixes objects and bare values")
        if len(names) != 1:
            raise invalid(f"each instance must be an object naming the inputs "
                          f"{', '.join(names)}")
        return {names[0]: value}
    keys = set(value[0])
    for index, row in enumerate(value):
        if set(row) != keys:
            raise invalid(f"instance {index} has inputs {', '.join(sorted(row))}, instance 0 "
                          f"has {', '.join(sorted(keys))}: every instance must name the same")
    return {name: [row[name] for row in value] for name in keys}


def to_array(value, dtype: int, name: str) -> np.ndarray:
    """Nested JSON lists of one input -> an ndarray of the signature's dtype (one sentence on a
    ragged list or a value of the wrong kind)."""
    flat: list = []
    shape = _walk(value, flat, name)
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(flat), dtype=object)
        array[:] = [_string(v, name) for v in flat]
    elif dtype in _NUMBERS:
        integer = dtype in (types_pb2.DT_INT32, types_pb2.DT_INT64)
        for v in flat:
            if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
                kind = "an integer" if integer else "a number"
                raise invalid(f"input '{name}' must hold {kind} ({types_pb2.DataType.Name(dtype)})"
                              f", got {json.dumps(v)[:40]}")
        info = np.iinfo(_NUMBERS[dtype]) if integer else None
        if info is not None and flat and not info.min <= min(flat) <= max(flat) <= info.max:
            raise invalid(f"input '{name}' holds a value outside "
                          f"{types_pb2.DataType.Name(dtype)}")
        array = np.array(flat, dtype=_NUMBERS[dtype])
    else:
        raise invalid(f"input '{name}' is {types_pb2.DataType.Name(dtype)}, which tfrec serve's "
                      "REST API does not convert")
    return array.reshape(shape)


def _walk(value, flat: list, name: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        flat.append(value)
        return ()
    shapes = {_walk(v, flat, name) for v in value}
    if len(shapes) > 1:
        raise invalid(f"input '{name}' is a ragged list: its rows have different shapes")
    return (len(value),) + (shapes.pop() if shapes else ())


def _is_b64(value) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _string(value, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise invalid(f"input '{name}' has a 'b64' value that is not base64") from None
    raise invalid(f"input '{name}' must hold strings (or {{\"b64\": ...}}), got "
                  f"{json.dumps(value)[:40]}")


def predictions(outputs: dict[str, np.ndarray], rows: bool) -> dict:
    """TF Serving's answer: {"predictions": [row, ...]} or {"outputs": ...}."""
    values = {name: _jsonable(name, array) for name, array in sorted(outputs.items())}
    if not rows:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    batch = min(len(v) if isinstance(v, list) else 0 for v in values.values())
    return {"predictions": [{name: v[b] for name, v in values.items()} for b in range(batch)]}


def _jsonable(name: str, array: np.ndarray):
    if array.dtype == object:  # strings; outputs named *_bytes as base64, as TF Serving
        if name.endswith("_bytes"):
            convert = lambda b: {"b64": base64.b64encode(b).decode()}  # noqa: E731
        else:
            convert = lambda b: b.decode("utf-8", "replace")  # noqa: E731
        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else \
            array.tolist()
    return array.tolist()



def message_dict(message) -> dict:
    """A protobuf message as TF Serving's REST JSON (field names as in the .proto)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
