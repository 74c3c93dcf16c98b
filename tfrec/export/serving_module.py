"""`ServingModule`: the tf.Module whose signatures TF Serving answers (see CONTRACT.md).

Fixed embeddings as non-trainable variables, id -> row `StaticHashTable`s, one `tf.function`
per signature (exact brute-force top-k, in-graph asserts on bad requests). Writing it as a
SavedModel version is `tfrec.export.versions`.
"""

import numpy as np

from tfrec.export.artifacts import ExportArtifacts
from tfrec.tf_setup import import_tf

tf = import_tf()

__all__ = ["ServingModule", "signature_names"]

_NEG_INF = float("-inf")
# `k` may be a scalar (the contract) or one value per row: TF Serving's `--enable_batching`
# rejects inputs without a batch dimension, so batched deployments send k as int32 [B].
_K_SPEC = tf.TensorSpec(shape=None, dtype=tf.int32, name="k")
_INPUT_SPECS = {
    "serving_default": [tf.TensorSpec([None], tf.string, name="user_id"), _K_SPEC],
    "history": [tf.TensorSpec([None, None], tf.string, name="history"), _K_SPEC],
    "score": [tf.TensorSpec([None], tf.string, name="user_id"),
              tf.TensorSpec([None, None], tf.string, name="item_ids")],
    "similar_items": [tf.TensorSpec([None], tf.string, name="item_id"), _K_SPEC],
    "item_text": [tf.TensorSpec([None], tf.string, name="text")],
}


def signature_names(artifacts: ExportArtifacts) -> list[str]:
    """The signatures a SavedModel of these artifacts has, in CONTRACT.md order."""
    return _signature_names(artifacts.text_encoder is not None)


def _signature_names(with_text: bool) -> list[str]:
    return list(_INPUT_SPECS) if with_text else [n for n in _INPUT_SPECS if n != "item_text"]


