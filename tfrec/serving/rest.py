"""TF Serving's REST API for `tfrec serve --rest-port` (a WSGI app served by waitress).

Routes (TF Serving's, plus health):
  POST /v1/models/NAME[/versions/N]:predict   {"signature_name"?, "instances": [...]} (row format)
                                              or {"signature_name"?, "inputs": ...} (columnar)
  GET  /v1/models/NAME[/versions/N]           GetModelStatus as JSON
  GET  /v1/models/NAME[/versions/N]/metadata  {"model_spec", "metadata": {"signature_def"}}
  GET  /monitoring/prometheus/metrics         Prometheus text format (see monitoring)
  GET  /healthz                               200 while a version is served, else 503

A predict body becomes a PredictRequest and runs through the same `predict_on` as gRPC, so both
APIs give the same answers and the same errors. Row format stacks the instances along a new
batch dimension (so a per-instance `k` arrives as int32 [B], which the tfrec signatures accept)
and answers {"predictions": [one object per row]} (a bare value with a single output);
columnar answers {"outputs": {name: value}}. Strings are JSON strings (UTF-8) or {"b64": ...}.
Errors answer {"error": "..."} with TF Serving's HTTP code for the status (400 bad request,
404 not found, 429 resource exhausted, 501 unimplemented, 500 internal).
"""

import base64
import json
import logging
import re
import socket
import threading
import time

import grpc
import numpy as np
from google.protobuf import json_format
from waitress.server import create_server
from werkzeug.wrappers import Request, Response

from tfrec.serving.errors import RequestError, invalid
from tfrec.tf_setup import import_tf

import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import

from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2  # noqa: E402

from tfrec.serving import tensors  # noqa: E402
from tfrec.serving.batching import Batcher  # noqa: E402
from tfrec.serving.model_store import ModelStore  # noqa: E402
from tfrec.serving.monitoring import CONTENT_TYPE_LATEST, Monitor  # noqa: E402
from tfrec.serving.predict_service import (  # noqa: E402
    DEFAULT_SIGNATURE,
    SIGNATURE_DEF_FIELD,
    find_signature,
    model_metadata,
    model_status,
    predict_on,
    resolve,
)

log = logging.getLogger("tfrec.serving")

MODEL_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?"
    r"(?::(?P<verb>[a-zA-Z]+)|/(?P<metadata>metadata))?"
)
METRICS_PATH = "/monitoring/prometheus/metrics"
HEALTH_PATH = "/healthz"
# tensorflow_serving/model_servers/http_server.cc's mapping of status codes to HTTP.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409, "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501,
    "DEADLINE_EXCEEDED": 504, "UNAVAILABLE": 503, "CANCELLED": 499,
}
_NUMBERS = {types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
            types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64}


