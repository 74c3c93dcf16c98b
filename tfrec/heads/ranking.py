"""Ranking: a TFRS Ranking task on an MLP scorer of (user, item) embedding pairs."""

import tensorflow as tf
import tensorflow_recommenders as tfrs


@tf.keras.utils.register_keras_serializable(package="tfrec")
class PairScorer(tf.keras.Model):
    """(user_emb [B, D], item_emb [B, D]) -> [B] float32 score (a rating or a logit)."""

    def __init__(self, hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden
        self.mlp = tf.keras.Sequential([tf.keras.layers.Dense(hidden, activation="relu"),
                                        tf.keras.layers.Dense(1, dtype="float32")])

    def build(self, input_shape):
        """input_shape: (user [B, D], item [B, D]) shapes; the MLP reads [B, 3 D]."""
        user = tf.TensorShape(input_shape[0])
        self.mlp.build(user[:-1].concatenate([3 * user[-1]]))
        self.built = True

    def call(self, inputs):
        user, item = inputs
        x = tf.concat([user, item, user * item], axis=-1)
        return tf.cast(tf.squeeze(self.mlp(x), -1), tf.float32)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


@tf.keras.utils.register_keras_serializable(package="tfrec")
class RankingHead(tf.keras.layers.Layer):
    """classification=False: mean squared error on a rating; True: binary cross-entropy on
    logits (e.g. "was the event a purchase")."""

    def __init__(self, classification: bool, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})  # losses in float32
        self.classification = classification
        self.scorer = PairScorer()
        # per row; `call` takes the mean (a Keras mean reduction is refused under tf.distribute)
        loss = (tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")
                if classification else tf.keras.losses.MeanSquaredError(reduction="none"))
        self.task = tfrs.tasks.Ranking(loss=loss)  # Keras losses cast labels to predictions

    def get_config(self):
        return {**super().get_config(), "classification": self.classification}

    def call(self, user_emb, item_emb, labels):
        """user_emb, item_emb: [B, D]; labels: [B] float32."""
        scores = self.scorer((user_emb, item_emb))
        return tf.reduce_mean(self.task(labels=labels[:, None], predictions=scores[:, None],
                                        compute_metrics=False))
