"""ItemTextEncoder: the embedding of an item known only by its text (added after training);
EnsembleTextEncoder: the same for an ensemble of members (tfrec.train.members)."""

import tensorflow as tf


class ItemTextEncoder(tf.keras.Model):
    """Strings [B] -> [B, dim] item embeddings in the recommender's space.

    MiniLM sentence embedding (tokenised in-graph) -> the item encoder's trained text
    projection -> L2 normalised and scaled to the mean norm of the trained item embeddings.
    The alignment head trained the projection's direction to match the item's graph embedding.
    """

    def __init__(self, sentence_encoder, projection, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.sentence_encoder = sentence_encoder
        self.projection = projection
        self.scale = float(scale)

    def call(self, texts):
        return _projected(self.sentence_encoder(texts), self.projection, self.scale)


class EnsembleTextEncoder(tf.keras.Model):
    """Strings [B] -> [B, sum_k dim_k]: one sentence embedding, each member's projection and
    scale applied as ItemTextEncoder does, concatenated in member order (the ensemble's item
    table is the members' item tables side by side)."""

    def __init__(self, sentence_encoder, projections, scales, **kwargs):
        super().__init__(**kwargs)
        self.sentence_encoder = sentence_encoder
        self.projections = list(projections)
        self.scales = [float(s) for s in scales]

    def call(self, texts):
        x = self.sentence_encoder(texts)
        return tf.concat([_projected(x, p, s) for p, s in zip(self.projections, self.scales)],
                         axis=-1)


def _projected(sentence, projection, scale: float):
    """[B, 384] sentence embeddings -> [B, dim]: projected, L2 normalised, times scale."""
    return tf.math.l2_normalize(tf.cast(projection(sentence), tf.float32), -1) * scale
