"""TF Serving's PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus).

Status codes (TF Serving's where it has one):
  NOT_FOUND         unknown model name; a version that is not served (see --num-versions).
  INVALID_ARGUMENT  unknown signature (TF Serving says FAILED_PRECONDITION; we treat it as the
                    bad request it is), unknown version label, missing / extra / mistyped /
                    misshapen input, empty batch, batch above --max-batch, unknown output_filter
                    name; unknown id, k out of range (checked before the graph for a tfrec
                    model, see contract_checks), InvalidArgumentError raised in the graph.
  RESOURCE_EXHAUSTED a request above the gRPC message size limit (raised by gRPC itself), or
                    one whose answer (rows x k results) could exceed it: refused before
                    computing.
  UNIMPLEMENTED     Classify, Regress, MultiInference, HandleReloadConfigRequest.
Other tf.errors keep their code (TF and gRPC share the numbering); anything else is INTERNAL.
"""

import logging
import math
import re
import time
from typing import NoReturn

import grpc

from tfrec.serving.errors import RequestError, invalid, not_found
from tfrec.tf_setup import import_tf

tf = import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import

from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from tfrec.serving import batching, tensors  # noqa: E402
from tfrec.serving.batching import Batcher  # noqa: E402
from tfrec.serving.model_store import ModelStore, Servable, Signature  # noqa: E402
from tfrec.serving.monitoring import Monitor  # noqa: E402
from tfrec.serving.protos import DEFAULT_SIGNATURE, SIGNATURE_DEF_FIELD  # noqa: E402

log = logging.getLogger("tfrec.serving")

MAX_ELEMENTS = 1 << 24  # per input tensor: a shape may not claim more values than this
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


# === Predict ===


def resolve(store: ModelStore, spec) -> Servable:
    """The servable a ModelSpec asks for (name, then version or label; latest if neither)."""
    if spec.name != store.name:
        raise not_found(f"model '{spec.name}' is not served here (this server serves "
                        f"'{store.name}')")
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return store.get(spec.version.value)
    if choice == "version_label":
        raise invalid(f"Unrecognized servable version label: {spec.version_label} (tfrec serve "
                      "has no version labels; give a version number or none for the latest)")
    return store.get()


def predict_on(servable: Servable, request: predict_pb2.PredictRequest, max_batch: int,
               model_name: str, max_answer_bytes: int | None = None,
               batcher: Batcher | None = None) -> predict_pb2.PredictResponse:
    """Runs one PredictRequest on `servable` (merged with concurrent ones by `batcher`, if
    given); RequestError for a bad request, raised before any computing for an answer that
    could exceed `max_answer_bytes` (the send limit)."""
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = find_signature(servable, signature_name, model_name)
    feeds = _feeds(signature, request.inputs, max_batch)
    if servable.checks is not None:  # refused before TF (see contract_checks)
        servable.checks.check(feeds)
    if max_answer_bytes is not None:
        _check_answer_size(servable, signature, feeds, max_answer_bytes)
    names = _output_names(signature, request.output_filter)
    try:
        outputs = batcher.run(signature, feeds) if batcher else batching.call(signature, feeds)
    except tf.errors.OpError as e:
        raise RequestError(_GRPC_CODES.get(e.error_code, grpc.StatusCode.INTERNAL),
                           graph_message(e.message)) from e
    response = predict_pb2.PredictResponse()
    response.model_spec.name = model_name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for name in names:
        tensors.fill(response.outputs[name], outputs[name])
    return response


def find_signature(servable: Servable, name: str, model_name: str) -> Signature:
    signature = servable.signatures.get(name)
    if signature is None:
        raise invalid(f"signature '{name}' not found in model '{model_name}' version "
                      f"{servable.version}; it has: {', '.join(sorted(servable.signatures))}")
    return signature


