"""The REST API's backend in `tfrec serve`: the ModelStore of the same process (rest.Backend)."""

from tfrec.serving.batching import Batcher
from tfrec.serving.model_store import ModelStore
from tfrec.serving.monitoring import Monitor
from tfrec.serving.predict_service import (
    SIGNATURE_DEF_FIELD,
    find_signature,
    model_metadata,
    model_status,
    predict_on,
    resolve,
)


class StoreBackend:
    """Answers REST calls with predict_service's functions, as gRPC calls are answered, and
    records them with `monitor` under api="rest"."""

    def __init__(self, store: ModelStore, monitor: Monitor, max_batch: int, max_bytes: int,
                 batcher: Batcher | None = None):
        self._store, self._monitor, self._batcher = store, monitor, batcher
        self._max_batch, self._max_bytes = max_batch, max_bytes
        self.name = store.name

    def input_dtypes(self, spec, signature_name: str, seen: dict) -> dict[str, int]:
        seen["servable"] = servable = resolve(self._store, spec)  # predict runs on this one
        signature = find_signature(servable, signature_name, self.name)
        return {name: input_spec.dtype for name, input_spec in signature.inputs.items()}

    def predict(self, request, seen: dict):
        return predict_on(seen["servable"], request, self._max_batch, self.name,
                          self._max_bytes, self._batcher)

    def metadata(self, spec, seen: dict):
        return model_metadata(self._store, spec, [SIGNATURE_DEF_FIELD])

    def status(self, spec, seen: dict):
        return model_status(self._store, spec)

    def versions(self) -> list[int]:
        return self._store.versions

    def metrics(self) -> bytes:
        return self._monitor.exposition()

    def record(self, seen: dict, code: str, started: float) -> None:
        self._monitor.record("rest", seen["method"], seen["model"], seen.get("signature", ""),
                             code, started, seen["peer"])
