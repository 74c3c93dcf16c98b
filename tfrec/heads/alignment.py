"""Alignment: pulls an item's projected text embedding towards its graph embedding."""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="tfrec")
class AlignmentHead(tf.keras.layers.Layer):
    """Symmetric InfoNCE between the L2-normalised text parts and graph embeddings of a batch's
    items: each item's text must pick out its own graph embedding among the batch's. Repeats of
    the same item in the batch are not negatives of each other (static shapes, XLA-friendly).
    text_only: no gradient reaches the graph embeddings; only the text projection learns."""

    def __init__(self, temperature: float = 0.1, text_only: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.temperature, self.text_only = temperature, text_only

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "text_only": self.text_only}

    def call(self, text_table, item_table, items):
        """text_table, item_table: [I, D]; items: [B] item rows (repeats allowed)."""
        t = tf.math.l2_normalize(tf.cast(tf.gather(text_table, items), tf.float32), -1)
        g = tf.math.l2_normalize(tf.cast(tf.gather(item_table, items), tf.float32), -1)
        if self.text_only:
            g = tf.stop_gradient(g)
        logits = tf.matmul(t, g, transpose_b=True) / self.temperature  # [B, B]
        same = tf.equal(items[:, None], items[None, :])
        eye = tf.eye(tf.shape(items)[0], dtype=tf.bool)
        logits = tf.where(same & ~eye, tf.constant(-1e9, logits.dtype), logits)
        labels = tf.range(tf.shape(items)[0])
        ce = tf.keras.losses.sparse_categorical_crossentropy
        return 0.5 * (tf.reduce_mean(ce(labels, logits, from_logits=True))
                      + tf.reduce_mean(ce(labels, tf.transpose(logits), from_logits=True)))
