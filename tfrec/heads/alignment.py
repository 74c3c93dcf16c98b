"""Alignment: pulls an item's projected text embedding towards its graph embedding."""

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrec.heads import float32_layers, mean_retrieval_loss


@tf.keras.utils.register_keras_serializable(package="tfrec")
class AlignmentHead(tf.keras.layers.Layer):
    """Symmetric InfoNCE between the L2-normalised text parts and graph embeddings of a batch's
    items: each item's text must pick out its own graph embedding among the batch's, and each
    graph embedding its own text: two TFRS Retrieval tasks whose accidental-hit removal keeps
    repeats of the same item in the batch from being negatives of each other.
    text_only: no gradient reaches the graph embeddings; only the text projection learns."""

    def __init__(self, temperature: float = 0.1, text_only: bool = False, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # losses in float32
        self.temperature, self.text_only = temperature, text_only
        # per row; `call` takes the mean (a Keras mean reduction is refused under tf.distribute)
        loss = tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")
        with float32_layers():
            self.task = tfrs.tasks.Retrieval(loss=loss, temperature=temperature,
                                             remove_accidental_hits=True)
        self._loss = mean_retrieval_loss(self.task)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "text_only": self.text_only}

    def call(self, text_table, item_table, items):
        """text_table, item_table: [I, D]; items: [B] item rows (repeats allowed)."""
        t = tf.math.l2_normalize(tf.cast(tf.gather(text_table, items), tf.float32), -1)
        g = tf.math.l2_normalize(tf.cast(tf.gather(item_table, items), tf.float32), -1)
        if self.text_only:
            g = tf.stop_gradient(g)
        return 0.5 * (self._loss(t, g, items) + self._loss(g, t, items))
