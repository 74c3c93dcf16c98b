"""REST (TF Serving's JSON API), metrics and health of `tfrec serve --rest-port`.

Every REST answer is compared with the gRPC answer of the same server, for every signature and
both JSON formats; every bad request must get TF Serving's HTTP code and an {"error"} body.
"""

import dataclasses
import json
import logging

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format
from test_serving_grpc import CASES, MODEL, request

from tfrec import cli
from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving.server import ModelServer, ServeConfig
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import (  # noqa: E402  (after tfrec: Keras 2 first)
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

tf = import_tf()
MAX_BATCH = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with gRPC and REST on free ports, for the same 20-user, 50-item model as
    test_serving_grpc (text encoder: a one-hot of a hash of the text)."""
    base = tmp_path_factory.mktemp("models") / MODEL
    encoder = tf.function(lambda text: tf.one_hot(tf.strings.to_hash_bucket_fast(text, 8), 8))
    artifacts = dataclasses.replace(
        random_artifacts(num_users=20, num_items=50, dim=8), text_encoder=encoder)
    export_model(artifacts, base, version=1)
    config = ServeConfig(model_base=base, port=0, rest_port=0, poll_seconds=0,
                         max_batch=MAX_BATCH, max_message_mb=1, threads=4, access_log=True)
    with ModelServer(config) as running:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        yield running, f"http://127.0.0.1:{running.rest_port}", channel
        channel.close()


def _text(array: np.ndarray):
    """JSON form of an input: strings as str, numbers as numbers."""
    if array.dtype.kind in "OS":
        return np.vectorize(lambda b: b.decode(), otypes=[object])(array).tolist()
    return array.tolist()


def _rows(inputs: dict) -> list:
    """Row format: one instance per row; a scalar input (k) is repeated in every instance."""
    batched = {n: v for n, v in inputs.items() if np.ndim(v)}
    rows = len(next(iter(batched.values())))
    if len(inputs) == 1:
        return _text(next(iter(inputs.values())))
    return [{n: _text(np.asarray(v)[b]) if np.ndim(v) else v.item() for n, v in inputs.items()}
            for b in range(rows)]


def _same(rest_outputs, grpc_response) -> None:
    if len(grpc_response.outputs) == 1:  # TF Serving answers a single output's bare value
        rest_outputs = {next(iter(grpc_response.outputs)): rest_outputs}
    assert sorted(rest_outputs) == sorted(grpc_response.outputs)
    for name, proto in grpc_response.outputs.items():
        expected, got = tf.make_ndarray(proto), np.array(rest_outputs[name])
        if expected.dtype == object:
            np.testing.assert_array_equal(got, _text(expected))
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("signature", sorted(CASES))
def test_rest_answers_equal_grpc_in_both_formats(server, signature):
    running, url, channel = server
    inputs = CASES[signature]
    grpc_answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request(signature, **inputs), timeout=10)

    columnar = {"signature_name": signature,
                "inputs": {n: _text(np.asarray(v)) for n, v in inputs.items()}}
    answer = requests.post(f"{url}/v1/models/{MODEL}:predict", json=columnar, timeout=10)
    assert answer.status_code == 200, answer.text
    _same(answer.json()["outputs"], grpc_answer)

    rows = {"signature_name": signature, "instances": _rows(inputs)}
    answer = requests.post(f"{url}/v1/models/{MODEL}/versions/1:predict", json=rows, timeout=10)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    if isinstance(predictions[0], dict):
        predictions = {name: [row[name] for row in predictions] for name in predictions[0]}
    _same(predictions, grpc_answer)


def test_status_and_metadata_equal_grpc(server):
    running, url, channel = server
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    grpc_status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status_request, timeout=10)
    for path in (f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/versions/1"):
        answer = requests.get(url + path, timeout=10)
        assert answer.status_code == 200
        assert answer.json() == {"model_version_status": [{  # TF Serving's JSON, to the letter
            "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                              "error_message": ""}}]}
        assert json_format.ParseDict(answer.json(), get_model_status_pb2.GetModelStatusResponse()
                                     ) == grpc_status

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = MODEL
    grpc_meta = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        meta_request, timeout=10)
    defs = get_model_metadata_pb2.SignatureDefMap()
    grpc_meta.metadata["signature_def"].Unpack(defs)
    answer = requests.get(f"{url}/v1/models/{MODEL}/metadata", timeout=10).json()
    assert answer["model_spec"] == {"name": MODEL, "version": "1", "signature_name": ""}
    assert json_format.ParseDict(answer["metadata"]["signature_def"],
                                 get_model_metadata_pb2.SignatureDefMap()) == defs


GOOD = {"inputs": {"user_id": ["u1"], "k": 3}}
BAD = {  # id -> (HTTP method, path, body, HTTP code, a piece of the error)
    "unknown model": ("POST", "/v1/models/nope:predict", GOOD, 404, "'nope'"),
    "unknown version": ("POST", f"/v1/models/{MODEL}/versions/7:predict", GOOD, 404,
                        "version 7"),
    "unknown version status": ("GET", f"/v1/models/{MODEL}/versions/7", None, 404, "version 7"),
    "unknown signature": ("POST", f"/v1/models/{MODEL}:predict",
                          dict(GOOD, signature_name="ranking"), 400, "'ranking'"),
    "unknown user": ("POST", f"/v1/models/{MODEL}:predict",
                     {"inputs": {"user_id": ["ghost"], "k": 3}}, 400, "unknown user id 'ghost'"),
    "k out of range": ("POST", f"/v1/models/{MODEL}:predict",
                       {"inputs": {"user_id": ["u1"], "k": 51}}, 400, "k must be between"),
    "k not an integer": ("POST", f"/v1/models/{MODEL}:predict",
                         {"inputs": {"user_id": ["u1"], "k": 2.5}}, 400,
                         "input 'k' must hold an integer"),
    "k above int32": ("POST", f"/v1/models/{MODEL}:predict",
                      {"inputs": {"user_id": ["u1"], "k": 99999999999}}, 400,
                      "outside DT_INT32"),
    "id not a string": ("POST", f"/v1/models/{MODEL}:predict",
                        {"inputs": {"user_id": [7], "k": 3}}, 400, "must hold strings"),
    "missing input": ("POST", f"/v1/models/{MODEL}:predict", {"inputs": {"user_id": ["u1"]}},
                      400, "missing input 'k'"),
    "extra input": ("POST", f"/v1/models/{MODEL}:predict",
                    {"inputs": {"user_id": ["u1"], "k": 3, "x": [1]}}, 400,
                    "unexpected input 'x'"),
    "ragged": ("POST", f"/v1/models/{MODEL}:predict",
               {"signature_name": "history", "inputs": {"history": [["i1", "i2"], ["i3"]],
                                                         "k": 3}}, 400, "ragged"),
    "both formats": ("POST", f"/v1/models/{MODEL}:predict", dict(GOOD, instances=[]), 400,
                     "exactly one of"),
    "instances differ": ("POST", f"/v1/models/{MODEL}:predict",
                         {"instances": [{"user_id": "u1", "k": 1}, {"user_id": "u2"}]}, 400,
                         "instance 1"),
    "not JSON": ("POST", f"/v1/models/{MODEL}:predict", "user_id=u1", 400, "JSON object"),
    "batch above max": ("POST", f"/v1/models/{MODEL}:predict",
                        {"inputs": {"user_id": ["u1"] * (MAX_BATCH + 1), "k": 3}}, 400,
                        f"limit of {MAX_BATCH}"),
    "body above 1 MB": ("POST", f"/v1/models/{MODEL}:predict",
                        {"inputs": {"user_id": ["u" * 1_100_000], "k": 3}}, 413, "limit"),
    "classify": ("POST", f"/v1/models/{MODEL}:classify", GOOD, 501, "not implemented"),
    "predict by GET": ("GET", f"/v1/models/{MODEL}:predict", None, 405, "takes POST"),
    "unknown path": ("GET", "/v2/models", None, 404, "Malformed request"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_tf_servings_http_code_and_an_error_body(server, case):
    _, url, _ = server
    method, path, body, code, text = BAD[case]
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    answer = requests.request(method, url + path, timeout=10, **kwargs)
    assert answer.status_code == code, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    (message,) = answer.json().values()
    assert list(answer.json()) == ["error"] and text in message and "\n" not in message
    good = requests.post(f"{url}/v1/models/{MODEL}:predict", json=GOOD, timeout=10)
    assert good.status_code == 200  # still serving


def _samples(url: str) -> dict:
    """{(name, frozenset of label items): value} from the Prometheus endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_by_api_signature_and_status(server):
    running, url, channel = server
    labels = dict(model=MODEL, method="Predict", signature="history")
    before = _samples(url)

    def count(api, code):
        key = ("tfrec_requests_total", frozenset(dict(labels, api=api, code=code).items()))
        return _samples(url).get(key, 0) - before.get(key, 0)

    body = {"signature_name": "history", "inputs": {"history": [["i1"]], "k": 2}}
    for _ in range(3):
        assert requests.post(f"{url}/v1/models/{MODEL}:predict", json=body, timeout=10).ok
    bad = {"signature_name": "history", "inputs": {"history": [[""]], "k": 2}}
    assert requests.post(f"{url}/v1/models/{MODEL}:predict", json=bad, timeout=10).status_code \
        == 400
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    stub.Predict(request("history", **CASES["history"]), timeout=10)
    for name in ("x1", "x2"):  # random signature names share one label value
        with pytest.raises(grpc.RpcError):
            stub.Predict(request(name, **CASES["history"]), timeout=10)
    assert (count("rest", "OK"), count("rest", "INVALID_ARGUMENT"), count("grpc", "OK")) == (
        3, 1, 1)
    samples = _samples(url)
    unknown = ("tfrec_requests_total", frozenset(dict(
        labels, api="grpc", signature="unknown", code="INVALID_ARGUMENT").items()))
    assert samples[unknown] - before.get(unknown, 0) == 2
    assert not any("x1" in str(key) for key in samples)
    latency = ("tfrec_request_latency_seconds_count", frozenset(dict(labels, api="rest").items()))
    assert samples[latency] - before.get(latency, 0) == 4
    assert samples[("tfrec_served_versions", frozenset({("model", MODEL)}))] == 1
    # One TF call per good request, one request each (sent one after the other); the bad
    # history was refused before reaching the batcher.
    batch = frozenset(dict(model=MODEL, signature="history").items())
    for sample in ("tfrec_batch_size_count", "tfrec_batch_size_sum"):
        assert samples[(sample, batch)] - before.get((sample, batch), 0) == 4


def test_health_and_access_log(server, caplog):
    _, url, _ = server
    assert requests.get(f"{url}/healthz", timeout=10).json() == {
        "status": "ok", "model": MODEL, "versions": [1]}
    with caplog.at_level(logging.INFO, logger="tfrec.access"):
        requests.post(f"{url}/v1/models/{MODEL}:predict", json=GOOD, timeout=10)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "tfrec.access"]
    assert " rest Predict model=movies signature=serving_default OK " in line
    assert line.endswith("ms")


def test_query_rest_equals_query_grpc(server, capsys):
    running, url, _ = server
    argv = ["query", "--model", MODEL, "--user", "u2", "--k", "4", "--json"]
    assert cli.main([*argv, "--server", f"127.0.0.1:{running.port}"]) == 0
    over_grpc = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--rest", "--server", f"127.0.0.1:{running.rest_port}"]) == 0
    assert json.loads(capsys.readouterr().out) == over_grpc and len(over_grpc["items"]) == 4
    assert cli.main(["query", "--rest", "--server", f"127.0.0.1:{running.rest_port}",
                     "--model", MODEL, "--user", "ghost"]) == 2
    assert capsys.readouterr().err == (
        f"tfrec: error: model server 127.0.0.1:{running.rest_port} answered HTTP 400 for model "
        "'movies': unknown user id 'ghost'\n")


def test_rest_gateway_modules_load_no_tensorflow():
    """`tfrec serve --native --rest-port`'s gateway imports TF Serving's messages, not TF."""
    import subprocess
    import sys

    code = ("import sys, tfrec.serving.gateway, tfrec.serving.rest_json; "
            "print(sorted(m for m in sys.modules if m.startswith('tensorflow.python')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
