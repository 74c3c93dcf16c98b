"""Retrieval: a TFRS Retrieval task over in-batch positives plus sampled (or all) negatives."""

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrec.heads import float32_layers, mean_retrieval_loss


@tf.keras.utils.register_keras_serializable(package="tfrec")
class RetrievalHead(tf.keras.layers.Layer):
    """Softmax loss of each (user, positive item) against the other positives of its chunk of
    `chunk` rows (in-batch negatives) and `negatives` extra items drawn from `candidates`
    (None = every candidate: a full softmax); a row's own positive among them is removed
    (accidental hits); scores are divided by `temperature`. Chunking keeps a large batch (one
    GNN pass) from costing a [B, B] score matrix: the batch size must be a multiple of `chunk`.

    candidates: [C] rows of the items that may be negatives: those seen in training. An item
    without training interactions is unknown, not disliked: pushed away from every user, a cold
    item could never be recommended.
    sampling: optional [I] frequency of each item among the positives; with it, each
    candidate's logit is corrected by -log of its expected count in the candidate set (logQ
    correction): chunk x frequency for an in-batch candidate, negatives / C for a uniformly
    drawn one (both divided by the number of columns, chunk + negatives), so popular items are
    not over-penalised for being frequent negatives and both kinds of negatives are weighed
    alike. With negatives=None (every candidate) the in-batch
    candidates are masked out instead: the loss is an exact full softmax and `sampling` (logQ)
    does not apply."""

    def __init__(self, candidates, temperature: float, negatives: int | None, chunk: int,
                 sampling=None, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # losses in float32
        self.candidates = tf.constant(candidates, tf.int32)
        self.temperature, self.negatives, self.chunk = temperature, negatives, chunk
        self.sampling = None if sampling is None else tf.constant(sampling, tf.float32)
        # TFRS sums the loss over the batch by default; the mean (taken in `call`: a Keras
        # mean reduction is refused under tf.distribute) keeps it on the scale of the other
        # heads whatever the batch size.
        loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")
        with float32_layers():
            self.task = tfrs.tasks.Retrieval(loss=loss, temperature=temperature,
                                             remove_accidental_hits=True)
        self._loss = mean_retrieval_loss(self.task)

    def get_config(self):
        sampling = None if self.sampling is None else self.sampling.numpy().tolist()
        return {**super().get_config(), "candidates": self.candidates.numpy().tolist(),
                "temperature": self.temperature, "negatives": self.negatives,
                "chunk": self.chunk, "sampling": sampling}

    def draw_negatives(self):
        """[negatives] int32 positions in `candidates`, drawn uniformly with replacement."""
        return tf.random.uniform([self.negatives], 0, self.candidates.shape[0], dtype=tf.int32)

    def call(self, user_emb, item_table, items, candidates=None, item_rows=None):
        """user_emb: [B, D]; item_table: [I, D] the items that may be scored; items: [B]
        positive items (positions in item_table); candidates: optional [C] positions in
        item_table of the possible negatives, replacing the constructor's (a sampled
        subgraph's items); item_rows: optional [I] global row of each item_table position
        (for the `sampling` frequencies; None: positions are rows).
        Returns the mean loss over the B rows."""
        if candidates is None:
            candidates, draw = self.candidates, self.draw_negatives
        else:
            draw = lambda: tf.random.uniform(  # noqa: E731
                [self.negatives], 0, tf.shape(candidates)[0], dtype=tf.int32)
        n = candidates.shape[0]
        n = tf.shape(candidates)[0] if n is None else n
        if self.negatives is None:
            extra = tf.cast(candidates, items.dtype)
        else:
            extra = tf.cast(tf.gather(candidates, draw()), items.dtype)
        losses = []
        for start in range(0, user_emb.shape[0], self.chunk):
            rows = slice(start, start + self.chunk)
            ids = tf.concat([items[rows], extra], axis=0)
            size = items[rows].shape[0]  # the chunk's rows (static: B is fixed)
            probability, mask = None, None
            if self.negatives is None:  # keep each row's own positive + every candidate
                mask = tf.concat([tf.eye(size, dtype=tf.bool),
                                  tf.ones([size, n], tf.bool)], axis=1)
            elif self.sampling is not None:
                # expected counts over the number of columns: TFRS clips probabilities at 1
                slots = float(size + self.negatives)
                positives = items[rows] if item_rows is None else tf.gather(item_rows,
                                                                            items[rows])
                in_batch = size / slots * tf.gather(self.sampling, positives)
                drawn = tf.fill(tf.shape(extra), self.negatives / tf.cast(n, tf.float32) / slots)
                probability = tf.concat([in_batch, drawn], axis=0)
            losses.append(self._loss(user_emb[rows], tf.gather(item_table, ids), ids,
                                     probability, mask))
        return tf.add_n(losses) / len(losses)
