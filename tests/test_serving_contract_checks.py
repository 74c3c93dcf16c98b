"""A tfrec model's bad requests are refused before TF, in the graph's own words."""

import dataclasses
import gc

import numpy as np
import pytest

from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving.errors import RequestError
from tfrec.serving.model_store import Servable
from tfrec.serving.predict_service import graph_message, predict_on
from tfrec.serving.tensors import to_proto
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import predict_pb2  # noqa: E402

tf = import_tf()

ids = lambda *values: np.array(values, dtype=object)  # noqa: E731
k = lambda *values: np.array(values[0] if len(values) == 1 else values, np.int32)  # noqa: E731

# 20 users u0..u19, 50 items i0..i49 (random_artifacts' ids).
BAD = {
    "unknown user": ("serving_default", dict(user_id=ids(b"u1", b"ghost"), k=k(3))),
    "k = 0": ("serving_default", dict(user_id=ids(b"u1"), k=k(0))),
    "k > items": ("serving_default", dict(user_id=ids(b"u1"), k=k(51))),
    "one k per row, one out of range": ("serving_default", dict(user_id=ids(b"u1", b"u2"),
                                                                k=k(3, -2))),
    "k neither scalar nor one per row": ("serving_default", dict(user_id=ids(b"u1", b"u2"),
                                                                 k=k(3, 3, 3))),
    "unknown item": ("similar_items", dict(item_id=ids(b"zz"), k=k(3))),
    "unknown history item after a pad": ("history", dict(history=np.array(
        [[b"i1", b"i2"], [b"", b"nope"]], dtype=object), k=k(3))),
    "history of pads only": ("history", dict(history=np.array([[b"i1", b""], [b"", b""]],
                                                              dtype=object), k=k(3))),
    "unknown candidate": ("score", dict(user_id=ids(b"u1"), item_ids=np.array(
        [[b"i1", b"i99"]], dtype=object))),
    "unknown user for score": ("score", dict(user_id=ids(b"u99"), item_ids=np.array(
        [[b"i1"]], dtype=object))),
}


@pytest.fixture(scope="module")
def servable(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "m"
    return Servable(export_model(random_artifacts(num_users=20, num_items=50, dim=8), base), 1)


def _request(signature: str, feeds: dict) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "m", signature
    for name, value in feeds.items():
        request.inputs[name].CopyFrom(to_proto(value))
    return request


def _counting(servable, monkeypatch) -> list:
    """Counts the calls of every signature of `servable` from now on."""
    calls = []
    for name, signature in servable.signatures.items():
        def fn(_fn=signature.fn, **feeds):
            calls.append(feeds)
            return _fn(**feeds)
        monkeypatch.setitem(servable.signatures, name, dataclasses.replace(signature, fn=fn))
    return calls


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_refused_in_the_graphs_words_without_calling_it(
        servable, monkeypatch, case):
    signature, feeds = BAD[case]
    with pytest.raises(tf.errors.InvalidArgumentError) as graph:
        servable._loaded.signatures[signature](**feeds)
    calls = _counting(servable, monkeypatch)
    with pytest.raises(RequestError) as refused:
        predict_on(servable, _request(signature, feeds), 64, "m")
    assert str(refused.value) == graph_message(graph.value.message)
    assert refused.value.code.name == "INVALID_ARGUMENT" and calls == []


def test_good_requests_pass_the_checks(servable, monkeypatch):
    calls = _counting(servable, monkeypatch)
    good = [("serving_default", dict(user_id=ids(b"u1", b"u19"), k=k(50))),
            ("serving_default", dict(user_id=ids(b"u1", b"u2"), k=k(1, 2))),
            ("history", dict(history=np.array([[b"i1", b""], [b"", b"i49"]], dtype=object),
                             k=k(2))),
            ("score", dict(user_id=ids(b"u1"), item_ids=np.array([[b"i0", b"i49"]],
                                                                 dtype=object))),
            ("similar_items", dict(item_id=ids(b"i7"), k=k(5)))]
    for signature, feeds in good:
        answer = predict_on(servable, _request(signature, feeds), 64, "m")
        assert answer.outputs["scores"].tensor_shape.dim[0].size == len(
            next(iter(feeds.values())))
    assert len(calls) == len(good)


def test_refused_requests_leave_no_garbage(servable):
    """A failed in-graph call leaks one Python list (and heap) in TF 2.21: 300 of them grew the
    objects by 300. Refused before the graph, they leave nothing."""
    request = _request("serving_default", dict(user_id=ids(b"ghost"), k=k(3)))
    for _ in range(10):
        with pytest.raises(RequestError):
            predict_on(servable, request, 64, "m")
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(300):
        with pytest.raises(RequestError):
            predict_on(servable, request, 64, "m")
    gc.collect()
    assert len(gc.get_objects()) - before < 30


def test_a_model_without_the_contracts_tables_is_not_checked(servable):
    from tfrec.serving.contract_checks import ContractChecks

    assert ContractChecks.of(tf.Module()) is None
    checks = ContractChecks.of(servable._loaded)
    assert len(checks.users) == 20 and len(checks.items) == checks.num_items == 50
