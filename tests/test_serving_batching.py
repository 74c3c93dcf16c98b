"""Server-side batching: merged calls answer exactly what separate calls answer.

The first call is held inside the model until the others have queued behind it, so the next
call deterministically merges them.
"""

import dataclasses
import threading

import numpy as np
import pytest

from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving.batching import Batcher, call
from tfrec.serving.model_store import Servable
from tfrec.tf_setup import import_tf

tf = import_tf()


@pytest.fixture(scope="module")
def servable(tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "m"
    return Servable(export_model(random_artifacts(num_users=20, num_items=50, dim=8), base), 1)


def _held(signature):
    """The signature with a model that records the rows of each call and holds the first
    one until `release` is set."""
    calls, entered, release = [], threading.Event(), threading.Event()

    def fn(**feeds):
        calls.append({n: np.asarray(v) for n, v in feeds.items()})
        if len(calls) == 1:
            entered.set()
            release.wait(30)
        return signature.fn(**feeds)

    return dataclasses.replace(signature, fn=fn), calls, entered, release


def _run_concurrently(batcher, signature, requests, queued_before_release):
    """Runs requests[0] first (held in the model), then the others; returns answers/errors."""
    held, calls, entered, release = _held(signature)
    results = [None] * len(requests)

    def one(i):
        try:
            results[i] = batcher.run(held, requests[i])
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=one, args=(0,))]
    threads[0].start()
    assert entered.wait(30)
    for i in range(1, len(requests)):
        threads.append(threading.Thread(target=one, args=(i,)))
        threads[-1].start()
    for _ in range(3000):  # up to 30 s
        if sum(len(q) for q in batcher._queues.values()) >= queued_before_release:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(30)
    return results, calls


def test_concurrent_requests_merge_and_each_gets_its_own_answer(servable):
    signature = servable.signatures["serving_default"]
    requests = [
        {"user_id": np.array([b"u0"], dtype=object), "k": np.array(3, np.int32)},
        {"user_id": np.array([b"u1", b"u2"], dtype=object), "k": np.array(5, np.int32)},
        {"user_id": np.array([b"u3"], dtype=object), "k": np.array([2], np.int32)},
        {"user_id": np.array([b"u4"], dtype=object), "k": np.array(7, np.int32)},
    ]
    results, calls = _run_concurrently(Batcher(max_rows=64, parallel=1), signature, requests, 3)
    # Call 1 is u0 alone; call 2 merges the 3 queued requests: 4 rows, k per row [5, 5, 2, 7].
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[1]["user_id"], [b"u1", b"u2", b"u3", b"u4"])
    np.testing.assert_array_equal(calls[1]["k"], [5, 5, 2, 7])
    for request, result in zip(requests, results):
        alone = call(signature, request)
        assert result.keys() == alone.keys()
        for name in alone:
            assert result[name].shape == alone[name].shape  # [rows, own k]
            if alone[name].dtype == object:
                np.testing.assert_array_equal(result[name], alone[name])
            else:
                np.testing.assert_allclose(result[name], alone[name], rtol=1e-6)


def test_a_bad_request_in_a_batch_fails_alone(servable):
    signature = servable.signatures["serving_default"]
    good = {"user_id": np.array([b"u1"], dtype=object), "k": np.array(3, np.int32)}
    ghost = {"user_id": np.array([b"ghost"], dtype=object), "k": np.array(3, np.int32)}
    results, calls = _run_concurrently(Batcher(max_rows=64, parallel=1), signature,
                                       [good, good, ghost, good], 3)
    # The merged call (3 rows) fails on the ghost, then each of its requests runs alone.
    assert [len(c["user_id"]) for c in calls] == [1, 3, 1, 1, 1]
    assert isinstance(results[2], tf.errors.InvalidArgumentError)
    assert "unknown user id \\'ghost\\'" in results[2].message
    for i in (0, 1, 3):
        np.testing.assert_array_equal(results[i]["item_ids"], call(signature, good)["item_ids"])


def test_only_compatible_requests_merge_and_batches_respect_max_rows(servable):
    signature = servable.signatures["history"]
    short = {"history": np.array([[b"i1", b"i2"]], dtype=object), "k": np.array(2, np.int32)}
    longer = {"history": np.array([[b"i1", b"i2", b"i3"]], dtype=object),
              "k": np.array(2, np.int32)}
    results, calls = _run_concurrently(Batcher(max_rows=2, parallel=1), signature,
                                       [short, short, longer, short, short], 3)
    # L=3 runs at once beside the held L=2 call (another key); the 3 queued L=2 requests
    # run as 2 rows + 1 row (max_rows=2).
    assert all(len({c["history"].shape[1]}) == 1 and len(c["history"]) <= 2 for c in calls)
    assert sorted(len(c["history"]) for c in calls) == [1, 1, 1, 2]
    for request, result in zip([short, short, longer, short, short], results):
        np.testing.assert_array_equal(result["item_ids"], call(signature, request)["item_ids"])
