"""The exported SavedModel answers every CONTRACT.md signature like a plain numpy reference.

Two exports per module: `full` (a Keras scorer + a keras-nlp text encoder) and `plain` (dot
product, no text encoder), 5 users x 12 items x D=4; user "u4" has no seen items.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_export_fixtures import (MeanTextEncoder, make_artifacts, make_scorer, reference_top_k,
                                  retrieval_scores, seen_rows, tf)

from tfrec.export.versions import METADATA_FILE, WARMUP_FILE, export_model

USERS = ["u0", "u1", "u2", "u3", "u4"]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    artifacts = make_artifacts(scorer=make_scorer(), text_encoder=MeanTextEncoder())
    path = export_model(artifacts, tmp_path_factory.mktemp("full"))
    return artifacts, path, tf.saved_model.load(str(path))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    artifacts = make_artifacts(seed=3)
    path = export_model(artifacts, tmp_path_factory.mktemp("plain"))
    return artifacts, path, tf.saved_model.load(str(path))


def _strings(tensor):
    return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(tensor.numpy())


def _check_top_k(out, artifacts, scores, exclude, k):
    """out (item_ids, scores, titles [B, k]) against the numpy top-k of scores minus exclude."""
    rows, values = reference_top_k(scores, exclude, k)
    ids = np.where(np.isinf(values), "", artifacts.item_ids[rows])
    titles = np.where(np.isinf(values), "", artifacts.item_titles[rows])
    np.testing.assert_array_equal(_strings(out["item_ids"]), ids)
    np.testing.assert_array_equal(_strings(out["titles"]), titles)
    np.testing.assert_allclose(out["scores"].numpy(), values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 12])
def test_serving_default_is_numpy_top_k_without_seen_items(full, k):
    artifacts, _, model = full
    out = model.signatures["serving_default"](user_id=tf.constant(USERS), k=tf.constant(k))
    scores = retrieval_scores(artifacts, artifacts.user_embeddings)
    _check_top_k(out, artifacts, scores, [seen_rows(artifacts, u) for u in range(5)], k)
    # k = 12 = I: u0 saw 3 items, so its last 3 places are padding ("" and -inf).
    if k == 12:
        assert _strings(out["item_ids"])[0, -3:].tolist() == ["", "", ""]


def test_k_may_be_one_value_per_row(full):
    artifacts, _, model = full
    out = model.signatures["serving_default"](user_id=tf.constant(["u1", "u2"]),
                                              k=tf.constant([2, 4]))
    ids = _strings(out["item_ids"])
    assert ids.shape == (2, 4) and ids[0, 2:].tolist() == ["", ""] and "" not in ids[1]
    single = model.signatures["serving_default"](user_id=tf.constant(["u1"]), k=tf.constant(2))
    np.testing.assert_array_equal(ids[:1, :2], _strings(single["item_ids"]))


def test_history_uses_mean_of_history_items_and_excludes_them(full):
    artifacts, _, model = full
    history = [["item-3", "item-7", ""], ["", "item-11", ""]]
    out = model.signatures["history"](history=tf.constant(history), k=tf.constant(4))
    # Reference: query = mean of the row's item embeddings; those items are excluded.
    rows = [[3, 7], [11]]
    queries = np.stack([artifacts.item_embeddings[r].mean(axis=0) for r in rows])
    _check_top_k(out, artifacts, retrieval_scores(artifacts, queries), rows, 4)


def test_history_query_of_an_ensemble_is_scaled(tmp_path):
    """history_scale 1/3 (three members side by side): query = mean of the history items / 3,
    so the item bias weighs as in each member's own history score."""
    artifacts = dataclasses.replace(make_artifacts(), history_scale=1 / 3)
    model = tf.saved_model.load(str(export_model(artifacts, tmp_path)))
    out = model.signatures["history"](history=tf.constant([["item-3", "item-7"]]),
                                      k=tf.constant(4))
    query = artifacts.item_embeddings[[3, 7]].mean(axis=0, keepdims=True) / 3
    _check_top_k(out, artifacts, retrieval_scores(artifacts, query), [[3, 7]], 4)


