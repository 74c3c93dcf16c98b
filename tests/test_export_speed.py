"""In-process latency of the exported hot path on a MovieLens-100K-sized model (slow; -m slow).

Run: .venv/bin/python -m pytest -m slow tests/test_export_speed.py -s
"""

import time

import numpy as np
import pytest
from test_export_fixtures import make_artifacts, tf

from tfrec.export.versions import export_model

pytestmark = pytest.mark.slow


def _latencies_ms(fn, calls, **inputs):
    for _ in range(20):
        fn(**inputs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(**inputs)
        times.append(time.perf_counter() - start)
    return np.percentile(np.array(times) * 1e3, [50, 99])


def test_serving_default_latency_one_user(tmp_path):
    # 943 users x 1,682 items x 64 dims, ~106 seen items per user (MovieLens-100K sizes).
    artifacts = make_artifacts(num_users=943, num_items=1682, dim=64, seen_per_user=(20, 106, 300))
    model = tf.saved_model.load(str(export_model(artifacts, tmp_path)))
    k = tf.constant(10)
    report = {}
    for name, fn, inputs in [
        ("serving_default", model.signatures["serving_default"],
         dict(user_id=tf.constant(["u7"]), k=k)),
        ("similar_items", model.signatures["similar_items"],
         dict(item_id=tf.constant(["item-7"]), k=k)),
        ("history", model.signatures["history"],
         dict(history=tf.constant([[f"item-{i}" for i in range(20)]]), k=k)),
        ("score", model.signatures["score"],
         dict(user_id=tf.constant(["u7"]), item_ids=tf.constant([["item-1"] * 100]))),
    ]:
        report[name] = _latencies_ms(fn, 500, **inputs)
        print(f"{name}: p50 {report[name][0]:.3f} ms, p99 {report[name][1]:.3f} ms")
    assert report["serving_default"][1] < 20.0


def test_serving_default_latency_eight_threads(tmp_path):
    """8 concurrent in-process callers (the bench's client count), 200 calls each."""
    from concurrent.futures import ThreadPoolExecutor

    artifacts = make_artifacts(num_users=943, num_items=1682, dim=64, seen_per_user=(20, 106, 300))
    fn = tf.saved_model.load(str(export_model(artifacts, tmp_path))).signatures["serving_default"]
    k = tf.constant(10)

    def client(c):
        return _latencies_ms_raw(fn, 200, user_id=tf.constant([f"u{c}"]), k=k)

    with ThreadPoolExecutor(8) as pool:
        times = np.concatenate(list(pool.map(client, range(8))))
    p50, p99 = np.percentile(times, [50, 99])
    print(f"serving_default, 8 threads: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    assert p99 < 20.0


def _latencies_ms_raw(fn, calls, **inputs):
    for _ in range(5):
        fn(**inputs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(**inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return np.array(times)