def _feeds(signature: Signature, inputs, max_batch: int) -> dict:
    """Checks the request's inputs against the signature; returns {name: ndarray}."""
    expected = signature.inputs
    if len(inputs) != len(expected) or any(name not in expected for name in inputs):
        missing = sorted(set(expected) - set(inputs))
        extra = sorted(set(inputs) - set(expected))
        problems = [f"missing input '{n}'" for n in missing] + [
            f"unexpected input '{n}'" for n in extra]
        raise invalid(f"signature '{signature.name}' takes inputs "
                      f"{', '.join(sorted(expected))}: {'; '.join(problems)}")
    feeds, batch, batch_input = {}, None, None
    for name, spec in expected.items():
        proto = inputs[name]
        if proto.dtype != spec.dtype:
            raise invalid(f"input '{name}' must be {spec.dtype_name}, got "
                          f"{_dtype_name(proto.dtype)}")
        declared = [d.size for d in proto.tensor_shape.dim]
        if spec.batched and declared and declared[0] > max_batch:
            _too_many_rows(declared[0], max_batch)
        if math.prod(declared) > MAX_ELEMENTS or min(declared, default=0) < 0:
            raise invalid(f"input '{name}' declares shape {_shape(declared)}, which is negative "
                          f"or above {MAX_ELEMENTS} values")
        try:
            array = tensors.to_numpy(proto)
        except Exception as e:
            raise invalid(f"input '{name}' is not a valid tensor: {e}") from e
        if spec.shape is not None and (
            array.ndim != len(spec.shape)
            or any(want not in (-1, got) for want, got in zip(spec.shape, array.shape))
        ):
            raise invalid(f"input '{name}' must have shape {_shape(spec.shape)}, got "
                          f"{_shape(array.shape)}")
        if spec.batched:
            if batch is None:
                batch, batch_input = array.shape[0], name
            elif array.shape[0] != batch:
                raise invalid(f"inputs '{batch_input}' and '{name}' have different batch sizes "
                              f"({batch} and {array.shape[0]})")
        feeds[name] = array
    if batch == 0:
        raise invalid(f"empty batch: input '{batch_input}' has 0 rows")
    if batch is not None and batch > max_batch:
        _too_many_rows(batch, max_batch)
    return feeds


def _check_answer_size(servable: Servable, signature: Signature, feeds: dict,
                       limit: int) -> None:
    """RESOURCE_EXHAUSTED (gRPC's code for an oversized message) when rows x k results could
    exceed `limit` bytes; k out of range is left to the graph's own message."""
    k = feeds.get("k")
    if k is None or not servable.bytes_per_result or k.size == 0:
        return
    rows = next((feeds[n].shape[0] for n, spec in signature.inputs.items() if spec.batched), 1)
    k_max = min(max(int(k.max()), 1), servable.num_items)
    size = rows * k_max * servable.bytes_per_result
    if size > limit:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"the answer to {rows} rows x k={k_max} could take {size / 2**20:.1f} "
                           f"MB, above this server's message limit of {limit / 2**20:g} MB "
                           "(tfrec serve --max-message-mb): ask for fewer rows or a smaller k")


def _too_many_rows(rows: int, max_batch: int) -> NoReturn:
    raise invalid(f"batch of {rows} rows is above this server's limit of {max_batch} "
                  "(tfrec serve --max-batch)")


def _output_names(signature: Signature, output_filter) -> tuple[str, ...]:
    if not output_filter:
        return signature.outputs
    unknown = [n for n in output_filter if n not in signature.outputs]
    if unknown:
        raise invalid(f"output_filter names '{unknown[0]}', which signature '{signature.name}' "
                      f"does not output (it has: {', '.join(signature.outputs)})")
    return tuple(dict.fromkeys(output_filter))


def graph_message(message: str) -> str:
    """The first meaningful line of a TF runtime error: no 'Graph execution error', stack or op."""
    first = ""
    for line in message.splitlines():
        text = line.strip()
        if (not text or line[0] in " \t" or text == "Graph execution error:"
                or text.startswith(("Detected at node", "<stack traces"))):
            continue
        first = text
        break
    first = re.sub(r"\s*\[Op:[^\]]*\]$", "", first or message.strip())
    asserted = re.fullmatch(r"assertion failed: \[(.*)\]", first)
    if asserted and "] [" not in asserted.group(1):
        first = asserted.group(1).replace("\\'", "'").replace('\\"', '"')
    return first


def _dtype_name(dtype: int) -> str:
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType {dtype}"


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d == -1 else str(d) for d in shape) + "]"


# === Warm-up ===


def warm_up(servable: Servable, max_batch: int) -> int:
    """Replays the Predict records of assets.extra/tf_serving_warmup_requests; returns how many.

    Any failure raises, so a version whose warm-up fails is not swapped in (as in TF Serving).
    """
    path = servable.path / "assets.extra" / "tf_serving_warmup_requests"
    if not path.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        if entry.WhichOneof("log_type") == "predict_log":
            try:
                predict_on(servable, entry.predict_log.request, max_batch, "warm-up")
            except RequestError as e:
                raise ValueError(f"warm-up request {count + 1} failed: {e}") from e
            count += 1
    return count


