"""The REST API's backend in `tfrec serve --native --rest-port`: tfrec-native-serve, asked over
a local gRPC channel (rest.Backend).

Each REST call becomes the gRPC call that answers it, with metadata "tfrec-api: rest" and the
REST client's address in "tfrec-peer", so that tfrec-native-serve counts and logs it under
api="rest" (its latency there is the server's part, without the JSON). A call refused here (a
body that is not JSON, a value of the wrong type, ...) is counted there by
/tfrec.native.Monitoring/Record. An unknown model, version or signature is sent on as a Predict
without inputs: the server refuses it in its own words and counts it.

JSON needs each signature's input dtypes: they are asked once per version (GetModelMetadata
tagged "tfrec-api: internal", not counted) and kept; the newest version's number is taken from
each answer, and forgotten after an error, so a hot swap is followed.
"""

import logging
import time

import grpc
from google.protobuf import wrappers_pb2
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tfrec.serving.errors import RequestError
from tfrec.serving.protos import (
    SIGNATURE_DEF_FIELD,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

log = logging.getLogger("tfrec.serving")

_PREDICTION = "/tensorflow.serving.PredictionService/"
_MONITORING = "/tfrec.native.Monitoring/"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_KEPT_VERSIONS = 16  # signature dtypes kept for this many versions


class NativeBackend:
    """REST calls answered by tfrec-native-serve at `target` (HOST:PORT) serving `name`."""

    def __init__(self, target: str, name: str, max_bytes: int, timeout: float = 60.0):
        self.name, self._timeout = name, timeout
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_bytes)])

        def method(path: str, answer):
            return self._channel.unary_unary(
                path, request_serializer=lambda m: m if isinstance(m, bytes) else
                m.SerializeToString(), response_deserializer=answer.FromString)

        self._predict = method(_PREDICTION + "Predict", predict_pb2.PredictResponse)
        self._metadata = method(_PREDICTION + "GetModelMetadata",
                                get_model_metadata_pb2.GetModelMetadataResponse)
        self._status = method("/tensorflow.serving.ModelService/GetModelStatus",
                              get_model_status_pb2.GetModelStatusResponse)
        self._metrics = method(_MONITORING + "Metrics", wrappers_pb2.BytesValue)
        self._record = method(_MONITORING + "Record", wrappers_pb2.BytesValue)
        self._signatures: dict[int, dict[str, dict[str, int]]] = {}  # version -> dtypes
        self._latest: int | None = None  # the newest version, as last seen
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def close(self) -> None:
        self._channel.close()

    # === rest.Backend ===

    def input_dtypes(self, spec, signature_name: str, seen: dict) -> dict[str, int]:
        versioned = spec.HasField("version")
        signatures = None
        if spec.name == self.name:
            signatures = self._signatures.get(spec.version.value if versioned else self._latest)
            if signatures is None:
                signatures = self._look_up(spec.version.value if versioned else None)
        if signatures is None or signature_name not in signatures:
            refused = predict_pb2.PredictRequest(model_spec=spec)
            refused.model_spec.signature_name = signature_name
            self.predict(refused, seen)  # raises the server's RequestError
            raise RequestError(grpc.StatusCode.INTERNAL, f"tfrec-native-serve answered a "
                               f"Predict without inputs for signature '{signature_name}'")
        return signatures[signature_name]

    def predict(self, request, seen: dict):
        latest = not request.model_spec.HasField("version")
        try:
            response = self._call(self._predict, request, seen)
        except RequestError:
            if latest:
                self._latest = None  # perhaps a new version: ask again
            raise
        if latest:
            self._latest = response.model_spec.version.value
        return response

    def metadata(self, spec, seen: dict):
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=[SIGNATURE_DEF_FIELD])
        return self._call(self._metadata, request, seen)

    def status(self, spec, seen: dict):
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        return self._call(self._status, request, seen)

    def versions(self) -> list[int]:
        try:
            response = self._call(self._status, get_model_status_pb2.GetModelStatusRequest(
                model_spec=model_pb2.ModelSpec(name=self.name)), {}, "internal")
        except RequestError:
            return []
        return [s.version for s in response.model_version_status if s.state == AVAILABLE]

    def metrics(self) -> bytes:
        return generate_latest(self._registry)

    def record(self, seen: dict, code: str, started: float) -> None:
        if seen.get("forwarded"):
            return  # counted by the server
        labels = {"method": seen["method"], "model": seen["model"],
                  "signature": seen.get("signature", ""), "code": code,
                  "seconds": f"{time.perf_counter() - started:.6f}"}
        try:
            self._call(self._record, b"", seen, "rest",
                       [(f"tfrec-{key}", value) for key, value in labels.items()])
        except RequestError as e:
            log.warning("could not count a REST call at tfrec-native-serve: %s", e)

    # === prometheus_client collector: the server's metrics, as it exposes them ===

    def collect(self):
        text = self._call(self._metrics, b"", {}, "internal").value.decode()
        yield from text_string_to_metric_families(text)

    # === gRPC ===

    def _call(self, method, request, seen: dict, api: str = "rest", extra=()):
        """`method(request)` with the gateway's metadata; a gRPC error as a RequestError."""
        metadata = [("tfrec-api", api), ("tfrec-peer", seen.get("peer", "")), *extra]
        if api == "rest":
            seen["forwarded"] = True
        try:
            return method(request, timeout=self._timeout, metadata=metadata)
        except grpc.RpcError as e:
            raise RequestError(e.code(), e.details() or e.code().name) from None

    def _look_up(self, version: int | None) -> dict | None:
        """{signature: {input: dtype}} of `version` (None: the newest); None if not served."""
        spec = model_pb2.ModelSpec(name=self.name)
        if version is not None:
            spec.version.value = version
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=[SIGNATURE_DEF_FIELD])
        try:
            response = self._call(self._metadata, request, {}, "internal")
        except RequestError:
            return None
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(defs)
        signatures = {name: {key: info.dtype for key, info in signature.inputs.items()}
                      for name, signature in defs.signature_def.items()}
        served = response.model_spec.version.value
        if len(self._signatures) >= _KEPT_VERSIONS:
            self._signatures.pop(min(list(self._signatures)), None)
        self._signatures[served] = signatures
        if version is None:
            self._latest = served
        return signatures
