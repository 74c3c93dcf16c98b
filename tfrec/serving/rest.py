"""TF Serving's REST API (a WSGI app served by waitress) in front of a backend that answers
its calls: `tfrec serve --rest-port` (the model store of the same process, rest_store) or
`tfrec serve --native --rest-port` (tfrec-native-serve over gRPC, native_backend).

Routes (TF Serving's, plus health):
  POST /v1/models/NAME[/versions/N]:predict   {"signature_name"?, "instances": [...]} (row format)
                                              or {"signature_name"?, "inputs": ...} (columnar)
  GET  /v1/models/NAME[/versions/N]           GetModelStatus as JSON
  GET  /v1/models/NAME[/versions/N]/metadata  {"model_spec", "metadata": {"signature_def"}}
  GET  /monitoring/prometheus/metrics         Prometheus text format (see monitoring)
  GET  /healthz                               200 while a version is served, else 503

A predict body becomes a PredictRequest (rest_json) that the backend answers as it answers
gRPC, so both APIs give the same answers and the same errors. Errors answer {"error": "..."}
with TF Serving's HTTP code for the status (400 bad request, 404 not found, 429 resource
exhausted, 501 unimplemented, 500 internal). Nothing here loads TensorFlow.
"""

import json
import logging
import re
import socket
import threading
import time
from typing import Protocol

import grpc
from waitress.server import create_server
from werkzeug.wrappers import Request, Response

from tfrec.serving import tensors
from tfrec.serving.errors import RequestError, invalid
from tfrec.serving.monitoring import CONTENT_TYPE_LATEST
from tfrec.serving.protos import (
    DEFAULT_SIGNATURE,
    SIGNATURE_DEF_FIELD,
    get_model_metadata_pb2,
    model_pb2,
)
from tfrec.serving.rest_json import message_dict, named_inputs, predict_request, predictions

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


class Backend(Protocol):
    """What RestApp asks of the server behind it. `seen` is one REST call's record: "peer" (the
    client's address), then "method", "model" and "signature" as routing learns them; a
    backend may keep its own notes there. Bad requests raise RequestError."""

    name: str  # the served model's name

    def input_dtypes(self, spec, signature_name: str, seen: dict) -> dict[str, int]:
        """{input name: DataType} of the signature `spec` (a ModelSpec) resolves to."""

    def predict(self, request, seen: dict):
        """The PredictResponse to a PredictRequest."""

    def metadata(self, spec, seen: dict):
        """GetModelMetadataResponse with the signature_def field."""

    def status(self, spec, seen: dict):
        """GetModelStatusResponse."""

    def versions(self) -> list[int]:
        """The served versions, newest first."""

    def metrics(self) -> bytes:
        """The Prometheus exposition."""

    def record(self, seen: dict, code: str, started: float) -> None:
        """Counts (and logs) one answered REST call; `started` is its time.perf_counter()."""


class RestApp:
    """The WSGI application: routes a request, answers JSON, has `backend` record it."""

    def __init__(self, backend: Backend, max_bytes: int):
        self._backend, self._max_bytes = backend, max_bytes

    def __call__(self, environ, start_response):
        request = Request(environ)
        started = time.perf_counter()
        seen = {"peer": request.remote_addr or ""}  # and what _route learns (metrics, log)
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
        if "method" in seen:
            self._backend.record(seen, code, started)
        return response(environ, start_response)

    def _route(self, request: Request, seen: dict) -> Response:
        path, backend = request.path, self._backend
        if path == METRICS_PATH and request.method == "GET":
            return Response(backend.metrics(), content_type=CONTENT_TYPE_LATEST)
        if path == HEALTH_PATH and request.method == "GET":
            versions = backend.versions()
            if not versions:
                return error(503, f"model '{backend.name}' has no version to serve")
            return as_json({"status": "ok", "model": backend.name, "versions": versions})
        match = MODEL_PATH.fullmatch(path)
        verb = match and match["verb"]
        if match is None or verb not in (None, "predict", "classify", "regress"):
            return error(404, f"Malformed request: {request.method} {path}")
        spec = model_pb2.ModelSpec(name=match["name"])
        if match["version"] is not None:
            spec.version.value = int(match["version"])
        seen["model"] = spec.name
        if verb is not None:
            seen["method"] = verb
            if verb != "predict":
                raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"{verb} is not implemented by tfrec serve; use predict")
            seen["method"] = "Predict"
            if request.method != "POST":
                return error(405, f"{path} takes POST, not {request.method}")
            return self._predict(request, spec, seen)
        seen["method"] = "GetModelMetadata" if match["metadata"] else "GetModelStatus"
        if request.method != "GET":
            return error(405, f"{path} takes GET, not {request.method}")
        if match["metadata"]:
            response = backend.metadata(spec, seen)
            signature_defs = get_model_metadata_pb2.SignatureDefMap()
            response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
            return as_json({"model_spec": message_dict(response.model_spec),
                            "metadata": {SIGNATURE_DEF_FIELD: message_dict(signature_defs)}})
        return as_json(message_dict(backend.status(spec, seen)))

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
        dtypes = self._backend.input_dtypes(spec, signature_name, seen)
        named = named_inputs(body["instances" if rows else "inputs"], rows, sorted(dtypes))
        answer = self._backend.predict(predict_request(spec, signature_name, named, dtypes),
                                       seen)
        outputs = {name: tensors.to_numpy(proto) for name, proto in answer.outputs.items()}
        return as_json(predictions(outputs, rows))


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


# === Responses ===


def as_json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status,
                    content_type="application/json")


def error(status: int, message: str) -> Response:
    return as_json({"error": message}, status)
