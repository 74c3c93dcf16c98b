"""What a trained model hands to the exporter: everything serving needs, as plain arrays + layers."""

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ExportArtifacts:
    """A trained recommender, reduced to what the serving signatures compute with.

    Retrieval score of (user u, item i) = dot(user_embeddings[u], item_embeddings[i])
    + item_bias[i].

    Attributes:
      user_ids: [U] str, the ORIGINAL user ids of the source data, in embedding-row order.
      item_ids: [I] str, original item ids, in embedding-row order.
      item_titles: [I] str, a display title per item: the schema's display feature of the item
        node set (extra `title`, see tfrec/schema/loader.py), or the item id.
      user_embeddings: [U, D] float32, final user representations (after the GNN).
      item_embeddings: [I, D] float32, final item representations (after the GNN).
      item_bias: optional [I] float32 score offset per item (None = 0).
      seen_indptr: [U + 1] int64 and seen_indices: [nnz] int64: CSR rows of the training items
        of each user (row u lists item rows), excluded from that user's recommendations.
      scorer: optional Keras model (user_emb [B, D], item_emb [B, D]) -> [B] float32 ranking score
        (the TFRS ranking head); None means the score signature returns the dot product.
      text_encoder: optional Keras model or tf.function: text [B] string -> [B, D] float32 item
        embedding in the same space as item_embeddings (for items added after training); None
        means no item-text signature is exported.
      metadata: JSON-serialisable dict (schema text, config, metrics, ...) written to
        assets.extra/tfrec_metadata.json.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    item_titles: np.ndarray
    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    scorer: Any = None
    text_encoder: Any = None
    metadata: dict = dataclasses.field(default_factory=dict)
    item_bias: np.ndarray | None = None
