"""`tfrec serve --workers 2`: two server processes on one port, one metrics view, swaps reaching
both, a killed worker replaced, a clean stop.

One server (a real `tfrec serve` process and its two spawned workers) is shared by the tests, in
file order; the default suite runs the first only (the others are marked slow). Which worker answered a call is read from the access log, whose lines the workers
prefix with their pid; a fresh channel is a fresh connection, which the kernel hands to either
worker (SO_REUSEPORT), so 16 of them reach both but with probability 2^-15.
"""

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving.tensors import to_proto
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

tf = import_tf()
MODEL = "movies"
USERS = [f"u{u}" for u in range(20)]
CHANNELS = 16


def expected_top(path: Path) -> dict:
    """{user: top-5 item ids} computed by the SavedModel itself."""
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = fn(user_id=tf.constant(USERS), k=tf.constant(5))["item_ids"].numpy()
    return {u: [s.decode() for s in row] for u, row in zip(USERS, out)}


class Served:
    """The `tfrec serve --workers 2` process, its ports and every line it wrote."""

    def __init__(self, base: Path):
        self.base = base
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfrec.cli", "serve", "--model-base", str(base), "--port",
             "0", "--rest-port", "0", "--workers", "2", "--poll-seconds", "0.2",
             "--access-log", "--grace-seconds", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: queue.Queue = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=lambda: [self.out.put(x) for x in self.process.stdout],
                         daemon=True).start()
        threading.Thread(target=lambda: [self.log.append(x) for x in self.process.stderr],
                         daemon=True).start()
        line = self.out.get(timeout=180)
        assert re.match(rf"tfrec serve: model '{MODEL}' version 1 on 127\.0\.0\.1:\d+, REST on "
                        rf"port \d+ \(pid {self.process.pid}, 2 workers\)", line), (
            line, "".join(self.log))
        self.address = line.split(" on ")[1].split(",")[0]
        self.rest = f"http://127.0.0.1:{line.split('REST on port ')[1].split()[0]}"

    def workers(self, expected: int = 2, wait: float = 10.0) -> list[int]:
        """The pids of the workers serving now (the supervisor logs each one it started);
        waits up to `wait` s for `expected` of them, as stderr is read by its own thread and
        may lag the ready line on stdout."""
        deadline = time.monotonic() + wait
        while True:
            started = dict(re.findall(r"INFO worker (\d) \(pid (\d+)\) serves version",
                                      "".join(self.log)))
            pids = sorted(int(p) for p in started.values() if Path(f"/proc/{p}").exists())
            if len(pids) >= expected or time.monotonic() > deadline:
                return pids
            time.sleep(0.05)

    def answers(self) -> list[predict_pb2.PredictResponse]:
        """One serving_default call for user u<i> (k=5) on each of 16 fresh connections."""
        found = []
        for i in range(CHANNELS):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            user = np.array([USERS[i].encode()], dtype=object)
            request.inputs["user_id"].CopyFrom(to_proto(user))
            request.inputs["k"].CopyFrom(to_proto(np.array(5, np.int32)))
            with grpc.insecure_channel(self.address) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                found.append(stub.Predict(request, timeout=30))
        return found

    def answering_pids(self, since: int) -> set[int]:
        """Pids of the workers whose access log shows a gRPC Predict after log line `since`."""
        return {int(m.group(1)) for line in self.log[since:]
                if (m := re.search(r"\[worker \d pid (\d+)\] .* grpc Predict ", line))}

    def metric(self, name: str, **labels) -> float:
        text = requests.get(f"{self.rest}/monitoring/prometheus/metrics", timeout=30).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in
                                                   labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served") / MODEL
    export_model(random_artifacts(num_users=20, num_items=50, dim=8, seed=3), base, version=1)
    server = Served(base)
    yield server
    if server.process.poll() is None:  # the last test did not stop it
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.process.kill()  # its workers get SIGTERM from the kernel (PDEATHSIG)
            server.process.wait()


def test_two_workers_both_answer_and_metrics_add_up(served):
    assert len(served.workers()) == 2
    since = len(served.log)
    top = expected_top(served.base / "1")
    for i, answer in enumerate(served.answers()):
        assert answer.model_spec.version.value == 1
        assert [s.decode() for s in answer.outputs["item_ids"].string_val] == top[USERS[i]]
    time.sleep(0.5)  # the access log lines reach the pipe
    assert served.answering_pids(since) == set(served.workers())
    # Each scrape may reach either worker: every one shows the sum over both.
    for _ in range(4):
        assert served.metric("tfrec_requests_total", api="grpc", method="Predict",
                             code="OK") == CHANNELS
        assert served.metric("tfrec_served_versions", model=MODEL) == 1


@pytest.mark.slow
def test_a_swap_reaches_every_worker(served):
    export_model(random_artifacts(num_users=20, num_items=50, dim=8, seed=4), served.base,
                 version=2)
    top = expected_top(served.base / "2")
    assert top != expected_top(served.base / "1")
    deadline = time.monotonic() + 60
    while True:  # each worker polls on its own: within a poll period or a load of each other
        since = len(served.log)
        answers = served.answers()
        if all(a.model_spec.version.value == 2 for a in answers):
            break
        assert time.monotonic() < deadline, [a.model_spec.version.value for a in answers]
        time.sleep(1)
    assert all([s.decode() for s in a.outputs["item_ids"].string_val] == top[USERS[i]]
               for i, a in enumerate(answers))
    time.sleep(0.5)
    assert served.answering_pids(since) == set(served.workers())


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_sigterm_stops_all(served):
    newest = max(int(p.name) for p in served.base.iterdir() if p.name.isdigit())
    victim = served.workers()[0]
    subprocess.run(["kill", "-9", str(victim)], check=True)
    exited = f"(pid {victim}) exited with code -9 while serving"
    deadline = time.monotonic() + 120
    while not re.search(rf"INFO worker \d \(pid \d+\) serves version {newest}",
                        "".join(served.log).partition(exited)[2]):
        assert served.process.poll() is None, "".join(served.log)
        assert time.monotonic() < deadline, "".join(served.log)
        time.sleep(0.5)
    assert len(served.workers()) == 2 and victim not in served.workers()
    since = len(served.log)
    assert all(a.model_spec.version.value == newest for a in served.answers())
    time.sleep(0.5)
    assert served.answering_pids(since) == set(served.workers())
    # Counters keep the dead worker's requests: those of the tests above and these 16.
    assert served.metric("tfrec_requests_total", api="grpc", code="OK") >= 2 * CHANNELS
    workers = served.workers()
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=60) == 0, "".join(served.log)
    assert served.out.get(timeout=5) == "tfrec serve: stopped\n"
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


@pytest.mark.slow
def test_workers_that_cannot_start_are_one_sentence(tmp_path):
    empty = tmp_path / MODEL
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "tfrec.cli", "serve", "--model-base",
                           str(empty), "--port", "0", "--workers", "2"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("tfrec: error:")]
    assert errors == [f"tfrec: error: model base {empty} has no version folder (an integer "
                      "name holding a saved_model.pb), e.g. written by `tfrec export`."], (
        done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
