"""`tfrec serve --native --rest-port`: REST, metrics, /healthz and the access log of the Python
gateway in front of tfrec-native-serve answer as `tfrec serve --rest-port` does.

Both serve test_serving_rest's model (its `server` fixture is the Python side); every REST call
below goes to both and must get the same HTTP code and JSON body, for every signature that
tfrec-native-serve serves, in both JSON formats, and for test_serving_rest's bad requests.
Metrics are counted by tfrec-native-serve for both its gRPC and the gateway's REST calls.
Skipped when the binary is not built (make native).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from test_serving_grpc import CASES, MODEL, request
from test_serving_rest import BAD, MAX_BATCH, _rows, _samples, _text, server  # noqa: F401

from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving import native

from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402  (after tfrec)

pytestmark = pytest.mark.skipif(not native.binary().is_file(),
                                reason=f"{native.binary()} is not built (make native)")
LISTENING = re.compile(r" on 127\.0\.0\.1:(?P<port>[0-9]+), REST on port (?P<rest>[0-9]+) "
                       r"\(pid (?P<pid>[0-9]+)\)")


def start_gateway(base: Path, log: Path, *flags: str):
    """(process, gRPC port, REST URL) of `tfrec serve --native --rest-port 0`; its stderr goes
    to `log`."""
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tfrec.cli", "serve", "--native", "--model-base", str(base),
             "--port", "0", "--rest-port", "0", *flags],
            stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = process.stdout.readline()
    found = LISTENING.search(line)
    assert found, f"no listening line: {line!r} (exit {process.poll()}): {log.read_text()}"
    assert int(found["pid"]) == process.pid
    return process, int(found["port"]), f"http://127.0.0.1:{found['rest']}"


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):  # noqa: F811  (test_serving_rest's fixture)
    """(gateway URL, Python server URL, native gRPC channel, access log file): both on the
    model base of test_serving_rest's server, with its limits."""
    running, python_url, _ = server
    log = tmp_path_factory.mktemp("gateway") / "stderr.txt"
    process, port, url = start_gateway(
        running.config.model_base, log, "--max-batch", str(MAX_BATCH), "--max-message-mb", "1",
        "--poll-seconds", "0", "--access-log")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield url, python_url, channel, log
    channel.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0  # both stopped cleanly
    assert "tfrec serve: stopped" in process.stdout.read()


def both(gateway, method: str, path: str, **kwargs) -> list[tuple[int, object]]:
    """[(HTTP code, JSON body)] of the gateway's and the Python server's answers."""
    url, python_url, *_ = gateway
    answers = [requests.request(method, base + path, timeout=30, **kwargs)
               for base in (url, python_url)]
    return [(a.status_code, a.json()) for a in answers]


@pytest.mark.parametrize("signature", sorted(CASES))
def test_predict_answers_as_tfrec_serve_in_both_formats(gateway, signature):
    inputs = CASES[signature]
    columnar = {"signature_name": signature,
                "inputs": {n: _text(np.asarray(v)) for n, v in inputs.items()}}
    rows = {"signature_name": signature, "instances": _rows(inputs)}
    for path, body in [(f"/v1/models/{MODEL}:predict", columnar),
                       (f"/v1/models/{MODEL}/versions/1:predict", rows)]:
        got, want = both(gateway, "POST", path, json=body)
        assert got == want and got[0] == 200


@pytest.mark.parametrize("path", [f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/versions/1",
                                  f"/v1/models/{MODEL}/metadata", "/healthz"])
def test_status_metadata_and_health_as_tfrec_serve(gateway, path):
    got, want = both(gateway, "GET", path)
    assert got == want and got[0] == 200


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_gets_tfrec_serves_code_and_error(gateway, case):
    method, path, body, code, text = BAD[case]
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    got, want = both(gateway, method, path, **kwargs)
    assert got == want and got[0] == code and text in got[1]["error"]


def test_metrics_count_every_request_once(gateway):
    url, _, channel, _ = gateway
    labels = dict(model=MODEL, method="Predict", signature="history")
    before = _samples(url)

    def delta(name, **extra):
        key = (name, frozenset(dict(labels, **extra).items()))
        return _samples(url).get(key, 0) - before.get(key, 0)

    predict = f"{url}/v1/models/{MODEL}:predict"
    good = {"signature_name": "history", "inputs": {"history": [["i1"]], "k": 2}}
    bad = [  # refused by the graph, by the gateway (k not an integer; ragged)
        {"signature_name": "history", "inputs": {"history": [[""]], "k": 2}},
        {"signature_name": "history", "inputs": {"history": [["i1"]], "k": 2.5}},
        {"signature_name": "history", "inputs": {"history": [["i1", "i2"], ["i3"]], "k": 2}},
    ]
    for _ in range(4):
        assert requests.post(predict, json=good, timeout=30).status_code == 200
    for body in bad:
        assert requests.post(predict, json=body, timeout=30).status_code == 400
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    stub.Predict(request("history", **CASES["history"]), timeout=30)
    for name in ("x1", "x2"):  # random signature names share one label value
        with pytest.raises(grpc.RpcError):
            stub.Predict(request(name, **CASES["history"]), timeout=30)
    assert delta("tfrec_requests_total", api="rest", code="OK") == 4
    assert delta("tfrec_requests_total", api="rest", code="INVALID_ARGUMENT") == 3
    assert delta("tfrec_request_latency_seconds_count", api="rest") == 4 + 3
    assert delta("tfrec_requests_total", api="grpc", code="OK") == 1
    assert delta("tfrec_requests_total", api="grpc", code="INVALID_ARGUMENT",
                 signature="unknown") == 2
    samples = _samples(url)
    assert not any("x1" in str(key) for key in samples)
    assert samples[("tfrec_served_versions", frozenset({("model", MODEL)}))] == 1


