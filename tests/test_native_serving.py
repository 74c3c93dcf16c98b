"""tfrec-native-serve (serving/native, `make native`) answers as `tfrec serve` does.

Both servers serve the same exported model (test_serving_grpc's: 20 users, 50 items, a
stand-in text encoder); every good request of test_serving_grpc must get the same
PredictResponse from both, every bad one the same status code and the piece of message that
test expects, and GetModelMetadata / GetModelStatus the same answers or errors. Versions:
tfrec serve's ModelStore and tfrec-native-serve go through the same changes of a model base
(test_serving_store's sequences) and must answer alike after each; a hot swap under
concurrent clients as test_serving_hotswap's. item_text also on a model that tokenises with
TF Text's ops (MiniLM's tokenizer), in fresh processes whose first calls are concurrent: that
is where the op libraries once aborted tfrec-native-serve. Skipped when the binary is not
built.
"""

import dataclasses
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving import native
from tfrec.serving.errors import RequestError
from tfrec.serving.model_store import ModelStore
from tfrec.serving.predict_service import model_metadata, model_status, predict_on, resolve
from tfrec.serving.server import ModelServer, ServeConfig
from tfrec.tf_setup import import_tf

from tensorflow_serving.apis import (  # noqa: E402  (after tfrec: Keras 2 first)
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from test_serving_grpc import BAD_REQUESTS, CASES, MAX_BATCH, MODEL, k, request
from test_serving_hotswap import wait_for_answers

tf = import_tf()
pytestmark = pytest.mark.skipif(not native.binary().is_file(),
                                reason=f"{native.binary()} is not built (make native)")


def start_native(base, stderr=subprocess.DEVNULL, **options):
    """(process, channel) of tfrec-native-serve on a free port."""
    process = subprocess.Popen(native.command(base, port=0, **options), stdout=subprocess.PIPE,
                               stderr=stderr, text=True)
    line = process.stdout.readline()  # "tfrec-native-serve: model ... on HOST:PORT (pid N)"
    assert " on " in line, f"tfrec-native-serve did not start (exit {process.poll()})"
    return process, grpc.insecure_channel(line.split(" on ")[1].split()[0])


def stop_native(process, channel):
    channel.close()
    process.terminate()  # SIGTERM: a clean stop
    assert process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def channels(tmp_path_factory):
    """(native channel, Python channel) on one model base, with the same limits."""
    base = tmp_path_factory.mktemp("native") / MODEL
    encoder = tf.function(lambda text: tf.one_hot(tf.strings.to_hash_bucket_fast(text, 8), 8))
    export_model(dataclasses.replace(random_artifacts(num_users=20, num_items=50, dim=8),
                                     text_encoder=encoder), base, version=1)
    process, native_channel = start_native(base, max_batch=MAX_BATCH, max_message_mb=1,
                                           poll_seconds=0)
    config = ServeConfig(model_base=base, port=0, poll_seconds=0, max_batch=MAX_BATCH,
                         max_message_mb=1, threads=4)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        yield native_channel, channel
        channel.close()
    stop_native(process, native_channel)


@pytest.fixture(scope="module")
def stubs(channels):
    """(native stub, Python stub) of PredictionService."""
    return tuple(prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels)


@pytest.fixture(scope="module")
def model_stubs(channels):
    """(native stub, Python stub) of ModelService."""
    return tuple(model_service_pb2_grpc.ModelServiceStub(c) for c in channels)


def answer(call, req):
    """A gRPC call's answer, or (code name, details) of its error."""
    try:
        return unpacked(call(req, timeout=10))
    except grpc.RpcError as e:
        return e.code().name, e.details()


def unpacked(response):
    """A GetModelMetadataResponse as (model_spec, type_url, SignatureDefMap): its packed bytes
    follow each server's map order; other answers as they are."""
    if not isinstance(response, get_model_metadata_pb2.GetModelMetadataResponse):
        return response
    packed = response.metadata["signature_def"]
    defs = get_model_metadata_pb2.SignatureDefMap()
    packed.Unpack(defs)
    return response.model_spec, list(response.metadata), packed.type_url, defs


@pytest.mark.parametrize("signature", sorted(CASES))
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


TEXTS = {  # good item_text inputs
    "titles": CASES["item_text"]["text"],  # an accent, an empty title
    "not UTF-8": np.array([b"\xff\xfe Heat"]),
    "long": np.array([b"word " * 2000]),  # far beyond the tokens kept
}
BAD_TEXT_REQUESTS = {  # item_text requests both servers refuse
    "int64 text": request("item_text", text=np.array([1, 2])),
    "text matrix": request("item_text", text=np.array([[b"Heat"]])),
    "no text": request("item_text", k=k(3)),
    "no rows": request("item_text", text=np.array([], dtype=object)),
    "rows above max": request("item_text", text=np.array([b"Heat"] * (MAX_BATCH + 1))),
}


def assert_item_text_as_tfrec_serve(stubs):
    """Every TEXTS embedding of both servers alike (rtol 1e-6, as test_serving_grpc), every
    BAD_TEXT_REQUESTS answer the same error (code and words)."""
    for text in TEXTS.values():
        got, want = (stub.Predict(request("item_text", text=text), timeout=60) for stub in stubs)
        assert got.model_spec == want.model_spec and list(got.outputs) == ["embedding"]
        np.testing.assert_allclose(tf.make_ndarray(got.outputs["embedding"]),
                                   tf.make_ndarray(want.outputs["embedding"]), rtol=1e-6)
    for case, req in BAD_TEXT_REQUESTS.items():
        got, want = (answer(stub.Predict, req) for stub in stubs)
        assert got == want and got[0] == "INVALID_ARGUMENT", case


def concurrent_item_text(stub, calls, clients=8):
    """The embeddings of `calls` item_text calls (TEXTS["titles"]) from `clients` threads that
    start together; a failed call raises."""
    req = request("item_text", text=TEXTS["titles"])
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda _: tf.make_ndarray(
            stub.Predict(req, timeout=60).outputs["embedding"]), range(calls)))