class ServingModule(tf.Module):
    """The serving graph of CONTRACT.md over fixed embeddings.

    Variables (non-trainable): user_embeddings [U, D], item_embeddings [I, D], item_bias [I]
    (added to every retrieval score), item_unit [I, D] (L2-normalised rows, for cosine
    `similar_items`), item_ids [I], item_titles [I], and the CSR of seen items: seen_indptr
    [U + 1], seen_indices [nnz]. With a blend (tfrec.evaluate.blend): item_item [I, I] and the
    CSR of each user's training history, history_indptr [U + 1], history_indices [h]; the
    retrieval scores are then blended with history x item_item as in evaluation. Tables map
    original string ids to rows (-1 when unknown).
    """

    def __init__(self, artifacts: ExportArtifacts):
        super().__init__(name="tfrec_serving")
        users = np.asarray(artifacts.user_ids).astype(str)
        items = np.asarray(artifacts.item_ids).astype(str)
        item_emb = np.asarray(artifacts.item_embeddings, np.float32)
        self._num_items = len(items)
        self._dim = item_emb.shape[1]

        # === Lookups ===
        self.user_table = _id_table(users)
        self.item_table = _id_table(items)

        # === Embeddings and item data ===
        def const(value, dtype, name):
            return tf.Variable(np.asarray(value), trainable=False, dtype=dtype, name=name)

        self.user_embeddings = const(artifacts.user_embeddings, tf.float32, "user_embeddings")
        self.item_embeddings = const(item_emb, tf.float32, "item_embeddings")
        bias = np.zeros(len(items)) if artifacts.item_bias is None else artifacts.item_bias
        self.item_bias = const(bias, tf.float32, "item_bias")
        norms = np.linalg.norm(item_emb, axis=1, keepdims=True)
        self.item_unit = const(item_emb / np.maximum(norms, 1e-12), tf.float32, "item_unit")
        self.item_ids = const(items.astype(object), tf.string, "item_ids")
        titles = np.asarray(artifacts.item_titles).astype(str).astype(object)
        self.item_titles = const(titles, tf.string, "item_titles")
        indptr = np.asarray(artifacts.seen_indptr, np.int64)
        indices = np.asarray(artifacts.seen_indices, np.int64).reshape(-1)
        self.seen_indptr = const(indptr, tf.int64, "seen_indptr")
        self.seen_indices = const(indices, tf.int64, "seen_indices")
        blend = artifacts.blend
        self._blend = None if blend is None else _Untracked(weight=float(blend.weight),
                                                             method=blend.method)
        if blend is not None:
            self.item_item = const(np.asarray(blend.item_item, np.float32), tf.float32,
                                   "item_item")
            h_indptr, h_indices = blend.history
            self.history_indptr = const(np.asarray(h_indptr, np.int64), tf.int64,
                                        "history_indptr")
            self.history_indices = const(np.asarray(h_indices, np.int64).reshape(-1), tf.int64,
                                         "history_indices")

        # === Keras parts: called untracked, their state tracked (see _KerasState) ===
        self._parts = _Untracked(scorer=artifacts.scorer, text_encoder=artifacts.text_encoder)
        self._history_scale = float(artifacts.history_scale)

    def signatures(self) -> dict:
        """{name: concrete function} for `tf.saved_model.save(..., signatures=...)`.

        The signatures are traced here rather than declared as `tf.function` attributes, so
        each is saved once and `item_text` is never traced without a text encoder.
        """
        functions = {
            name: tf.function(getattr(self, name), input_signature=_INPUT_SPECS[name])
            .get_concrete_function()
            for name in _signature_names(self._parts.text_encoder is not None)
        }
        # After tracing: Keras layers may create their variables on first call.
        self.scorer_state = _KerasState(self._parts.scorer)
        self.text_encoder_state = _KerasState(self._parts.text_encoder)
        return functions

    # --- signatures (plain methods, traced by `signatures()`) ---

    def serving_default(self, user_id, k):
        """user_id [B], k [] or [B] -> item_ids [B, k], scores [B, k], titles [B, k].

        Scores are dot(user, item) + item bias (blended with the item-item scores of the user's
        training history, if the model has a blend); each user's seen items are excluded.
        """
        rows = self._rows(self.user_table, user_id, "user")
        scores = self._user_scores(rows)
        return self._top_k(_exclude(scores, *_csr_rows(self.seen_indptr, self.seen_indices,
                                                       rows)), k)

    def history(self, history, k):
        """history [B, L] item ids ("" pads), k -> item_ids, scores, titles [B, k].

        The query is the mean embedding of the row's history items, times history_scale
        (scores: dot + item bias,
        blended with the history's item-item scores if the model has a blend); the history
        items are excluded.
        """
        rows = self._rows(self.item_table, history, "item", allow_empty=True)  # [B, L], -1 = pad
        present = rows >= 0
        counts = tf.reduce_sum(tf.cast(present, tf.float32), axis=1)  # [B]
        nonempty = counts > 0.0
        row = _first_false(nonempty, tf.range(tf.size(counts)), 0)
        check = tf.debugging.Assert(
            tf.reduce_all(nonempty),
            [tf.strings.join(["history row ", tf.strings.as_string(row), " has no item id"])],
        )
        with tf.control_dependencies([check]):
            vectors = tf.gather(self.item_embeddings, tf.maximum(rows, 0))  # [B, L, D]
        vectors *= tf.cast(present, tf.float32)[..., tf.newaxis]
        query = tf.reduce_sum(vectors, axis=1) / tf.maximum(counts, 1.0)[:, tf.newaxis]  # [B, D]
        query *= self._history_scale  # 1 / K for an ensemble (ExportArtifacts)
        where = tf.where(present)  # [n, 2] (row, position)
        batch, items = where[:, 0], tf.gather_nd(rows, where)
        scores = self._blended(self._retrieval_scores(query), batch, items)
        return self._top_k(_exclude(scores, batch, items), k)

    def score(self, user_id, item_ids):
        """user_id [B], item_ids [B, C] -> scores [B, C]: the scorer (else the retrieval score,
        blended like serving_default's if the model has a blend)."""
        check = tf.debugging.Assert(
            tf.shape(item_ids)[0] == tf.shape(user_id)[0],
            ["score needs one row of item_ids per user_id"],
        )
        with tf.control_dependencies([check]):
            users = tf.gather(self.user_embeddings, self._rows(self.user_table, user_id, "user"))
        item_rows = self._rows(self.item_table, item_ids, "item")
        items = tf.gather(self.item_embeddings, item_rows)
        if self._parts.scorer is None and self._blend is not None:
            full = self._user_scores(self._rows(self.user_table, user_id, "user"))  # [B, I]
            return {"scores": tf.gather(full, item_rows, batch_dims=1)}
        if self._parts.scorer is None:
            return {"scores": tf.einsum("bd,bcd->bc", users, items)
                    + tf.gather(self.item_bias, item_rows)}
        shape = tf.shape(item_ids)  # [B, C]
        pair_users = tf.repeat(users, shape[1], axis=0)  # [B * C, D]
        pair_items = tf.reshape(items, [-1, self._dim])  # [B * C, D]
        scores = self._parts.scorer([pair_users, pair_items], training=False)
        return {"scores": tf.reshape(tf.cast(scores, tf.float32), shape)}

    def similar_items(self, item_id, k):
        """item_id [B], k -> item_ids, scores (cosine), titles [B, k]; the query item excluded."""
        rows = self._rows(self.item_table, item_id, "item")
        scores = tf.matmul(tf.gather(self.item_unit, rows), self.item_unit, transpose_b=True)
        batch = tf.range(tf.size(rows, out_type=tf.int64), dtype=tf.int64)
        return self._top_k(_exclude(scores, batch, rows), k)

    def item_text(self, text):
        """text [B] -> embedding [B, D] from the text encoder (the only signature with text ops)."""
        return {"embedding": tf.cast(self._parts.text_encoder(text), tf.float32)}

    # --- helpers (traced into the signatures) ---

    def _retrieval_scores(self, queries):
        """queries [B, D] -> [B, I] dot products with every item plus the item bias."""
        return tf.matmul(queries, self.item_embeddings, transpose_b=True) + self.item_bias

    def _user_scores(self, rows):
        """user rows [B] -> [B, I] retrieval scores, blended if the model has a blend."""
        scores = self._retrieval_scores(tf.gather(self.user_embeddings, rows))
        if self._blend is None:
            return scores
        return self._blended(scores, *_csr_rows(self.history_indptr, self.history_indices,
                                                 rows))

    def _blended(self, scores, batch_rows, item_rows):
        """scores [B, I]; the history as (batch row [n], item row [n]) pairs -> [B, I]:
        (1 - w) * norm(scores) + w * norm(history x item_item) (tfrec.evaluate.blend), or
        `scores` without a blend."""
        if self._blend is None:
            return scores
        other = tf.math.unsorted_segment_sum(tf.gather(self.item_item, item_rows),
                                             tf.cast(batch_rows, tf.int32), tf.shape(scores)[0])
        w, method = self._blend.weight, self._blend.method
        return (1.0 - w) * _normalize(scores, method) + w * _normalize(other, method)

    def _rows(self, table, ids, kind, allow_empty=False):
        """ids [...] string -> rows [...] int64; asserts every id (but "" if allowed) is known."""
        rows = table.lookup(ids)
        known = rows >= 0
        if allow_empty:
            known |= tf.equal(ids, "")
        check = tf.debugging.Assert(
            tf.reduce_all(known),
            [tf.strings.join([f"unknown {kind} id '", _first_false(known, ids, ""), "'"])],
        )
        with tf.control_dependencies([check]):
            return tf.identity(rows)

    def _top_k(self, scores, k):
        """scores [B, I] (-inf = excluded), k [] or [B] -> dict of [B, max k] results.

        Row b keeps its first k[b] results; places past k[b] or on an excluded item hold
        item id "", title "" and score -inf.
        """
        k = tf.reshape(k, [-1])
        batch = tf.shape(scores)[0]
        size_ok = tf.logical_or(tf.size(k) == 1, tf.size(k) == batch)
        check_size = tf.debugging.Assert(
            size_ok, ["k must be a scalar or hold one value per row"]
        )
        in_range = tf.logical_and(k >= 1, k <= self._num_items)
        bad = tf.strings.as_string(_first_false(in_range, k, 0))
        check_range = tf.debugging.Assert(
            tf.logical_and(tf.reduce_all(in_range), tf.size(k) > 0),
            [tf.strings.join([f"k must be between 1 and {self._num_items} (the number of "
                              "items), got ", bad])],
        )
        with tf.control_dependencies([check_size, check_range]):
            k_max = tf.reduce_max(k)
            k_row = tf.broadcast_to(k, [batch])
        values, rows = tf.math.top_k(scores, k_max)  # [B, k_max]
        keep = tf.logical_and(
            tf.range(k_max)[tf.newaxis, :] < k_row[:, tf.newaxis], values > _NEG_INF
        )
        return {
            "item_ids": tf.where(keep, tf.gather(self.item_ids, rows), ""),
            "scores": tf.where(keep, values, _NEG_INF),
            "titles": tf.where(keep, tf.gather(self.item_titles, rows), ""),
        }


