"""ModelStore: which folders are versions, loading the newest, swapping, surviving bad versions."""

import dataclasses
import gc
import shutil

import grpc
import numpy as np
import pytest

import tfrec
from tfrec import cli
from tfrec.serving import model_store
from tfrec.serving.errors import RequestError
from tfrec.serving.model_store import AVAILABLE, END, ModelStore, VersionStatus, ready_versions
from tfrec.serving.predict_service import predict_on, warm_up
from tfrec.export.versions import export_model
from tfrec.export.synthetic import random_artifacts
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # noqa: E402

tf = import_tf()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A pristine version folder to copy from (exported once per module)."""
    base = tmp_path_factory.mktemp("pristine")
    return export_model(random_artifacts(num_users=6, num_items=9, dim=4), base, version=1)


def add_version(base, exported, version):
    """Copies the pristine export in as `base/<version>`, appearing at once (rename)."""
    staging = base / f".staging-{version}"
    shutil.copytree(exported, staging)
    staging.rename(base / str(version))
    return base / str(version)


def store_for(base) -> ModelStore:
    return ModelStore(base, "m", poll_seconds=0, warmup=lambda s: warm_up(s, max_batch=16))


def test_only_integer_folders_with_a_saved_model_are_versions(tmp_path, exported):
    add_version(tmp_path, exported, 3)
    shutil.copytree(exported, tmp_path / ".export-4-abc")  # an export in progress
    shutil.copytree(exported, tmp_path / "latest")
    (tmp_path / "5").mkdir()  # no saved_model.pb yet
    (tmp_path / "6").write_text("a file, not a folder")
    assert ready_versions(tmp_path) == {3: tmp_path / "3"}


def test_nothing_to_serve_is_one_sentence(tmp_path, capsys):
    with pytest.raises(tfrec.TfrecError, match="has no version folder"):
        store_for(tmp_path).load_initial()
    with pytest.raises(tfrec.TfrecError, match="is not a folder"):
        store_for(tmp_path / "missing").load_initial()
    assert cli.main(["serve", "--model-base", str(tmp_path), "--port", "0"]) == 2
    assert "has no version folder" in capsys.readouterr().err


def test_poll_swaps_to_newer_version_and_survives_bad_ones(tmp_path, exported, monkeypatch):
    add_version(tmp_path, exported, 1)
    store = store_for(tmp_path)
    assert store.load_initial().version == 1
    assert store.poll_once() is False  # nothing new

    add_version(tmp_path, exported, 2)
    old = store.get()
    assert store.poll_once() is True
    assert store.get().version == 2 and store.get(2) is store.get()
    assert old.signatures["serving_default"].fn(  # a request in flight on v1 still completes
        user_id=tf.constant(["u1"]), k=tf.constant(2))["item_ids"].shape == (1, 2)
    with pytest.raises(RequestError) as e:
        store.get(1)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert [(s.version, s.state) for s in store.statuses()] == [(2, AVAILABLE), (1, END)]

    # A corrupt version: logged, status END with the error, v2 keeps serving, no reload loop.
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"not a protobuf")
    loads = []
    real_servable = model_store.Servable
    monkeypatch.setattr(model_store, "Servable", lambda *a: loads.append(a) or real_servable(*a))
    assert store.poll_once() is False and store.poll_once() is False
    assert len(loads) == 1 and store.get().version == 2
    (failed,) = store.statuses(3)
    assert failed.state == END and failed.error

    # The served version's folder removed (with the bad one): the newest remaining is served.
    shutil.rmtree(tmp_path / "3")
    shutil.rmtree(tmp_path / "2")
    assert store.poll_once() is True and store.get().version == 1


def test_a_version_whose_warmup_fails_is_not_swapped_in(tmp_path, exported):
    add_version(tmp_path, exported, 1)
    store = store_for(tmp_path)
    store.load_initial()
    bad = add_version(tmp_path, exported, 2)
    request = predict_pb2.PredictRequest()
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([b"ghost"]))
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(1, dtype=tf.int32))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
        request=request))
    with tf.io.TFRecordWriter(str(bad / "assets.extra" / "tf_serving_warmup_requests")) as w:
        w.write(log.SerializeToString())
    assert store.poll_once() is False and store.get().version == 1
    assert "warm-up request 1 failed: unknown user id 'ghost'" in store.statuses(2)[0].error


def test_serves_the_newest_n_versions(tmp_path, exported):
    add_version(tmp_path, exported, 1)
    add_version(tmp_path, exported, 2)
    store = ModelStore(tmp_path, "m", poll_seconds=0, num_versions=2)
    assert store.load_initial().version == 2
    assert store.versions == [2, 1] and store.get().version == 2 and store.get(1).version == 1
    add_version(tmp_path, exported, 3)
    kept = store.get(2)
    assert store.poll_once() is True and store.versions == [3, 2]
    assert store.get(2) is kept  # still wanted: not reloaded
    assert {s.version: s.state for s in store.statuses()} == {3: AVAILABLE, 2: AVAILABLE, 1: END}
    with pytest.raises(RequestError, match=r"version 1 .* not available \(serving 3, 2\)"):
        store.get(1)


def _top(servable, user="u1"):
    out = servable.signatures["serving_default"].fn(user_id=tf.constant([user]), k=tf.constant(3))
    return out["item_ids"].numpy().tolist()


def test_a_reused_version_number_is_loaded_and_a_removed_one_unloaded(tmp_path):
    """The issue's sequence: serve v3, delete 3 and 1, export again (a new 3): the new 3 is
    served, as a fresh server on the folder would; statuses say what is served."""
    base = tmp_path / "m"
    for seed, version in [(1, 1), (2, 2), (3, 3)]:
        export_model(random_artifacts(num_users=6, num_items=9, dim=4, seed=seed), base, version)
    store = store_for(base)
    old_top = _top(store.load_initial())
    shutil.rmtree(base / "3")
    shutil.rmtree(base / "1")
    new3 = export_model(random_artifacts(num_users=6, num_items=9, dim=4, seed=30), base)
    assert new3.name == "3"  # the number is reused
    fresh = store_for(base)
    assert store.poll_once() is True  # no poll in between: told apart by identity on disk
    assert store.versions == [3] and _top(store.get()) == _top(fresh.load_initial()) != old_top
    assert [(s.version, s.state) for s in store.statuses()] == [(3, AVAILABLE)]

    # Removed between polls: unloaded, v2 served, status END for 3.
    shutil.rmtree(base / "3")
    assert store.poll_once() is True and store.versions == [2]
    assert {s.version: s.state for s in store.statuses()}[3] == END
    # Every folder gone: nothing is served (TF Serving aspires zero versions), NOT_FOUND says so.
    shutil.rmtree(base / "2")
    assert store.poll_once() is True and store.versions == []
    assert {s.state for s in store.statuses()} == {END}
    with pytest.raises(RequestError, match="no version to serve") as e:
        store.get()
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    # A version folder appears again: served.
    export_model(random_artifacts(num_users=6, num_items=9, dim=4, seed=4), base, version=5)
    assert store.poll_once() is True and store.versions == [5]


def test_an_answer_above_the_size_limit_is_refused_before_computing(exported):
    servable = model_store.Servable(exported, 1)  # 9 items "item-0".."item-8" (see synthetic)
    request = predict_pb2.PredictRequest()
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([b"u1", b"u2"]))
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(9, dtype=tf.int32))
    # The bound really bounds: the outputs of 2 rows x 9 results fit in 2 x 9 x bytes_per_result.
    answer = predict_on(servable, request, 16, "m", max_answer_bytes=1 << 20)
    assert 0 < sum(o.ByteSize() for o in answer.outputs.values()) <= 18 * servable.bytes_per_result
    calls = []
    servable.signatures["serving_default"] = dataclasses.replace(
        servable.signatures["serving_default"], fn=lambda **kw: calls.append(kw))
    with pytest.raises(RequestError, match=r"2 rows x k=9 could take .* limit of") as e:
        predict_on(servable, request, 16, "m", max_answer_bytes=18 * servable.bytes_per_result - 1)
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and calls == []


def test_an_unloaded_version_is_freed_at_the_swap(tmp_path, exported):
    """A loaded SavedModel leaves reference cycles (traced functions, their graphs): without a
    collection at the swap they waited for the cyclic collector's own pace, ~10 MB a swap."""
    add_version(tmp_path, exported, 1)
    store = store_for(tmp_path)
    store.load_initial()
    gc.collect()
    gc.disable()  # only the store's own collection may free them
    try:
        add_version(tmp_path, exported, 2)
        assert store.poll_once() is True
        left = gc.collect()  # what the swap left for the collector
    finally:
        gc.enable()
    assert left < 100  # without the store's collection: ~7,000 objects


