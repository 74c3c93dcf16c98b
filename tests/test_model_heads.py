"""Model parts against numpy references: initial states, the full-softmax retrieval loss with
item bias, and the one-way text alignment."""

import numpy as np
import tensorflow as tf

from tfrec.heads.alignment import AlignmentHead
from tfrec.heads.retrieval import RetrievalHead
from tfrec.model.inputs import EncoderSpec
from tfrec.model.recommender import Embeddings, NodeEncoder


def test_text_enters_the_state_of_id_less_nodes_only_when_cold_only():
    text = np.random.default_rng(0).normal(size=(3, 384)).astype(np.float32)
    features = {"row": tf.constant([0, 1, 2]), "id_mask": tf.constant([1.0, 0.0, 1.0]),
                "text": tf.constant(text)}
    for cold_only in (False, True):
        encoder = NodeEncoder(EncoderSpec(3, text=True), 4, text_cold_only=cold_only)
        h0, projected = encoder(features)
        ids = encoder.ids.embeddings.numpy() * [[1], [0], [1]]
        uses_text = np.array([[0], [1], [0]]) if cold_only else 1
        np.testing.assert_allclose(h0.numpy(), ids + projected.numpy() * uses_text, atol=1e-6)


def test_full_softmax_retrieval_loss_with_item_bias_is_the_reference():
    rng = np.random.default_rng(1)
    user, item = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    bias = rng.normal(size=5)
    positives = np.array([0, 3, 3, 1])
    e = Embeddings(tf.constant(user, tf.float32), tf.constant(item, tf.float32), None,
                   None, None, tf.constant(bias, tf.float32))
    users, items = e.scoring()
    logits = (user @ item.T + bias) / 0.5
    for candidates in ([0, 1, 2, 3, 4], [0, 1, 3]):  # all items; the items seen in training
        head = RetrievalHead(candidates, temperature=0.5, negatives=None, chunk=2)
        loss = head(users, items, tf.constant(positives))
        rows = logits[:, candidates]  # every candidate is a negative of every row
        log_softmax = rows - np.log(np.exp(rows).sum(1, keepdims=True))
        column = [candidates.index(p) for p in positives]
        expected = -log_softmax[np.arange(4), column].mean()
        assert abs(float(loss) - expected) < 1e-5


def test_text_only_alignment_moves_the_text_side_alone():
    rng = np.random.default_rng(2)
    text = tf.Variable(rng.normal(size=(6, 4)), dtype=tf.float32)
    graph = tf.Variable(rng.normal(size=(6, 4)), dtype=tf.float32)
    items = tf.constant([0, 2, 2, 5])
    for text_only in (False, True):
        with tf.GradientTape() as tape:
            loss = AlignmentHead(text_only=text_only)(text, graph, items)
        d_text, d_graph = tape.gradient(loss, [text, graph])
        assert np.abs(tf.convert_to_tensor(d_text).numpy()).sum() > 0
        assert (d_graph is None) == text_only


def test_node_encoder_config_round_trip_builds_the_same_layer():
    from tfrec.model.inputs import EncoderSpec

    spec = EncoderSpec(3, categorical={"colour": 4}, tokens={"tags": 5}, numeric=2, text=True)
    features = {"row": tf.constant([2, 0]), "cat.colour": tf.constant([3, 0]),
                "tokens.tags": tf.constant(np.eye(5, dtype=np.float32)[:2]),
                "numeric": tf.constant([[0.5, -1.0], [1.0, 2.0]]),
                "text": tf.constant(np.ones((2, 384), np.float32))}
    encoder = NodeEncoder(spec, 8, text_cold_only=True, name="encode_item")
    h0, _ = encoder(features)
    copy = NodeEncoder.from_config(encoder.get_config())
    assert copy.spec == spec and copy.dim == 8 and copy.text_cold_only
    assert copy.name == "encode_item"
    copy(features)
    copy.set_weights(encoder.get_weights())
    np.testing.assert_allclose(copy(features)[0].numpy(), h0.numpy(), atol=1e-6)
    # h0 of node 2 = its ID row + colour 3 + tag row 0 + the numeric projection + text (no
    # id_mask: every node has an ID and text_cold_only does not apply)
    expected = (encoder.ids.embeddings[2] + encoder.cats["colour"].embeddings[3]
                + encoder.multi["tags"].kernel[0]
                + features["numeric"][:1] @ encoder.numeric.kernel + encoder.numeric.bias
                + features["text"][:1] @ encoder.text.kernel)
    np.testing.assert_allclose(h0[:1].numpy(), expected.numpy(), atol=1e-5)


def test_retrieval_loss_in_a_step_traced_without_autograph_is_the_hand_value():
    # The training step is traced with autograph=False (tfrec.train.fit); TFRS's Retrieval
    # needs AutoGraph, so each head calls it through one nested tf.function of its own.
    # Two users and two items with one-hot embeddings, temperature 1, a full softmax over both
    # items, one row per chunk: row u scores [1, 0] (its positive u: 1, the other item: 0; the
    # positive's own copy among the candidates is an accidental hit, removed), so each row's
    # loss is -log(e / (e + 1)) = log(1 + 1/e) = 0.31326, and so is the mean.
    eye = tf.eye(2)
    head = RetrievalHead([0, 1], temperature=1.0, negatives=None, chunk=1)
    step = tf.function(lambda: head(eye, eye, tf.constant([0, 1])), autograph=False)
    assert abs(float(step()) - np.log1p(np.exp(-1.0))) < 1e-6
    assert head._loss.experimental_get_tracing_count() == 1  # both chunks: one trace
