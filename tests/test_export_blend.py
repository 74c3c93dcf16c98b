"""A SavedModel with an item-item blend ranks with the blended scores of tfrec.evaluate.blend
(the evaluation's score function): serving_default, history and score, both scales."""

import dataclasses

import numpy as np
import pytest
from test_export_fixtures import make_artifacts, reference_top_k, retrieval_scores, seen_rows, tf

from tfrec.errors import TfrecError
from tfrec.evaluate.blend import Blend
from tfrec.evaluate.metrics import csr_from_pairs
from tfrec.export.artifacts import validate_artifacts
from tfrec.export.versions import export_model

USERS = ["u0", "u1", "u2", "u3", "u4"]


def _with_blend(method, weight=0.4):
    artifacts = make_artifacts(seed=5)
    rng = np.random.default_rng(7)
    b = rng.normal(size=(12, 12)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    # training history: the first seen item of each user (u4 has none: the model alone ranks)
    users = [u for u in range(5) if len(seen_rows(artifacts, u))]
    history = csr_from_pairs(users, [seen_rows(artifacts, u)[0] for u in users], 5)
    blend = Blend(b, history, weight, method, 100.0)
    return dataclasses.replace(artifacts, blend=blend)


# one SavedModel per scale (~15-30 s each): "zscore" in the default suite, the others slow
@pytest.fixture(scope="module", params=["zscore", pytest.param("rank", marks=pytest.mark.slow),
                                        pytest.param("max", marks=pytest.mark.slow)])
def blended(request, tmp_path_factory):
    artifacts = _with_blend(request.param)
    path = export_model(artifacts, tmp_path_factory.mktemp(request.param))
    return artifacts, tf.saved_model.load(str(path))


def _strings(tensor):
    return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(tensor.numpy())


def test_serving_default_ranks_with_the_evaluation_blend(blended):
    artifacts, model = blended
    out = model.signatures["serving_default"](user_id=tf.constant(USERS), k=tf.constant(5))
    base = retrieval_scores(artifacts, artifacts.user_embeddings)
    expected = artifacts.blend.score_fn(lambda rows: base[rows])(np.arange(5))
    rows, values = reference_top_k(expected, [seen_rows(artifacts, u) for u in range(5)], 5)
    ids = np.where(np.isinf(values), "", artifacts.item_ids[rows])
    np.testing.assert_array_equal(_strings(out["item_ids"]), ids)
    np.testing.assert_allclose(out["scores"].numpy(), values, rtol=1e-4, atol=1e-5)
    # the blend changes the ranking of this fixture (else the test would prove nothing)
    plain, _ = reference_top_k(base, [seen_rows(artifacts, u) for u in range(5)], 5)
    assert (plain != rows).any()


def test_history_blends_the_history_items_item_item_scores(blended):
    artifacts, model = blended
    history = [["item-3", "item-7", ""], ["", "item-11", ""]]
    out = model.signatures["history"](history=tf.constant(history), k=tf.constant(4))
    rows = [[3, 7], [11]]
    queries = np.stack([artifacts.item_embeddings[r].mean(axis=0) for r in rows])
    own = Blend(artifacts.blend.item_item, csr_from_pairs([0, 0, 1], [3, 7, 11], 2),
                artifacts.blend.weight, artifacts.blend.method, 100.0)
    expected = own.scores(retrieval_scores(artifacts, queries), np.arange(2))
    top, _ = reference_top_k(expected, rows, 4)
    np.testing.assert_array_equal(_strings(out["item_ids"]), artifacts.item_ids[top])


def test_score_is_the_blended_score(blended):
    artifacts, model = blended
    out = model.signatures["score"](user_id=tf.constant(["u2", "u0"]),
                                    item_ids=tf.constant([["item-4", "item-9"],
                                                          ["item-1", "item-1"]]))
    base = retrieval_scores(artifacts, artifacts.user_embeddings)
    full = artifacts.blend.scores(base[[2, 0]], np.array([2, 0]))
    np.testing.assert_allclose(out["scores"].numpy(), [full[0, [4, 9]], full[1, [1, 1]]],
                               rtol=1e-4, atol=1e-5)


def test_a_blend_of_the_wrong_shape_is_refused():
    artifacts = _with_blend("zscore")
    bad = dataclasses.replace(artifacts, blend=dataclasses.replace(
        artifacts.blend, item_item=np.zeros((11, 11), np.float32)))
    with pytest.raises(TfrecError, match=r"finite \[I, I\] = \[12, 12\]"):
        validate_artifacts(bad)
