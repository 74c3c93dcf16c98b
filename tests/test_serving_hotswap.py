"""Hot swap under concurrent load, and `tfrec serve` as a real process stopped by a signal."""

import dataclasses
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from tfrec.serving import predict_service
from tfrec.serving.client import ServingClient
from tfrec.serving.model_store import AVAILABLE, END
from tfrec.serving.server import ModelServer, ServeConfig
from tfrec.export.versions import export_model
from tfrec.export.synthetic import random_artifacts
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

tf = import_tf()
MODEL = "movies"
USERS = [f"u{u}" for u in range(20)]


def small(seed: int):
    return random_artifacts(num_users=20, num_items=50, dim=8, seed=seed)


def expected_top(path: Path) -> dict:
    """{user: top-5 item ids} computed by the SavedModel itself."""
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = fn(user_id=tf.constant(USERS), k=tf.constant(5))["item_ids"].numpy()
    return {u: [s.decode() for s in row] for u, row in zip(USERS, out)}


def wait_for_answers(answers: list, version: int, clients: int, each: int = 10,
                     seconds: float = 60.0) -> None:
    """Waits until each of `clients` has `each` answers (index, version, ok) from `version`
    (time-based waits made too few answers on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts = [0] * clients
        for index, v, _ in list(answers):
            counts[index] += v == version
        if min(counts) >= each:
            return
        time.sleep(0.05)


def test_hot_swap_under_concurrent_load(tmp_path):
    base, staging = tmp_path / MODEL, tmp_path / "staging"
    v1 = export_model(small(seed=1), base, version=1)
    v2 = export_model(small(seed=2), staging, version=2)  # moved in while serving
    expected = {1: expected_top(v1), 2: expected_top(v2)}
    assert expected[1] != expected[2]

    config = ServeConfig(model_base=base, port=0, poll_seconds=0.2, threads=8)
    with ModelServer(config) as server:
        address = f"127.0.0.1:{server.port}"
        stop = threading.Event()
        errors, answers = [], []  # answers: (thread, version, ok)

        def client(index: int) -> None:
            rng = np.random.default_rng(index)
            with grpc.insecure_channel(address) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                while not stop.is_set():
                    user = USERS[rng.integers(len(USERS))]
                    try:
                        response = stub.Predict(_request(user), timeout=20)
                    except Exception as e:  # any failure fails the test
                        errors.append(repr(e))
                        continue
                    version = response.model_spec.version.value
                    items = [s.decode() for s in response.outputs["item_ids"].string_val]
                    answers.append((index, version, items == expected[version][user]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        wait_for_answers(answers, 1, clients=4)
        (staging / "2").rename(base / "2")  # the new version appears atomically
        wait_for_answers(answers, 2, clients=4)  # the load stays on after the swap
        stop.set()
        for t in threads:
            t.join()
        statuses = {s.version: s.state for s in server.store.statuses()}

    assert errors == []
    assert all(ok for *_, ok in answers), "an answer differs from its version's SavedModel"
    for index in range(4):  # per client: both versions, once on 2 never back to 1
        seq = [v for i, v, _ in answers if i == index]
        assert seq.count(1) >= 10 and seq.count(2) >= 10
        assert seq == sorted(seq) and seq[-1] == 2
    assert statuses == {2: AVAILABLE, 1: END}


def test_stop_lets_requests_in_flight_finish(tmp_path, monkeypatch):
    export_model(small(seed=4), tmp_path / MODEL, version=1)
    server = ModelServer(ServeConfig(model_base=tmp_path / MODEL, port=0, poll_seconds=0))
    server.start()
    handled = []  # Predict calls the server started (after the warm-up)
    run = predict_service.predict_on
    monkeypatch.setattr(predict_service, "predict_on",
                        lambda *a: handled.append(1) or run(*a))
    address, stop = f"127.0.0.1:{server.port}", threading.Event()
    codes: list = []

    def client():
        with grpc.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.Predict(_request("u1"), timeout=20)
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append(e.code().name)
                    return

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    server.stop(grace=5)
    stop.set()
    for t in threads:
        t.join()
    # Every call the server started was answered; calls arriving during or after shutdown are
    # refused by gRPC (CANCELLED while it shuts down, UNAVAILABLE once the port is closed).
    assert codes.count("OK") > 10 and len(handled) == codes.count("OK")
    assert set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}


def _request(user: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto([user.encode()]))
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(5, dtype=tf.int32))
    return request


# === tfrec serve as a process ===


def start_serve(base: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Starts `tfrec serve --port 0`; returns (process, HOST:PORT) once it is listening."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrec.cli", "serve", "--model-base", str(base), "--port", "0",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=90)
    except queue.Empty:
        process.kill()
        pytest.fail(f"tfrec serve did not start: {process.stderr.read()}")
    assert line.startswith(f"tfrec serve: model '{base.name}' version 1 on 127.0.0.1:"), line
    process.lines = lines
    return process, line.split(" on ")[1].split()[0]


def stop_serve(process: subprocess.Popen, signum: int) -> str:
    process.send_signal(signum)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert code == 0, process.stderr.read()
    rest = []
    while not process.lines.empty():
        rest.append(process.lines.get())
    return "".join(rest)


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    """A model whose item_text signature uses a TF Text op, which `tfrec serve` must register."""
    import tensorflow_text as tf_text

    def encoder(text):
        normalized = tf_text.normalize_utf8(text, "NFKC")
        return tf.one_hot(tf.strings.to_hash_bucket_fast(normalized, 8), 8)

    base = tmp_path_factory.mktemp("served") / MODEL
    artifacts = dataclasses.replace(small(seed=3), text_encoder=tf.function(encoder))
    export_model(artifacts, base, version=1)
    return base


def test_tfrec_serve_process_answers_and_stops_on_sigterm(model_base):
    process, address = start_serve(model_base)
    out = ""
    try:
        with ServingClient(address) as client:
            recs = client.recommend(MODEL, user="u4", k=3)
            assert [r.item_id for r in recs] == expected_top(model_base / "1")["u4"][:3]
            text = np.array(["Amélie".encode(), b"Heat"], dtype=object)
            embedding = client.predict(MODEL, {"text": text}, "item_text")["embedding"]
            direct = tf.saved_model.load(str(model_base / "1")).signatures["item_text"]
            np.testing.assert_array_equal(embedding, direct(text=tf.constant(text))["embedding"])
        query = subprocess.run(
            [sys.executable, "-m", "tfrec.cli", "query", "--server", address, "--model", MODEL,
             "--user", "u4", "--k", "3", "--json"],
            capture_output=True, text=True, timeout=90,
        )
        assert query.returncode == 0, query.stderr
        assert [i["item_id"] for i in json.loads(query.stdout)["items"]] == [
            r.item_id for r in recs]
    finally:
        if process.poll() is None:
            out = stop_serve(process, signal.SIGTERM)
    assert "tfrec serve: stopped" in out


@pytest.mark.slow
def test_tfrec_serve_process_stops_on_sigint(model_base):
    process, address = start_serve(model_base, "--grace-seconds", "1")
    try:
        with ServingClient(address) as client:
            assert client.status(MODEL)[0].version == 1
    except BaseException:
        process.kill()
        raise
    assert "tfrec serve: stopped" in stop_serve(process, signal.SIGINT)


@pytest.mark.slow
def test_tfrec_serve_binds_loopback_by_default(model_base):
    process, address = start_serve(model_base)
    try:
        assert address.startswith("127.0.0.1:")
        port = f":{int(address.rsplit(':', 1)[1]):04X} "
        net = Path(f"/proc/{process.pid}/net")
        local = [line.split()[1] + " " for f in ("tcp", "tcp6")
                 for line in (net / f).read_text().splitlines()[1:]]
        bound = [a for a in local if a.endswith(port)]
        # 127.0.0.1 as IPv4, or as the IPv4-mapped IPv6 address gRPC may use; never a wildcard.
        assert bound and all(a[:-len(port)] in ("0100007F", "0000000000000000FFFF00000100007F")
                             for a in bound), bound
    finally:
        stop_serve(process, signal.SIGTERM)