class RestApp:
    """The WSGI application: routes a request, answers JSON, records it with `monitor`."""

    def __init__(self, store: ModelStore, monitor: Monitor, max_batch: int, max_bytes: int,
                 batcher: Batcher | None = None):
        self._store, self._monitor, self._batcher = store, monitor, batcher
        self._max_batch, self._max_bytes = max_batch, max_bytes

    def __call__(self, environ, start_response):
        request = Request(environ)
        started = time.perf_counter()
        seen = {}  # what _route learnt: method, model, signature (for metrics and the log)
        code = "OK"
        try:
            response = self._route(request, seen)
        except RequestError as e:
            code = e.code.name
            response = error(HTTP_STATUS.get(code, 500), str(e))
        except Exception as e:  # a bug: keep serving, tell the client
            code = "INTERNAL"
            log.exception("REST %s %s failed", request.method, request.path)
            response = error(500, f"internal error: {type(e).__name__}: {e}")
        if seen:
            self._monitor.record("rest", seen["method"], seen["model"], seen.get("signature", ""),
                                 code, started, request.remote_addr or "")
        return response(environ, start_response)

    def _route(self, request: Request, seen: dict) -> Response:
        path = request.path
        if path == METRICS_PATH and request.method == "GET":
            return Response(self._monitor.exposition(), content_type=CONTENT_TYPE_LATEST)
        if path == HEALTH_PATH and request.method == "GET":
            versions = self._store.versions
            if not versions:
                return error(503, f"model '{self._store.name}' has no version to serve")
            return as_json({"status": "ok", "model": self._store.name, "versions": versions})
        match = MODEL_PATH.fullmatch(path)
        if match is None:
            return error(404, f"Malformed request: {request.method} {path}")
        spec = model_pb2.ModelSpec(name=match["name"])
        if match["version"] is not None:
            spec.version.value = int(match["version"])
        verb, seen["model"] = match["verb"], spec.name
        if verb is not None:
            seen["method"] = verb
            if verb in ("classify", "regress"):
                raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"{verb} is not implemented by tfrec serve; use predict")
            if verb != "predict":
                return error(404, f"Malformed request: {request.method} {path}")
            if request.method != "POST":
                return error(405, f"{path} takes POST, not {request.method}")
            seen["method"] = "Predict"
            return self._predict(request, spec, seen)
        seen["method"] = "GetModelMetadata" if match["metadata"] else "GetModelStatus"
        if request.method != "GET":
            return error(405, f"{path} takes GET, not {request.method}")
        if match["metadata"]:
            response = model_metadata(self._store, spec, [SIGNATURE_DEF_FIELD])
            signature_defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
            return as_json({"model_spec": _message(response.model_spec),
                            "metadata": {SIGNATURE_DEF_FIELD: _message(signature_defs)}})
        return as_json(_message(model_status(self._store, spec)))

    def _predict(self, request: Request, spec, seen: dict) -> Response:
        if (request.content_length or 0) > self._max_bytes:
            return error(413, f"request body of {request.content_length} bytes is above this "
                         f"server's limit of {self._max_bytes} (tfrec serve --max-message-mb)")
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object with 'instances' or 'inputs'")
        signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
        if not isinstance(signature_name, str):
            raise invalid("'signature_name' must be a string")
        seen["signature"] = signature_name
        rows = "instances" in body
        if rows == ("inputs" in body):
            raise invalid("the JSON body must have exactly one of 'instances' (row format) or "
                          "'inputs' (columnar format)")
        servable = resolve(self._store, spec)
        signature = find_signature(servable, signature_name, self._store.name)
        named = _named_inputs(body["instances" if rows else "inputs"], rows,
                              sorted(signature.inputs))
        grpc_request = predict_pb2.PredictRequest(model_spec=spec)
        grpc_request.model_spec.signature_name = signature_name
        for name, value in named.items():
            if name in signature.inputs:  # others: left empty, predict_on names them
                array = to_array(value, signature.inputs[name].dtype, name)
                grpc_request.inputs[name].CopyFrom(tensors.to_proto(array))
            else:
                grpc_request.inputs[name].dtype = types_pb2.DT_STRING
        answer = predict_on(servable, grpc_request, self._max_batch, self._store.name,
                            self._max_bytes, self._batcher)
        outputs = {name: tensors.to_numpy(proto) for name, proto in answer.outputs.items()}
        return as_json(_predictions(outputs, rows))


class RestServer:
    """waitress serving a RestApp on HOST:PORT in a background thread."""

    def __init__(self, app: RestApp, host: str, port: int, threads: int, max_bytes: int,
                 bound: socket.socket | None = None):
        """`bound`: a socket already bound to HOST:PORT (a worker sharing the port) to listen on
        instead of binding one."""
        # The app refuses bodies above max_bytes with a JSON 413; waitress stops reading at
        # twice that (its own plain-text 413) so a hostile body cannot fill the disk.
        where = dict(sockets=[bound]) if bound is not None else dict(host=host, port=port)
        self._server = create_server(app, threads=threads, max_request_body_size=2 * max_bytes,
                                     ident="tfrec", clear_untrusted_proxy_headers=True, **where)
        self.port = self._server.effective_port
        self._thread = threading.Thread(target=self._server.run, name="rest", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._server.close()
        self._server.task_dispatcher.shutdown()
        self._thread.join(timeout=10)


# === JSON <-> tensors ===


def _named_inputs(value, rows: bool, names: list[str]) -> dict:
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


def _predictions(outputs: dict[str, np.ndarray], rows: bool) -> dict:
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


# === Responses ===


def as_json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status,
                    content_type="application/json")


def error(status: int, message: str) -> Response:
    return as_json({"error": message}, status)


def _message(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
