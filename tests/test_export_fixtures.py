"""Shared helpers of the export tests (no tests here): small random artifacts and stand-ins.

`make_artifacts` builds 5 users x 12 items x D=4 by default, with a CSR of seen items in which
one user ("u4") has an empty row, so the reference must cope with nothing to exclude.
"""

import numpy as np

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfrec.export.synthetic import random_artifacts
from tfrec.tf_setup import import_tf

tf = import_tf()

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "shoe", "##s", "hat", "coat"]


def make_artifacts(num_users=5, num_items=12, dim=4, seed=0, scorer=None, text_encoder=None,
                   seen_per_user=(3, 1, 2, 4, 0)):
    """Random ExportArtifacts; user b has seen_per_user[b % len] distinct random items."""
    return random_artifacts(num_users, num_items, dim, seen_per_user, seed, item_prefix="item-",
                            title="Title é {}", scorer=scorer, text_encoder=text_encoder,
                            metadata={"schema": "test", "metrics": {"recall@10": 0.5}})


def retrieval_scores(artifacts, queries):
    """queries [B, D] -> [B, I]: dot products with every item plus the item bias."""
    return queries @ artifacts.item_embeddings.T + artifacts.item_bias


def make_scorer(dim=4, seed=1):
    """A tiny ranking head: (user [B, D], item [B, D]) -> [B] = Dense(1)(relu(Dense(8)(u*i)))."""
    tf.keras.utils.set_random_seed(seed)
    user = tf.keras.Input((dim,), name="user_emb")
    item = tf.keras.Input((dim,), name="item_emb")
    hidden = tf.keras.layers.Dense(8, activation="relu")(tf.keras.layers.Multiply()([user, item]))
    out = tf.keras.layers.Reshape(())(tf.keras.layers.Dense(1)(hidden))
    return tf.keras.Model([user, item], out, name="scorer")


class MeanTextEncoder(tf.keras.Model):
    """Stand-in for the MiniLM encoder: BertTokenizer pieces -> mean embedding, [B] -> [B, D]."""

    def __init__(self, dim=4, **kwargs):
        super().__init__(**kwargs)
        import keras_nlp

        self.tokenizer = keras_nlp.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
        self.embedding = tf.keras.layers.Embedding(len(VOCAB), dim)

    def call(self, text):
        pieces = self.tokenizer(text)  # ragged [B, (T)] int32
        return tf.reduce_mean(tf.ragged.map_flat_values(self.embedding, pieces), axis=1)

    def reference(self, texts):
        """numpy reference of call() through the same tokenizer."""
        table = self.embedding.get_weights()[0]
        return np.stack([table[self.tokenizer(t).numpy()].mean(axis=0) for t in texts])


def reference_top_k(scores, exclude, k):
    """Plain numpy top-k: scores [B, I], exclude: item-row lists -> (rows, values) [B, k]."""
    scores = np.array(scores, np.float64)
    for b, rows in enumerate(exclude):
        scores[b, list(rows)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def seen_rows(artifacts, user):
    return artifacts.seen_indices[artifacts.seen_indptr[user]: artifacts.seen_indptr[user + 1]]


def assert_serves_top_k(model, artifacts, users, k, score_fn):
    """The exported serving_default's top-k for user ids `users` equals evaluation's ranking
    by `score_fn` (user rows [B] -> scores [B, I]), each user's seen items excluded."""
    out = model.signatures["serving_default"](user_id=tf.constant(users), k=tf.constant(k))
    rows = np.array([list(artifacts.user_ids).index(u) for u in users])
    top, values = reference_top_k(score_fn(rows), [seen_rows(artifacts, r) for r in rows], k)
    expected = np.where(np.isinf(values), "", artifacts.item_ids[top])
    got = np.vectorize(lambda b: b.decode(), otypes=[object])(out["item_ids"].numpy())
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(out["scores"].numpy(), values, rtol=1e-4, atol=1e-5)
