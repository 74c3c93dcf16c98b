"""What a trained model hands to the exporter: everything serving needs, as plain arrays + layers."""

import dataclasses
from typing import Any

import numpy as np

from tfrec.errors import TfrecError


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
      blend: optional tfrec.evaluate.blend.Blend (item_item B [I, I], the users' training
        history CSR over [U + 1] rows, weight, method): serving_default, history and score
        rank with the blended scores, as evaluation did; None = the retrieval score alone.
      history_scale: multiplies the history signature's query (the mean of the history's item
        embeddings): 1 / K for an ensemble of K members (tfrec.train.members), whose item
        tables sit side by side, so that its history score is the mean of the members' ones.
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
    blend: Any = None
    history_scale: float = 1.0


def validate_artifacts(a: ExportArtifacts) -> None:
    """Fails in one sentence on artifacts the serving graph could not answer correctly."""
    users, items = np.asarray(a.user_ids), np.asarray(a.item_ids)
    u_emb, i_emb = np.asarray(a.user_embeddings), np.asarray(a.item_embeddings)
    if users.ndim != 1 or items.ndim != 1 or len(items) == 0 or len(users) == 0:
        raise TfrecError("user_ids and item_ids must be non-empty 1-D arrays.")
    if u_emb.ndim != 2 or i_emb.ndim != 2 or u_emb.shape[1] != i_emb.shape[1]:
        raise TfrecError(
            f"embeddings must be [U, D] and [I, D] with one D, got {u_emb.shape} and "
            f"{i_emb.shape}."
        )
    if len(users) != u_emb.shape[0] or len(items) != i_emb.shape[0]:
        raise TfrecError(
            f"{len(users)} user ids / {len(items)} item ids do not match embeddings "
            f"{u_emb.shape} / {i_emb.shape}."
        )
    if len(np.asarray(a.item_titles)) != len(items):
        raise TfrecError(f"item_titles has {len(a.item_titles)} entries for {len(items)} items.")
    for kind, ids in (("user", users), ("item", items)):
        strings = ids.astype(str)
        if (strings == "").any():
            raise TfrecError(f"an empty {kind} id is at row {int(np.argmax(strings == ''))}.")
        values, counts = np.unique(strings, return_counts=True)
        if (counts > 1).any():
            raise TfrecError(f"{kind} id '{values[counts > 1][0]}' appears more than once.")
    bias = np.zeros(len(items)) if a.item_bias is None else np.asarray(a.item_bias)
    if bias.shape != (len(items),):
        raise TfrecError(f"item_bias must be [I] = [{len(items)}], got {bias.shape}.")
    for name, emb in (("user_embeddings", u_emb), ("item_embeddings", i_emb),
                      ("item_bias", bias)):
        if not np.isfinite(emb).all():
            raise TfrecError(f"{name} contains NaN or infinite values.")
    indptr, indices = np.asarray(a.seen_indptr), np.asarray(a.seen_indices).reshape(-1)
    if (
        indptr.shape != (len(users) + 1,)
        or indptr[0] != 0
        or (np.diff(indptr) < 0).any()
        or indptr[-1] != len(indices)
    ):
        raise TfrecError(
            f"seen_indptr must be a non-decreasing [U + 1] = [{len(users) + 1}] array from 0 to "
            f"len(seen_indices) = {len(indices)}."
        )
    if len(indices) and (indices.min() < 0 or indices.max() >= len(items)):
        raise TfrecError(f"seen_indices must be item rows in [0, {len(items)}).")
    if a.blend is not None:
        _validate_blend(a.blend, len(users), len(items))


def _validate_blend(blend, num_users: int, num_items: int) -> None:
    weights = np.asarray(blend.item_item)
    if weights.shape != (num_items, num_items) or not np.isfinite(weights).all():
        raise TfrecError(f"the blend's item_item must be a finite [I, I] = [{num_items}, "
                         f"{num_items}] matrix, got shape {weights.shape}.")
    indptr, indices = (np.asarray(x) for x in blend.history)
    if indptr.shape != (num_users + 1,) or indptr[-1] != len(indices) or (
            len(indices) and (indices.min() < 0 or indices.max() >= num_items)):
        raise TfrecError(f"the blend's history must be a CSR of {num_users} users over "
                         f"{num_items} items.")