def test_item_text_as_tfrec_serve(stubs):
    assert_item_text_as_tfrec_serve(stubs)


class TokenCounts(tf.keras.layers.Layer):
    """item_text's text ops without BERT: MiniLM's tokenizer (TF Text: normalisation,
    WordPiece, round-robin trim), then per text the counts of its token ids modulo 8."""

    def __init__(self):
        super().__init__()
        from tfrec.text.converter import default_checkpoint_dir
        from tfrec.text.preprocessing import make_preprocessor, make_tokenizer

        tokenizer = make_tokenizer(default_checkpoint_dir() / "vocab.txt")
        self.preprocessor = make_preprocessor(tokenizer, sequence_length=16)

    def call(self, text):
        tokens = self.preprocessor(text)
        real = tf.cast(tokens["padding_mask"], tf.float32)[..., None]
        return tf.reduce_sum(tf.one_hot(tokens["token_ids"] % 8, 8) * real, axis=1)


def test_item_text_with_tf_text_ops_in_fresh_processes(tmp_path):
    """Three fresh tfrec-native-serve processes on a model whose item_text runs TF Text's ops:
    70 calls each from 8 clients at once as its first calls, all alike; then TEXTS and
    BAD_TEXT_REQUESTS as tfrec serve; each process stops cleanly (exit 0, never aborted)."""
    base = tmp_path / MODEL
    export_model(dataclasses.replace(random_artifacts(num_users=20, num_items=50, dim=8),
                                     text_encoder=TokenCounts()), base, version=1)
    config = ServeConfig(model_base=base, port=0, poll_seconds=0, max_batch=MAX_BATCH)
    with ModelServer(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        want = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(3):  # before the fix, most processes aborted at their first call
            process, native_channel = start_native(base, max_batch=MAX_BATCH)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(native_channel)
            first, *rest = concurrent_item_text(stub, calls=70)
            assert first.shape == (3, 8) and all(np.array_equal(e, first) for e in rest)
            assert_item_text_as_tfrec_serve((stub, want))
            stop_native(process, native_channel)
        channel.close()


def _spec(req, version, label, name):
    """`req` with its model_spec set: name, and version or label when given."""
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    return req


def _metadata(version=None, label=None, name=MODEL, fields=("signature_def",)):
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    return _spec(req, version, label, name)


def _status(version=None, label=None, name=MODEL):
    return _spec(get_model_status_pb2.GetModelStatusRequest(), version, label, name)


METADATA = {
    "latest": _metadata(), "version 1": _metadata(1), "version 9": _metadata(9),
    "label": _metadata(label="stable"), "other model": _metadata(name="films"),
    "no field": _metadata(fields=()), "unknown field": _metadata(fields=("signature_def", "x")),
}
STATUS = {
    "all": _status(), "version 1": _status(1), "version 9": _status(9),
    "label": _status(label="stable"), "other model": _status(name="films"),
}


@pytest.mark.parametrize("case", list(METADATA))
def test_metadata_as_tfrec_serve(stubs, case):
    got, want = (answer(stub.GetModelMetadata, METADATA[case]) for stub in stubs)
    assert got == want
    if case == "latest":  # the SignatureDefs of the MetaGraphDef, as they are
        assert set(CASES) <= set(got[3].signature_def)


@pytest.mark.parametrize("case", list(STATUS))
def test_status_as_tfrec_serve(model_stubs, case):
    got, want = (answer(stub.GetModelStatus, STATUS[case]) for stub in model_stubs)
    assert got == want


def test_other_rpcs_are_unimplemented(stubs):
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = MODEL
    code, details = answer(stubs[0].Classify, req)
    assert code == "UNIMPLEMENTED" and "tfrec serve" in details


def _python(call, *args):
    """`call(*args)` of tfrec serve's own functions, or (code name, message) of its error."""
    try:
        return call(*args)
    except RequestError as e:
        return e.code.name, str(e)


def _errors_hidden(response):
    """A GetModelStatusResponse with each load error replaced by "(error)": the words are
    TensorFlow's, from its C++ loader in one server and from Python in the other."""
    if isinstance(response, get_model_status_pb2.GetModelStatusResponse):
        for entry in response.model_version_status:
            if entry.status.error_message:
                entry.status.error_message = "(error)"
    return response


def add_version(source, base, version):
    """A copy of the version folder `source` appears at once as `base/<version>` (rename)."""
    shutil.copytree(source, base / f".copy-{version}")
    (base / f".copy-{version}").rename(base / str(version))


def _settled(native_side, python_side, timeout=60):
    """Waits until tfrec-native-serve (polling in its own thread) answers as tfrec serve's
    ModelStore does after its poll; returns both answers."""
    deadline = time.monotonic() + timeout
    while True:
        got, want = native_side(), python_side()
        if got == want or time.monotonic() > deadline:
            return got, want
        time.sleep(0.05)


def test_versions_are_polled_swapped_and_unloaded_as_tfrec_serve(tmp_path):
    """model_store's sequences (test_serving_store) on both servers: the newest 2 versions,
    a reused version number, removed folders, a version that fails to load, no version left.
    tfrec-native-serve polls on SIGHUP (--poll-seconds 0), tfrec serve's ModelStore when told;
    after each step every answer of both must be the same."""
    base, spare = tmp_path / MODEL, tmp_path / "spare"
    for seed, version in [(2, 2), (3, 3)]:
        export_model(random_artifacts(num_users=6, num_items=9, dim=4, seed=seed), base, version)
    export_model(random_artifacts(num_users=6, num_items=9, dim=4, seed=30), spare, version=1)
    add_version(base / "2", base, 1)
    log = tmp_path / "native.log"
    with open(log, "w") as stderr:
        process, channel = start_native(base, stderr=stderr, poll_seconds=0, num_versions=2)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    status = model_service_pb2_grpc.ModelServiceStub(channel)
    store = ModelStore(base, MODEL, poll_seconds=0, num_versions=2)
    store.load_initial()
    user = dict(user_id=[b"u1", b"u2"], k=CASES["serving_default"]["k"])
    requests = [request(**user)]
    for version in (1, 2, 3, 5):
        requests.append(request(**user))
        requests[-1].model_spec.version.value = version

    def native_side():
        return ([answer(predict.Predict, r) for r in requests],
                _errors_hidden(answer(status.GetModelStatus, _status())),
                answer(predict.GetModelMetadata, _metadata()))

    def python_side():
        return ([_python(lambda r: predict_on(resolve(store, r.model_spec), r, MAX_BATCH,
                                              MODEL), r) for r in requests],
                _errors_hidden(_python(model_status, store, _status().model_spec)),
                unpacked(_python(model_metadata, store, _metadata().model_spec,
                                 ["signature_def"])))

    def step():
        process.send_signal(signal.SIGHUP)
        store.poll_once()
        return _settled(native_side, python_side)

    first, want = _settled(native_side, python_side)
    assert first == want and [s.version for s in first[1].model_version_status] == [3, 2]
    assert first[0][1] == ("NOT_FOUND", "version 1 of model 'movies' is not available "
                                        "(serving 3, 2)")
    # 3 and 1 removed and 3 exported again between two polls: the new 3 is served.
    shutil.rmtree(base / "3")
    shutil.rmtree(base / "1")
    add_version(spare / "1", base, 3)
    got, want = step()
    assert got == want and got[0][0] != first[0][0]  # the new 3's answer
    # 3 removed: 2 only. A version that fails to load: 2 still served, END with an error.
    shutil.rmtree(base / "3")
    got, want = step()
    assert got == want and [s.version for s in got[1].model_version_status] == [3, 2]
    (base / ".4").mkdir()
    (base / ".4" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (base / ".4").rename(base / "4")
    got, want = step()
    assert got == want and got[0][0].model_spec.version.value == 2  # 2 still served
    (failed, *_) = status.GetModelStatus(_status(), timeout=10).model_version_status
    assert (failed.version, failed.state, failed.status.error_code) == (
        4, get_model_status_pb2.ModelVersionStatus.END, 2)
    assert failed.status.error_message and "\n" not in failed.status.error_message
    # Every folder gone: nothing served (NOT_FOUND, same words); then version 5 appears.
    shutil.rmtree(base / "4")
    shutil.rmtree(base / "2")
    got, want = step()
    assert got == want and "no version to serve" in got[0][0][1]
    add_version(spare / "1", base, 5)
    got, want = step()
    assert got == want and got[0][4].model_spec.version.value == 5
    stop_native(process, channel)
    failures = [line for line in log.read_text().splitlines() if "failed to load" in line]
    assert len(failures) == 1 and "version 4 of model movies" in failures[0], failures


def test_a_new_version_is_found_every_poll_seconds(tmp_path):
    """--poll-seconds: a version folder that appears is served without a SIGHUP."""
    base = tmp_path / MODEL
    export_model(random_artifacts(num_users=6, num_items=9, dim=4), base, version=1)
    process, channel = start_native(base, poll_seconds=0.1)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = request(user_id=[b"u1"], k=CASES["serving_default"]["k"])
    assert stub.Predict(req, timeout=10).model_spec.version.value == 1
    add_version(base / "1", base, 2)
    deadline = time.monotonic() + 60
    while stub.Predict(req, timeout=10).model_spec.version.value != 2:
        assert time.monotonic() < deadline, "version 2 was not served within 60 s"
        time.sleep(0.05)
    stop_native(process, channel)


def test_hot_swap_under_concurrent_load(tmp_path):
    """test_serving_hotswap's test on tfrec-native-serve: 4 clients ask while version 2
    replaces version 1; every answer is its version's, none fails, none goes back to 1."""
    base, staging = tmp_path / MODEL, tmp_path / "staging"
    users = [b"u1", b"u2", b"u3", b"u4", b"u5"]
    expected = {}
    for version, folder in [(1, base), (2, staging)]:
        path = export_model(random_artifacts(num_users=6, num_items=9, dim=4, seed=version),
                            folder, version=version)
        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        expected[version] = fn(user_id=tf.constant(users), k=tf.constant(3))["item_ids"]
    assert expected[1].numpy().tolist() != expected[2].numpy().tolist()
    process, channel = start_native(base, poll_seconds=0.1)
    stop, answers, errors = threading.Event(), [], []

    def client(index):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        while not stop.is_set():
            try:
                response = stub.Predict(request(user_id=users, k=np.int32(3)), timeout=20)
            except grpc.RpcError as e:
                errors.append(e)
                continue
            version = response.model_spec.version.value
            answers.append((index, version, tf.make_ndarray(response.outputs["item_ids"])
                            .tolist() == expected[version].numpy().tolist()))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_for_answers(answers, 1, clients=4)
    (staging / "2").rename(base / "2")
    wait_for_answers(answers, 2, clients=4)
    stop.set()
    for t in threads:
        t.join()
    stop_native(process, channel)
    assert errors == [] and all(ok for *_, ok in answers)
    for index in range(4):  # per client: both versions, once on 2 never back to 1
        seq = [v for i, v, _ in answers if i == index]
        assert seq.count(1) >= 10 and seq.count(2) >= 10
        assert seq == sorted(seq) and seq[-1] == 2


@pytest.mark.slow
def test_minilm_model_as_tfrec_serve(tmp_path):
    """A real text encoder (MiniLM, tokenised by TF Text's ops): 200 item_text calls from 8
    clients at once as the process's first calls, all alike; then serving_default, TEXTS and
    BAD_TEXT_REQUESTS as tfrec serve."""
    from tfrec.model.item_text import ItemTextEncoder
    from tfrec.text import SentenceEncoder

    encoder = ItemTextEncoder(SentenceEncoder(32), tf.keras.layers.Dense(8), 1.0)
    encoder(tf.constant(["build"]))
    base = tmp_path / MODEL
    export_model(dataclasses.replace(random_artifacts(num_users=20, num_items=50, dim=8),
                                     text_encoder=encoder), base, version=1)
    process, channel = start_native(base, max_batch=MAX_BATCH)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    first, *rest = concurrent_item_text(stub, calls=200)
    assert all(np.array_equal(e, first) for e in rest)
    config = ServeConfig(model_base=base, port=0, poll_seconds=0, max_batch=MAX_BATCH)
    with ModelServer(config) as server:
        python_channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        stubs = (stub, prediction_service_pb2_grpc.PredictionServiceStub(python_channel))
        req = request(**CASES["serving_default"])
        assert stubs[0].Predict(req, timeout=60) == stubs[1].Predict(req, timeout=60)
        assert_item_text_as_tfrec_serve(stubs)
        python_channel.close()
    stop_native(process, channel)


@pytest.mark.parametrize("flags, words", [
    (["--model-base", "/nonexistent/models"], "model base /nonexistent/models is not a folder."),
    (["--model-base", str(Path(__file__).parent)], "has no version folder"),
    (["--model-base", ".", "--workers", "2"], "tfrec serve --native does not support --workers"),
])
def test_bad_native_serve_commands_say_one_sentence_and_exit_2(flags, words):
    """Checked before the native server starts: no log lines of TF's library first."""
    done = subprocess.run([sys.executable, "-m", "tfrec.cli", "serve", "--native", *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], done.stderr