# === Metadata and status (shared by the gRPC and REST front ends) ===


def model_metadata(store: ModelStore, spec, fields) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata for `spec` asking for `fields` (only 'signature_def' exists)."""
    servable = resolve(store, spec)
    fields = list(fields)
    if not fields:
        raise invalid("GetModelMetadataRequest must name a metadata_field "
                      f"('{SIGNATURE_DEF_FIELD}')")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid(f"metadata field '{field}' is not supported; only "
                          f"'{SIGNATURE_DEF_FIELD}' is")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = store.name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_defs)
    return response


def model_status(store: ModelStore, spec) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus: the versions seen (newest first), or only spec.version if it has one."""
    if spec.name != store.name:
        raise not_found(f"model '{spec.name}' is not served here (this server serves "
                        f"'{store.name}')")
    if spec.WhichOneof("version_choice") == "version_label":
        raise invalid(f"Unrecognized servable version label: {spec.version_label}")
    version = spec.version.value if spec.HasField("version") else None
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in store.statuses(version):
        entry = response.model_version_status.add(version=status.version, state=status.state)
        entry.status.SetInParent()  # error_code OK, as TF Serving reports it
        if status.error:
            entry.status.error_code = 2  # tensorflow.error.Code UNKNOWN
            entry.status.error_message = status.error
    return response


# === Servicers ===


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata on the model of `store`; the other RPCs are UNIMPLEMENTED."""

    def __init__(self, store: ModelStore, max_batch: int, max_answer_bytes: int | None = None,
                 monitor: Monitor | None = None, batcher: Batcher | None = None):
        self._store, self._max_batch = store, max_batch
        self._max_answer_bytes = max_answer_bytes
        self._monitor, self._batcher = monitor, batcher

    def Predict(self, request, context):
        started, code = time.perf_counter(), "OK"
        try:
            servable = resolve(self._store, request.model_spec)
            return predict_on(servable, request, self._max_batch, self._store.name,
                              self._max_answer_bytes, self._batcher)
        except RequestError as e:
            code = e.code.name
            context.abort(e.code, str(e))
        except Exception as e:  # a bug: keep serving, tell the client
            code = "INTERNAL"
            log.exception("Predict failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        finally:
            if self._monitor is not None:
                self._monitor.record("grpc", "Predict", request.model_spec.name,
                                     request.model_spec.signature_name or DEFAULT_SIGNATURE,
                                     code, started, _peer(self._monitor, context))

    def GetModelMetadata(self, request, context):
        return _answer(self._monitor, context, "GetModelMetadata", request.model_spec.name,
                       model_metadata, self._store, request.model_spec, request.metadata_field)

    def Classify(self, request, context):
        _unimplemented(context, "Classify")

    def Regress(self, request, context):
        _unimplemented(context, "Regress")

    def MultiInference(self, request, context):
        _unimplemented(context, "MultiInference")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (versions seen, newest first); HandleReloadConfigRequest is UNIMPLEMENTED."""

    def __init__(self, store: ModelStore, monitor: Monitor | None = None):
        self._store, self._monitor = store, monitor

    def GetModelStatus(self, request, context):
        return _answer(self._monitor, context, "GetModelStatus", request.model_spec.name,
                       model_status, self._store, request.model_spec)

    def HandleReloadConfigRequest(self, request, context):
        _unimplemented(context, "HandleReloadConfigRequest")


def _answer(monitor, context, method: str, model: str, handler, *args):
    """handler(*args), a RequestError aborting the call with its code; recorded by `monitor`."""
    started, code = time.perf_counter(), "OK"
    try:
        return handler(*args)
    except RequestError as e:
        code = e.code.name
        context.abort(e.code, str(e))
    finally:
        if monitor is not None:
            monitor.record("grpc", method, model, "", code, started, _peer(monitor, context))


def _peer(monitor: Monitor, context) -> str:
    """The caller's address for the access log (asking gRPC for it costs ~5% of a Predict)."""
    return context.peer() if monitor.log_access else ""


def _unimplemented(context, method: str) -> None:
    context.abort(grpc.StatusCode.UNIMPLEMENTED,
                  f"{method} is not implemented by tfrec serve; use Predict")