class _Untracked:
    """Plain attribute holder: what it holds is invisible to SavedModel tracking."""

    def __init__(self, **values):
        self.__dict__.update(values)


class _KerasState(tf.Module):
    """The variables, tables and assets a Keras layer/model needs, without the layer itself.

    Tracking a Keras 2 layer makes `tf.saved_model.save` trace and store all of its Keras call
    functions (seconds per export, much more for a BERT, and a bigger model for TF Serving to
    load); the signatures only need its state. Non-Keras objects (a tf.function, a tf.Module)
    are tracked as they are.
    """

    def __init__(self, part):
        super().__init__()
        if part is None:
            return
        if not isinstance(part, tf.keras.layers.Layer):
            self.part = part
            return
        kinds = (tf.Variable, tf.saved_model.experimental.TrackableResource, tf.saved_model.Asset)
        found = tf.train.TrackableView(part).descendants()
        self.state = [obj for obj in found if isinstance(obj, kinds)]


def _id_table(ids: np.ndarray):
    """A StaticHashTable original id -> row (int64), -1 for unknown ids."""
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(ids.astype(object), tf.string), tf.range(len(ids), dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(init, default_value=-1)


def _first_false(ok, values, default):
    """values[first False of ok] (both any shape, flattened), or `default` if all are True.

    For Assert messages: their inputs are computed on every call, so this uses few cheap ops.
    """
    flags = tf.concat([tf.reshape(tf.cast(ok, tf.int32), [-1]), [1]], axis=0)
    flat = tf.concat([tf.reshape(values, [-1]), tf.constant([default], values.dtype)], axis=0)
    return tf.gather(flat, tf.argmin(flags, output_type=tf.int32))


def _csr_rows(indptr, indices, rows):
    """The CSR entries of `rows` [B] as (batch row [n], item row [n])."""
    positions = tf.ragged.range(tf.gather(indptr, rows), tf.gather(indptr, rows + 1))  # [B, (n)]
    return positions.value_rowids(), tf.gather(indices, positions.flat_values)


def _normalize(scores, method):
    """scores [B, I] -> [B, I] on the per-user scale of tfrec.evaluate.blend.normalize."""
    if method == "zscore":
        centred = scores - tf.reduce_mean(scores, axis=1, keepdims=True)
        std = tf.sqrt(tf.reduce_mean(centred * centred, axis=1, keepdims=True))
        return centred / tf.maximum(std, 1e-12)
    if method == "max":
        return scores / tf.maximum(tf.reduce_max(tf.abs(scores), axis=1, keepdims=True), 1e-12)
    order = tf.argsort(scores, axis=1, stable=True)  # ascending, ties: the lower row first
    ranks = tf.argsort(order, axis=1, stable=True)  # the inverse permutation: positions
    return tf.cast(ranks, tf.float32) / tf.cast(tf.maximum(tf.shape(scores)[1] - 1, 1),
                                                tf.float32)


def _exclude(scores, batch_rows, item_rows):
    """scores [B, I] with -inf at (batch_rows[n], item_rows[n]) for each n."""
    where = tf.stack([tf.cast(batch_rows, tf.int64), tf.cast(item_rows, tf.int64)], axis=1)
    return tf.tensor_scatter_nd_update(scores, where, tf.fill(tf.shape(item_rows), _NEG_INF))
