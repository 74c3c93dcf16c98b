"""tfrec-native-serve (serving/native, `make native`) answers as `tfrec serve` does.

Both servers serve the same exported model (test_serving_grpc's: 20 users, 50 items, a
stand-in text encoder); every good request of test_serving_grpc must get the same
PredictResponse from both, and every bad one the same status code and the piece of message
that test expects. Skipped when the binary is not built.
"""

import dataclasses
import subprocess

import grpc
import pytest

from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving import native
from tfrec.serving.server import ModelServer, ServeConfig
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import (  # noqa: E402  (after tfrec: Keras 2 first)
    get_model_metadata_pb2,
    prediction_service_pb2_grpc,
)

from test_serving_grpc import BAD_REQUESTS, CASES, MAX_BATCH, MODEL, request

tf = import_tf()
pytestmark = pytest.mark.skipif(not native.binary().is_file(),
                                reason=f"{native.binary()} is not built (make native)")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """(native stub, Python stub) on one model base, with the same limits."""
    base = tmp_path_factory.mktemp("native") / MODEL
    encoder = tf.function(lambda text: tf.one_hot(tf.strings.to_hash_bucket_fast(text, 8), 8))
    export_model(dataclasses.replace(random_artifacts(num_users=20, num_items=50, dim=8),
                                     text_encoder=encoder), base, version=1)
    process = subprocess.Popen(
        native.command(base, port=0, max_batch=MAX_BATCH, max_message_mb=1),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # "tfrec-native-serve: model ... on HOST:PORT (pid N)"
    assert " on " in line, f"tfrec-native-serve did not start (exit {process.poll()})"
    config = ServeConfig(model_base=base, port=0, poll_seconds=0, max_batch=MAX_BATCH,
                         max_message_mb=1, threads=4)
    with ModelServer(config) as server:
        channels = [grpc.insecure_channel(line.split(" on ")[1].split()[0]),
                    grpc.insecure_channel(f"127.0.0.1:{server.port}")]
        yield tuple(prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels)
        for c in channels:
            c.close()
    process.terminate()  # SIGTERM: a clean stop
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("signature", sorted(set(CASES) - set(native.SKIPPED_SIGNATURES)))
def test_same_answer_as_tfrec_serve(stubs, signature):
    req = request(signature, **CASES[signature])
    got, want = (stub.Predict(req, timeout=10) for stub in stubs)
    assert got == want  # outputs (dtype, shape, values) and model_spec


def test_default_signature_version_and_output_filter(stubs):
    req = request("", **CASES["serving_default"])
    req.model_spec.version.value = 1
    req.output_filter.extend(["titles", "item_ids", "titles"])
    got, want = (stub.Predict(req, timeout=10) for stub in stubs)
    assert got == want
    assert sorted(got.outputs) == ["item_ids", "titles"]


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_same_code_for_a_bad_request(stubs, case):
    req, code, text = BAD_REQUESTS[case]
    errors = []
    for stub in stubs:
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(req, timeout=10)
        errors.append(e.value)
    assert [e.code().name for e in errors] == [code, code], errors[0].details()
    assert text in errors[0].details() and "\n" not in errors[0].details()
    # Same words, except gRPC's own (grpcio prefixes "SERVER: ") and which of two inputs is
    # named first (tfrec serve follows its protobuf map's order, which varies).
    if case not in ("message above 1 MB", "score batch mismatch"):
        assert errors[0].details() == errors[1].details()
    assert stubs[0].Predict(request(**CASES["serving_default"]), timeout=10).outputs


def test_item_text_is_left_to_tfrec_serve(stubs):
    with pytest.raises(grpc.RpcError) as e:
        stubs[0].Predict(request("item_text", **CASES["item_text"]), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "tfrec serve" in e.value.details()


def test_metadata_is_left_to_tfrec_serve(stubs):
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as e:
        stubs[0].GetModelMetadata(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.slow
def test_model_with_tf_text_ops_loads(tmp_path):
    """A real text encoder (MiniLM, tokenised by TF Text's ops): the SavedModel loads with TF
    Text's op libraries, serving_default answers as tfrec serve's, item_text is refused."""
    from tfrec.model.item_text import ItemTextEncoder
    from tfrec.text import SentenceEncoder

    encoder = ItemTextEncoder(SentenceEncoder(32), tf.keras.layers.Dense(8), 1.0)
    encoder(tf.constant(["build"]))
    base = tmp_path / MODEL
    export_model(dataclasses.replace(random_artifacts(num_users=20, num_items=50, dim=8),
                                     text_encoder=encoder), base, version=1)
    process = subprocess.Popen(native.command(base, port=0), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    assert " on " in line, f"tfrec-native-serve did not start (exit {process.poll()})"
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(line.split(" on ")[1].split()[0]))
    req = request(**CASES["serving_default"])
    with ModelServer(ServeConfig(model_base=base, port=0, poll_seconds=0)) as server:
        want = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(
            f"127.0.0.1:{server.port}")).Predict(req, timeout=60)
    assert stub.Predict(req, timeout=60) == want
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request("item_text", **CASES["item_text"]), timeout=60)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    process.terminate()
    assert process.wait(timeout=30) == 0
