"""A TF Serving gRPC client (standard protos only: works against `tfrec serve` and TF Serving)."""

import dataclasses

import grpc
import numpy as np

from tfrec.errors import TfrecError
from tfrec.tf_setup import import_tf

import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import

from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfrec.serving import tensors  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    title: str


class _Recommender:
    """`recommend` on top of a subclass's `predict(model, inputs, signature)`."""

    def predict(self, model: str, inputs: dict, signature: str = "serving_default",
                version: int | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def recommend(self, model: str, user: str | None = None, history: list[str] | None = None,
                  k: int = 10) -> list[Recommendation]:
        """Top-k for a known user (serving_default) or an item-id history (history), best first.

        Places the model leaves empty (item id "", score -inf: fewer than k items left after
        excluding the seen ones) are dropped.
        """
        if (user is None) == (history is None):
            raise TfrecError("give either a user id or a history of item ids.")
        if user is not None:
            inputs = {"user_id": np.array([user.encode()], dtype=object)}
            signature = "serving_default"
        else:
            inputs = {"history": np.array([[h.encode() for h in history]], dtype=object)}
            signature = "history"
        inputs["k"] = np.array(k, dtype=np.int32)
        outputs = self.predict(model, inputs, signature)
        titles = outputs.get("titles", np.full_like(outputs["item_ids"], b""))
        return [
            Recommendation(item.decode(), float(score), title.decode())
            for item, score, title in zip(outputs["item_ids"][0], outputs["scores"][0], titles[0])
            if item
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ServingClient(_Recommender):
    """Blocking calls to one server; gRPC failures become one-sentence TfrecErrors."""

    def __init__(self, address: str, timeout: float = 10.0, max_message_mb: int = 16):
        self.address, self.timeout = address, timeout
        limit = max_message_mb * 1024 * 1024
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    # === Raw RPCs ===

    def predict(self, model: str, inputs: dict, signature: str = "serving_default",
                version: int | None = None) -> dict[str, np.ndarray]:
        """Predict with numpy `inputs`; returns {output name: ndarray} (strings as bytes)."""
        request = predict_pb2.PredictRequest()
        _spec(request.model_spec, model, version)
        request.model_spec.signature_name = signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tensors.to_proto(np.asarray(value)))
        response = self._call(self._predict.Predict, request, model)
        return {name: tensors.to_numpy(proto) for name, proto in response.outputs.items()}

    def metadata(self, model: str, version: int | None = None):
        """GetModelMetadata: (served version, SignatureDefMap)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _spec(request.model_spec, model, version)
        response = self._call(self._predict.GetModelMetadata, request, model)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        return response.model_spec.version.value, signature_defs

    def status(self, model: str, version: int | None = None):
        """GetModelStatus: the list of ModelVersionStatus."""
        request = get_model_status_pb2.GetModelStatusRequest()
        _spec(request.model_spec, model, version)
        return list(self._call(self._models.GetModelStatus, request, model).model_version_status)

    def _call(self, method, request, model: str):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise TfrecError(_describe(e, self.address, model, self.timeout)) from None


def _spec(spec, model: str, version: int | None) -> None:
    spec.name = model
    if version is not None:
        spec.version.value = version


def _describe(error: grpc.RpcError, address: str, model: str, timeout: float) -> str:
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"no model server reachable at {address}: is `tfrec serve` running there?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"model server {address} did not answer within {timeout:g} s."
    return f"model server {address} answered {code.name} for model '{model}': {error.details()}"


class RestClient(_Recommender):
    """Predict over TF Serving's REST API (columnar JSON); failures become one sentence."""

    def __init__(self, address: str, timeout: float = 10.0):
        import requests

        self.address, self.timeout = address, timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def predict(self, model: str, inputs: dict, signature: str = "serving_default",
                version: int | None = None) -> dict[str, np.ndarray]:
        """POST /v1/models/MODEL[/versions/N]:predict; returns {output: ndarray} (strings as
        bytes, as the gRPC client)."""
        import requests

        path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
        body = {"signature_name": signature, "inputs": {
            name: _jsonable(np.asarray(value)) for name, value in inputs.items()}}
        url = f"http://{self.address}{path}:predict"
        try:
            answer = self._session.post(url, json=body, timeout=self.timeout)
        except requests.ConnectionError:
            raise TfrecError(f"no REST model server reachable at {self.address}: is `tfrec "
                             "serve --rest-port` running there?") from None
        except requests.Timeout:
            raise TfrecError(f"model server {self.address} did not answer within "
                             f"{self.timeout:g} s.") from None
        try:
            payload = answer.json()
        except ValueError:
            payload = {"error": answer.text.strip()[:200]}
        if answer.status_code != 200:
            raise TfrecError(f"model server {self.address} answered HTTP {answer.status_code} "
                             f"for model '{model}': {payload.get('error', payload)}")
        outputs = payload["outputs"]
        return {name: _from_json(value) for name, value in outputs.items()}


def _jsonable(array: np.ndarray):
    if array.dtype.kind in "OS":
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array).tolist()
    return array.tolist()


def _from_json(value) -> np.ndarray:
    array = np.array(value)
    if array.dtype.kind == "U":
        return np.vectorize(lambda t: t.encode("utf-8"), otypes=[object])(array)
    return array