def test_signatures_are_called_flat_and_answer_as_the_savedmodel(tmp_path, exported):
    servable = model_store.Servable(add_version(tmp_path, exported, 1), 1)
    user, item = b"u1", b"i2"
    inputs = {"serving_default": dict(user_id=[user, b"u0"], k=3),
              "similar_items": dict(item_id=[item], k=[2]),
              "history": dict(history=[[item, b""]], k=4),
              "score": dict(user_id=[user], item_ids=[[item, b"i0"]])}
    for name, feeds in inputs.items():
        signature = servable.signatures[name]
        assert isinstance(signature.fn, model_store.FlatCall)
        fast, reference = signature.fn(**feeds), servable._loaded.signatures[name](**feeds)
        assert fast.keys() == reference.keys()
        for output in fast:
            np.testing.assert_array_equal(fast[output].numpy(), reference[output].numpy())
    with pytest.raises(TypeError, match="takes"):
        servable.signatures["serving_default"].fn(user_id=[user])


def test_statuses_of_unloaded_versions_are_bounded(tmp_path, monkeypatch):
    """Only the newest MAX_ENDED ended versions keep a status; served ones always do."""
    monkeypatch.setattr(model_store, "MAX_ENDED", 2)
    store = store_for(tmp_path)
    store._set_status(VersionStatus(9, AVAILABLE))
    for version in range(1, 6):
        store._set_status(VersionStatus(version, END, "failed" if version == 1 else ""))
    assert [(s.version, s.state) for s in store.statuses()] == [(9, AVAILABLE), (5, END),
                                                                 (4, END)]
