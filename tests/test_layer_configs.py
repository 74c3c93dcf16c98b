"""get_config / from_config round trips of the heads and the text pooling layer: the config
restates every constructor argument, and the rebuilt layer (given the same weights) computes the
same numbers. The conv layers' round trips are in test_model_convs.py."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec.heads.alignment import AlignmentHead
from tfrec.heads.ranking import PairScorer, RankingHead
from tfrec.heads.retrieval import RetrievalHead
from tfrec.text.pooling import SentencePooling

RNG = np.random.default_rng(7)
USER = tf.constant(RNG.normal(size=(4, 3)), tf.float32)
ITEM = tf.constant(RNG.normal(size=(6, 3)), tf.float32)
POSITIVES = tf.constant([0, 3, 3, 1])


def _copies(layer):
    """The layer rebuilt from its config directly and through Keras' registry."""
    config = layer.get_config()
    copies = [type(layer).from_config(config),
              tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))]
    for copy in copies:
        assert type(copy) is type(layer) and copy.get_config() == config
    return copies


def _retrieval_call(head):
    head.draw_negatives = lambda: tf.constant([1, 3])  # the same draw for every copy
    return float(head(USER, ITEM, POSITIVES))


@pytest.mark.parametrize("negatives, sampling", [(None, None), (2, [0.25, 0.25, 0, 0.5, 0, 0])])
def test_retrieval_head(negatives, sampling):
    head = RetrievalHead([0, 1, 3, 5], temperature=0.3, negatives=negatives, chunk=2,
                         sampling=sampling, name="retrieval")
    config = head.get_config()
    assert {k: config[k] for k in ("candidates", "temperature", "negatives", "chunk")} == \
        {"candidates": [0, 1, 3, 5], "temperature": 0.3, "negatives": negatives, "chunk": 2}
    assert config["sampling"] == (None if sampling is None else pytest.approx(sampling))
    expected = _retrieval_call(head)
    for copy in _copies(head):
        assert _retrieval_call(copy) == pytest.approx(expected, abs=1e-6)


def test_alignment_head():
    head = AlignmentHead(temperature=0.25, text_only=True, name="align")
    assert head.get_config()["temperature"] == 0.25 and head.get_config()["text_only"] is True
    items = tf.constant([0, 2, 2, 5])
    expected = float(head(ITEM, ITEM[::-1], items))
    for copy in _copies(head):
        assert float(copy(ITEM, ITEM[::-1], items)) == pytest.approx(expected, abs=1e-6)


def test_pair_scorer():
    scorer = PairScorer(hidden=5, name="scorer")
    expected = scorer((USER, USER[::-1])).numpy()
    assert scorer.get_config()["hidden"] == 5
    for copy in _copies(scorer):
        copy((USER, USER[::-1]))
        assert [w.shape for w in copy.get_weights()] == [(9, 5), (5,), (5, 1), (1,)]
        copy.set_weights(scorer.get_weights())
        np.testing.assert_allclose(copy((USER, USER[::-1])).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("classification", [False, True])
def test_ranking_head(classification):
    head = RankingHead(classification, name="ranking")
    labels = tf.constant([1.0, 0.0, 1.0, 0.0])
    expected = float(head(USER, USER[::-1], labels))
    assert head.get_config()["classification"] is classification
    for copy in _copies(head):
        copy(USER, USER[::-1], labels)
        copy.set_weights(head.get_weights())
        assert float(copy(USER, USER[::-1], labels)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_sentence_pooling(normalize):
    # Two texts of 3 token positions, hidden size 2; the second text's last token is padding.
    # Means over real tokens: (1+3+5)/3, (2+4+6)/3 = (3, 4) -> unit (0.6, 0.8);
    # (0+6)/2, (8+0)/2 = (3, 4) -> (0.6, 0.8): the padding token (100, 100) is ignored.
    states = tf.constant([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                          [[0.0, 8.0], [6.0, 0.0], [100.0, 100.0]]])
    mask = tf.constant([[True, True, True], [True, True, False]])
    expected = [[0.6, 0.8], [0.6, 0.8]] if normalize else [[3.0, 4.0], [3.0, 4.0]]
    layer = SentencePooling(normalize=normalize, name="pool")
    for copy in [layer, *_copies(layer)]:
        np.testing.assert_allclose(copy(states, mask).numpy(), expected, rtol=1e-6)