def test_score_applies_the_scorer_to_every_pair(full):
    artifacts, _, model = full
    items = [["item-0", "item-5", "item-5"], ["item-11", "item-1", "item-2"]]
    out = model.signatures["score"](user_id=tf.constant(["u3", "u0"]), item_ids=tf.constant(items))
    users = artifacts.user_embeddings[[3, 3, 3, 0, 0, 0]]
    pairs = artifacts.item_embeddings[[0, 5, 5, 11, 1, 2]]
    scorer = make_scorer()  # same seed -> same weights as the exported one
    expected = scorer([users, pairs]).numpy().reshape(2, 3)
    np.testing.assert_allclose(out["scores"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_score_without_scorer_is_the_retrieval_score(plain):
    artifacts, _, model = plain
    out = model.signatures["score"](user_id=tf.constant(["u2"]),
                                    item_ids=tf.constant([["item-4", "item-9"]]))
    expected = retrieval_scores(artifacts, artifacts.user_embeddings[[2]])[0, [4, 9]]
    np.testing.assert_allclose(out["scores"].numpy(), [expected], rtol=1e-5)


def test_similar_items_is_cosine_top_k_without_the_query(plain):
    artifacts, _, model = plain
    out = model.signatures["similar_items"](item_id=tf.constant(["item-2", "item-9"]),
                                            k=tf.constant(3))
    unit = artifacts.item_embeddings / np.linalg.norm(artifacts.item_embeddings, axis=1,
                                                      keepdims=True)
    _check_top_k(out, artifacts, unit[[2, 9]] @ unit.T, [[2], [9]], 3)


def test_plain_dot_product_serving_default_and_no_item_text(plain):
    artifacts, _, model = plain
    assert sorted(model.signatures) == ["history", "score", "serving_default", "similar_items"]
    out = model.signatures["serving_default"](user_id=tf.constant(["u3"]), k=tf.constant(5))
    scores = retrieval_scores(artifacts, artifacts.user_embeddings[[3]])
    _check_top_k(out, artifacts, scores, [seen_rows(artifacts, 3)], 5)


def test_item_text_is_the_text_encoder(full):
    artifacts, _, model = full
    texts = ["Red shoes", "blue hat coat"]
    out = model.signatures["item_text"](text=tf.constant(texts))["embedding"].numpy()
    np.testing.assert_allclose(out, artifacts.text_encoder.reference(texts), rtol=1e-5)


@pytest.mark.parametrize("signature, inputs, message", [
    ("serving_default", dict(user_id=["u1", "nobody"], k=3), "unknown user id 'nobody'"),
    ("serving_default", dict(user_id=["u1"], k=0), r"k must be between 1 and 12 .* got 0"),
    ("serving_default", dict(user_id=["u1"], k=13), r"k must be between 1 and 12 .* got 13"),
    ("serving_default", dict(user_id=["u1", "u2", "u3"], k=[2, 2]), "one value per row"),
    ("similar_items", dict(item_id=["item-99"], k=2), "unknown item id 'item-99'"),
    ("similar_items", dict(item_id=["item-1"], k=-1), "got -1"),
    ("history", dict(history=[["item-1", ""], ["", ""]], k=2), "history row 1 has no item id"),
    ("history", dict(history=[["item-1", "bad"]], k=2), "unknown item id 'bad'"),
    ("history", dict(history=[["item-1"]], k=40), "got 40"),
    ("score", dict(user_id=["zz"], item_ids=[["item-1"]]), "unknown user id 'zz'"),
    ("score", dict(user_id=["u1"], item_ids=[["item-1", "x"]]), "unknown item id 'x'"),
    ("score", dict(user_id=["u1", "u2"], item_ids=[["item-1"]]), "one row of item_ids"),
])
def test_bad_requests_raise_invalid_argument_naming_the_culprit(plain, signature, inputs,
                                                                 message):
    _, _, model = plain
    tensors = {key: tf.constant(value, tf.int32 if key == "k" else tf.string)
               for key, value in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.signatures[signature](**tensors)
    # The Assert op C-escapes quotes in its message: assertion failed: [unknown user id \'x\']
    assert re.search(message, error.value.message.replace("\\'", "'")), error.value.message


def test_signature_defs_are_predict_and_text_ops_only_in_item_text(full):
    from tensorflow.core.protobuf import saved_model_pb2

    _, path, _ = full
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    (graph,) = saved.meta_graphs
    defs = {k: v for k, v in graph.signature_def.items() if not k.startswith("__")}  # init op
    assert set(defs) == {"serving_default", "history", "score", "similar_items", "item_text"}
    assert {d.method_name for d in defs.values()} == {"tensorflow/serving/predict"}
    assert set(defs["serving_default"].inputs) == {"user_id", "k"}
    assert set(defs["serving_default"].outputs) == {"item_ids", "scores", "titles"}
    functions = {f.signature.name: f for f in graph.graph_def.library.function}
    nodes = {n.name: n for n in graph.graph_def.node}

    def ops(func_name, seen):
        if func_name in seen:
            return set()
        seen.add(func_name)
        found = set()
        for node in functions[func_name].node_def:
            found.add(node.op)
            if "f" in node.attr and node.attr["f"].func.name:
                found |= ops(node.attr["f"].func.name, seen)
        return found

    text_markers = ("Wordpiece", "Tokenize", "UTF8", "Regex", "Normalize")
    for name, signature in defs.items():
        call = nodes[next(iter(signature.outputs.values())).name.split(":")[0]]
        used = ops(call.attr["f"].func.name, set())
        has_text = any(marker in op for op in used for marker in text_markers)
        assert has_text == (name == "item_text"), (name, sorted(used))


def test_warmup_requests_cover_every_signature_and_run(full):
    from tensorflow_serving.apis import prediction_log_pb2

    _, path, model = full
    records = tf.data.TFRecordDataset(str(path / "assets.extra" / WARMUP_FILE))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    names = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert names == ["serving_default", "history", "score", "similar_items", "item_text"]
    # Named after the base folder, the name `tfrec serve` (and TF Serving's models.config) use.
    assert {log.predict_log.request.model_spec.name for log in logs} == {path.parent.name}
    for log in logs:
        request = log.predict_log.request
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        if "k" in inputs:  # batch-ready: TF Serving batching rejects scalar inputs
            assert inputs["k"].shape == (1,)
        out = model.signatures[request.model_spec.signature_name](**inputs)
        assert all(tensor.shape[0] == 1 for tensor in out.values())
    ids = [log.predict_log.request.inputs["user_id"].string_val[0] for log in logs[:1]]
    assert ids == [b"u0"]  # a real id of the artifacts


def test_metadata_json(full):
    _, path, _ = full
    metadata = json.loads((path / "assets.extra" / METADATA_FILE).read_text(encoding="utf-8"))
    assert metadata["schema"] == "test" and metadata["metrics"] == {"recall@10": 0.5}
    assert metadata["signatures"][-1] == "item_text" and metadata["version"] == 1
    assert metadata["num_items"] == 12 and metadata["embedding_dim"] == 4
    assert metadata["export_time"].endswith("+00:00")


def test_loads_and_answers_with_only_tensorflow_and_tensorflow_text(full):
    artifacts, path, _ = full
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        import tensorflow_text  # registers the tokenizer ops of item_text
        # `import tensorflow` itself may import Keras 3; loading must not import more of it.
        before = set(sys.modules)
        model = tf.saved_model.load({str(path)!r})
        out = model.signatures["serving_default"](user_id=tf.constant(["u1"]), k=tf.constant(3))
        text = model.signatures["item_text"](text=tf.constant(["red shoes"]))["embedding"]
        banned = sorted(m for m in set(sys.modules) - before
                        if m.split(".")[0] in ("tfrec", "keras", "tf_keras", "keras_nlp"))
        banned += [m for m in sys.modules if m.split(".")[0] in ("tfrec", "tf_keras")]
        print(json.dumps({{"ids": [b.decode() for b in out["item_ids"].numpy()[0]],
                          "scores": out["scores"].numpy()[0].tolist(),
                          "text": text.numpy()[0].tolist(), "banned": banned}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["banned"] == []
    rows, values = reference_top_k(retrieval_scores(artifacts, artifacts.user_embeddings[[1]]),
                                   [seen_rows(artifacts, 1)], 3)
    assert result["ids"] == artifacts.item_ids[rows[0]].tolist()
    np.testing.assert_allclose(result["scores"], values[0], rtol=1e-5)
    np.testing.assert_allclose(result["text"], artifacts.text_encoder.reference(["red shoes"])[0],
                               rtol=1e-5)