def test_metrics_have_tfrec_serves_names_labels_and_buckets(gateway):
    url, python_url, *_ = gateway
    for base in (url, python_url):  # at least one REST predict counted on each
        requests.post(f"{base}/v1/models/{MODEL}:predict",
                      json={"inputs": {"user_id": ["u1"], "k": 3}}, timeout=30)

    def shape(base):
        """{sample name: label names} and the histogram's buckets (without prometheus_client's
        *_created timestamps and the Python server's batching histogram)."""
        samples = _samples(base)
        names = {(name, tuple(sorted(k for k, _ in labels))) for name, labels in samples
                 if name.startswith(("tfrec_requests", "tfrec_request_latency", "tfrec_served"))
                 and not name.endswith("_created")}
        buckets = {dict(labels)["le"] for name, labels in samples
                   if name == "tfrec_request_latency_seconds_bucket"}
        return names, buckets

    assert shape(url) == shape(python_url)


def test_access_log_has_a_line_per_request(gateway):
    url, _, channel, log = gateway
    requests.post(f"{url}/v1/models/{MODEL}:predict", json={"inputs": {"user_id": ["u2"],
                                                                       "k": 3}}, timeout=30)
    requests.post(f"{url}/v1/models/nope:predict", json={"inputs": {"user_id": ["u2"],
                                                                    "k": 3}}, timeout=30)
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request(**CASES["serving_default"]), timeout=30)
    time.sleep(0.2)
    lines = log.read_text().splitlines()
    pattern = r" INFO {} {} Predict model={} signature=serving_default {} [0-9.]+ms$"
    for peer, api, model, code in [("127.0.0.1", "rest", MODEL, "OK"),
                                   ("127.0.0.1", "rest", "unknown", "NOT_FOUND"),
                                   (r"ipv4:127\.0\.0\.1:[0-9]+", "grpc", MODEL, "OK")]:
        assert any(re.search(pattern.format(peer, api, model, code), line) for line in lines), \
            (peer, api, code)


def test_health_follows_versions_and_the_gateway_exits_with_its_child(tmp_path):
    """No version left: /healthz 503; tfrec-native-serve killed: the gateway says so in one line
    and exits with 128 + 9."""
    base = tmp_path / MODEL
    export_model(random_artifacts(num_users=6, num_items=9, dim=4), base, version=1)
    process, _, url = start_gateway(base, tmp_path / "stderr.txt", "--poll-seconds", "0.1")
    assert requests.get(f"{url}/healthz", timeout=30).json()["versions"] == [1]
    (base / "1").rename(tmp_path / "gone")
    deadline = time.monotonic() + 60
    while (health := requests.get(f"{url}/healthz", timeout=30)).status_code != 503:
        assert time.monotonic() < deadline, "healthz still 200 after the version was removed"
        time.sleep(0.1)
    assert health.json() == {"error": f"model '{MODEL}' has no version to serve"}
    (child,) = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    os.kill(int(child), signal.SIGKILL)
    assert process.wait(timeout=60) == 128 + signal.SIGKILL
    last = (tmp_path / "stderr.txt").read_text().strip().splitlines()[-1]
    assert last == (f"tfrec serve: tfrec-native-serve (pid {child}) was killed by signal 9; "
                    "the REST server stops too.")


@pytest.mark.parametrize("flags, words", [
    (["--model-base", "/nonexistent/models"], "model base /nonexistent/models is not a folder."),
    (["--model-base", "{base}", "--rest-port", "{busy}"], "cannot listen on 127.0.0.1:{busy} "
     "for REST: Address already in use."),
    (["--model-base", "{base}", "--port", "{grpc}"], "tfrec-native-serve: cannot listen on "
     "127.0.0.1:{grpc}"),
])
def test_start_up_failures_say_one_sentence_and_exit_2(server, flags, words):  # noqa: F811
    running, *_ = server
    values = dict(base=running.config.model_base, busy=running.rest_port, grpc=running.port)
    flags = [f.format(**values) for f in flags]
    if "--rest-port" not in flags:
        flags += ["--rest-port", "0"]
    done = subprocess.run([sys.executable, "-m", "tfrec.cli", "serve", "--native", "--port",
                           "0", *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(words.format(**values))
    assert "Traceback" not in done.stderr


def test_access_log_without_rest(tmp_path):
    """`tfrec serve --native --access-log` (no REST: tfrec-native-serve itself) logs gRPC calls."""
    base = tmp_path / MODEL
    export_model(random_artifacts(num_users=6, num_items=9, dim=4), base, version=1)
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "tfrec.cli", "serve", "--native",
                                    "--model-base", str(base), "--port", "0", "--access-log"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = process.stdout.readline()  # tfrec-native-serve's own, after exec
    channel = grpc.insecure_channel(line.split(" on ")[1].split()[0])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    stub.Predict(request(user_id=[b"u1"], k=CASES["serving_default"]["k"]), timeout=30)
    channel.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert re.search(r" INFO ipv4:127\.0\.0\.1:[0-9]+ grpc Predict model=movies "
                     r"signature=serving_default OK [0-9.]+ms$", log.read_text(), re.M)
