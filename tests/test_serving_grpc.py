"""A real gRPC round trip on loopback: `tfrec serve` in-process, TF Serving's stubs as the client.

Every answer is compared with calling the SavedModel directly; every bad request must get its
status code and leave the server answering.
"""

import dataclasses
import json

import grpc
import numpy as np
import pytest

import tfrec
from tfrec import cli
from tfrec.serving import commands
from tfrec.serving.client import Recommendation, ServingClient
from tfrec.serving.predict_service import graph_message
from tfrec.serving.server import ModelServer, ServeConfig
from tfrec.export.versions import export_model
from tfrec.export.synthetic import random_artifacts
from tfrec.serving.tensors import to_numpy, to_proto
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import (  # noqa: E402  (after tfrec: Keras 2 first)
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    model_service_pb2_grpc,
)

tf = import_tf()
MODEL = "movies"
MAX_BATCH = 64


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(address, SavedModel loaded directly) for a 20-user, 50-item, D=8 model, version 1.

    Its text encoder (for item_text) is a stand-in: a one-hot of a hash of the text.
    """
    base = tmp_path_factory.mktemp("models") / MODEL
    encoder = tf.function(lambda text: tf.one_hot(tf.strings.to_hash_bucket_fast(text, 8), 8))
    artifacts = dataclasses.replace(
        random_artifacts(num_users=20, num_items=50, dim=8), text_encoder=encoder)
    path = export_model(artifacts, base, version=1)
    config = ServeConfig(model_base=base, port=0, poll_seconds=0, max_batch=MAX_BATCH,
                         max_message_mb=1, threads=4)
    with ModelServer(config) as server:
        yield f"127.0.0.1:{server.port}", tf.saved_model.load(str(path))


@pytest.fixture(scope="module")
def stubs(served):
    channel = grpc.insecure_channel(served[0])
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def request(signature="serving_default", name=MODEL, **inputs) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    for key, value in inputs.items():
        req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return req


def k(n: int) -> np.ndarray:
    return np.array(n, dtype=np.int32)


CASES = {  # signature -> inputs
    "serving_default": dict(user_id=np.array([b"u0", b"u7", b"u19"]), k=k(5)),
    "history": dict(history=np.array([[b"i1", b"i2", b""], [b"i40", b"", b""]]), k=k(7)),
    "score": dict(user_id=np.array([b"u3", b"u4"]),
                  item_ids=np.array([[b"i0", b"i9", b"i49"], [b"i5", b"i5", b"i6"]])),
    "similar_items": dict(item_id=np.array([b"i3"]), k=k(50 - 1)),
    "item_text": dict(text=np.array(["Amélie (2001)".encode(), b"", b"Heat"])),
}


@pytest.mark.parametrize("signature", sorted(CASES))
def test_predict_equals_the_savedmodel(served, stubs, signature):
    inputs = CASES[signature]
    response = stubs[0].Predict(request(signature, **inputs), timeout=10)
    expected = served[1].signatures[signature](**{n: tf.constant(v) for n, v in inputs.items()})
    assert sorted(response.outputs) == sorted(expected)
    for name, tensor in expected.items():
        got = tf.make_ndarray(response.outputs[name])  # TF's own converter reads our protos
        if tensor.dtype == tf.string:
            np.testing.assert_array_equal(got, tensor.numpy())
        else:
            np.testing.assert_allclose(got, tensor.numpy(), rtol=1e-6)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == signature


def test_default_signature_version_and_output_filter(stubs):
    req = request("", **CASES["serving_default"])  # "" = serving_default
    req.model_spec.version.value = 1
    req.output_filter.append("item_ids")
    response = stubs[0].Predict(req, timeout=10)
    assert list(response.outputs) == ["item_ids"]
    assert response.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(response.outputs["item_ids"]).shape == (3, 5)


def test_get_model_metadata(stubs):
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = MODEL
    response = stubs[0].GetModelMetadata(req, timeout=10)
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 1
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(defs)
    assert set(CASES) <= set(defs.signature_def)
    default = defs.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert {n: i.dtype for n, i in default.inputs.items()} == {
        "user_id": tf.string.as_datatype_enum, "k": tf.int32.as_datatype_enum}
    assert [d.size for d in default.inputs["user_id"].tensor_shape.dim] == [-1]
    assert set(default.outputs) == {"item_ids", "scores", "titles"}


def test_get_model_status(stubs):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = MODEL
    (status,) = stubs[1].GetModelStatus(req, timeout=10).model_version_status
    assert (status.version, status.state, status.status.error_code) == (
        1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    req.model_spec.version.value = 1
    assert len(stubs[1].GetModelStatus(req, timeout=10).model_version_status) == 1
    req.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as e:
        stubs[1].GetModelStatus(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def _with(req, **changes):
    for key, value in changes.items():
        if key == "version":
            req.model_spec.version.value = value
        elif key == "label":
            req.model_spec.version_label = value
    return req


def _declared(req, shape):
    """user_id claiming `shape` (TensorProto fills missing values with the last one)."""
    del req.inputs["user_id"].tensor_shape.dim[:]
    for n in shape:
        req.inputs["user_id"].tensor_shape.dim.add(size=n)
    return req


GOOD = CASES["serving_default"]
BAD_REQUESTS = {  # id -> (request, expected code, a piece of the message)
    "unknown model": (request(name="nope", **GOOD), "NOT_FOUND", "'nope'"),
    "unknown version": (_with(request(**GOOD), version=7), "NOT_FOUND", "version 7"),
    "version label": (_with(request(**GOOD), label="stable"), "INVALID_ARGUMENT", "label"),
    "unknown signature": (request("ranking", **GOOD), "INVALID_ARGUMENT", "'ranking'"),
    "missing input": (request(user_id=np.array([b"u1"])), "INVALID_ARGUMENT", "missing input 'k'"),
    "extra input": (request(**GOOD, extra=k(1)), "INVALID_ARGUMENT", "unexpected input 'extra'"),
    "mistyped input": (request(user_id=np.array([1, 2]), k=k(3)), "INVALID_ARGUMENT",
                       "input 'user_id' must be DT_STRING, got DT_INT64"),
    "k as int64": (request(user_id=np.array([b"u1"]), k=np.int64(3)), "INVALID_ARGUMENT",
                   "input 'k' must be DT_INT32"),
    "misshapen input": (request(user_id=np.array([[b"u1"]]), k=k(3)), "INVALID_ARGUMENT",
                        "input 'user_id' must have shape [?], got [1, 1]"),
    "unknown user": (request(user_id=np.array([b"u1", b"ghost"]), k=k(3)), "INVALID_ARGUMENT",
                     "unknown user id"),
    "k = 0": (request(user_id=np.array([b"u1"]), k=k(0)), "INVALID_ARGUMENT", "k"),
    "k > items": (request(user_id=np.array([b"u1"]), k=k(51)), "INVALID_ARGUMENT", "k"),
    "unknown item": (request("similar_items", item_id=np.array([b"zz"]), k=k(3)),
                     "INVALID_ARGUMENT", "unknown item id"),
    "history of pads only": (request("history", history=np.array([[b"", b""]]), k=k(3)),
                             "INVALID_ARGUMENT", "history"),
    "score batch mismatch": (request("score", user_id=np.array([b"u1", b"u2"]),
                                     item_ids=np.array([[b"i1"]])), "INVALID_ARGUMENT",
                             "different batch sizes"),
    "empty batch": (request(user_id=np.array([], dtype=object), k=k(3)), "INVALID_ARGUMENT",
                    "empty batch"),
    "batch above max": (request(user_id=np.array([b"u1"] * (MAX_BATCH + 1)), k=k(3)),
                        "INVALID_ARGUMENT", f"limit of {MAX_BATCH}"),
    "huge declared shape": (_declared(request(**GOOD), [1, 1 << 30]), "INVALID_ARGUMENT",
                            "declares shape [1, 1073741824]"),
    "huge declared batch": (_declared(request(**GOOD), [1 << 30]), "INVALID_ARGUMENT",
                            f"limit of {MAX_BATCH}"),
    "message above 1 MB": (request(user_id=np.array([b"u" * 2_000_000]), k=k(3)),
                           "RESOURCE_EXHAUSTED", ""),
}


def _bad_output_filter():
    req = request(**GOOD)
    req.output_filter.append("logits")
    return req


BAD_REQUESTS["unknown output_filter"] = (_bad_output_filter(), "INVALID_ARGUMENT", "'logits'")


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_code_and_server_keeps_serving(stubs, case):
    req, code, text = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as e:
        stubs[0].Predict(req, timeout=10)
    assert e.value.code().name == code, e.value.details()
    assert text in e.value.details()
    assert "\n" not in e.value.details() and "Graph execution" not in e.value.details()
    assert stubs[0].Predict(request(**GOOD), timeout=10).outputs["item_ids"].string_val


def test_other_rpcs_are_unimplemented_and_metadata_needs_a_field(stubs):
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as e:
        stubs[0].Classify(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    meta = get_model_metadata_pb2.GetModelMetadataRequest()
    meta.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as e:
        stubs[0].GetModelMetadata(meta, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_port_in_use_is_one_sentence(served, tmp_path):
    port = int(served[0].rsplit(":", 1)[1])
    base = tmp_path / "m"
    export_model(random_artifacts(num_users=3, num_items=5, dim=2), base, version=1)
    with pytest.raises(tfrec.TfrecError, match="cannot listen on 127.0.0.1"):
        ModelServer(ServeConfig(model_base=base, port=port, poll_seconds=0)).start()


# === tfrec query ===


def test_query_json_equals_the_savedmodel(served, capsys):
    assert cli.main(["query", "--server", served[0], "--model", MODEL, "--user", "u2",
                     "--k", "4", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    direct = served[1].signatures["serving_default"](user_id=tf.constant(["u2"]), k=k(4))
    assert [i["item_id"] for i in items] == [s.decode() for s in direct["item_ids"][0].numpy()]
    assert [i["title"] for i in items] == [s.decode() for s in direct["titles"][0].numpy()]
    np.testing.assert_allclose([i["score"] for i in items], direct["scores"][0], atol=1e-5)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


def test_query_drops_the_places_left_empty(served, capsys):
    # u5 has 5 seen items of 50: k=50 gives 45 items and 5 empty places (id "", score -inf).
    assert cli.main(["query", "--server", served[0], "--model", MODEL, "--user", "u5",
                     "--k", "50", "--json"]) == 0
    out = capsys.readouterr().out
    assert "Infinity" not in out and len(json.loads(out)["items"]) == 45


def test_query_table_for_a_history(served, capsys):
    assert cli.main(["query", "--server", served[0], "--model", MODEL,
                     "--history", "i1, i2,i3", "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    direct = served[1].signatures["history"](history=tf.constant([["i1", "i2", "i3"]]), k=k(3))
    assert lines[0].split() == ["rank", "item", "id", "title", "score"]
    assert len(lines) == 4
    for rank, line in enumerate(lines[1:], 1):
        item = direct["item_ids"][0, rank - 1].numpy().decode()
        title = direct["titles"][0, rank - 1].numpy().decode()
        score = float(direct["scores"][0, rank - 1])
        assert line.split()[:2] == [str(rank), item] and title in line
        assert abs(float(line.split()[-1]) - score) < 1e-4


@pytest.mark.parametrize("argv, message", [
    (["--model", MODEL, "--user", "ghost"], "answered INVALID_ARGUMENT for model 'movies': "
     "unknown user id"),
    (["--model", "other", "--user", "u1"], "answered NOT_FOUND"),
])
def test_query_errors_are_one_sentence(served, capsys, argv, message):
    assert cli.main(["query", "--server", served[0], *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfrec: error: model server {served[0]} {message}")
    assert err.count("\n") == 1


@pytest.mark.parametrize("k", ["99999999999", "0"])
def test_query_k_outside_int32_is_one_sentence(served, capsys, k):
    assert cli.main(["query", "--server", served[0], "--model", MODEL, "--user", "u1",
                     "--k", k]) == 2
    assert capsys.readouterr().err == (
        f"tfrec: error: --k must be between 1 and 2147483647 (k is an int32), got {k}.\n")


def test_query_unreachable_server(capsys):
    with ServingClient("127.0.0.1:1", timeout=5) as client:  # port 1: nothing listens
        with pytest.raises(tfrec.TfrecError, match="no model server reachable at 127.0.0.1:1"):
            client.recommend(MODEL, user="u1")


def test_client_helpers(served):
    with ServingClient(served[0]) as client:
        version, defs = client.metadata(MODEL)
        assert version == 1 and "history" in defs.signature_def
        assert [s.version for s in client.status(MODEL)] == [1]
        recs = client.recommend(MODEL, user="u0", k=2)
        assert len(recs) == 2 and all(isinstance(r, Recommendation) for r in recs)


# === Pieces ===


def test_format_table_pads_by_display_width():
    table = commands.format_table([Recommendation("i1", 0.5, "Amélie"),
                                   Recommendation("i22", 0.25, "七人の侍")])
    # "七人の侍" is 4 wide characters = 8 columns: the title column is 8 wide, every line
    # 4 + 2 + 7 + 2 + 8 + 2 + 6 = 31 columns.
    assert [commands._width(line) for line in table.splitlines()] == [31] * 3
    assert table.splitlines()[1] == "   1  i1       Amélie    0.5000"
    assert table.splitlines()[2] == "   2  i22      七人の侍  0.2500"


def test_graph_message_keeps_the_graph_sentence_only():
    raw = ("Graph execution error:\n\nDetected at node Assert/Assert defined at (most recent "
           "call last):\n<stack traces unavailable>\nassertion failed: [unknown user id "
           "\\'ghost\\']\n\t [[{{node Assert/Assert}}]] [Op:__inference_signature_wrapper_1]")
    assert graph_message(raw) == "unknown user id 'ghost'"
    assert graph_message("indices[0] = -1 is not in [0, 20) [Op:GatherV2]") == (
        "indices[0] = -1 is not in [0, 20)")


@pytest.mark.parametrize("array", [
    np.array([[b"a", b"\xc3\xa9"], [b"", b"d"]], dtype=object),
    np.array([1.5, -2.0], dtype=np.float32),
    np.array(7, dtype=np.int32),
    np.arange(6, dtype=np.int64).reshape(2, 3),
])
def test_tensor_conversion_round_trips_through_tf(array):
    proto = to_proto(array)
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    np.testing.assert_array_equal(to_numpy(tf.make_tensor_proto(array)), array)
    np.testing.assert_array_equal(to_numpy(proto), array)


def test_cli_registers_serve_and_query_with_defaults(capsys):
    parser = cli.build_parser()
    serve = parser.parse_args(["serve", "--model-base", "models/movies"])
    assert serve.func is commands.run_serve
    assert (serve.host, serve.port, serve.max_batch) == ("127.0.0.1", 8500, 1024)
    assert ServeConfig(model_base=serve.model_base).name == "movies"  # the folder name
    query = parser.parse_args(["query", "--model", "m", "--history", "a,b"])
    assert query.func is commands.run_query and (query.k, query.json) == (10, False)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["query", "--model", "m", "--user", "u", "--history", "a"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
