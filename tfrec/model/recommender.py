"""GraphRecommender: initial node states from features, TF-GNN message passing, embeddings.

    ModelInputs --NodeEncoder--> h0 [N, dim] per node set
                --GraphUpdate x layers (tfrec.model.convs)--> h1..hL
                --combine (mean/last/sum)--> user [U, dim], item [I, dim] (+ item bias [I])
Scores are u.i + b_i (cosines if normalised, plus a learned per-item offset if model.item_bias).
The item text part of h0 (the projected MiniLM embedding, [I, dim]) is returned too: the
alignment head pulls it towards the item's graph embedding, so an item known only by its text
lands in the same space.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_gnn as tfgnn

from tfrec.config import ModelConfig
from tfrec.model.convs import build_layer
from tfrec.model.inputs import ModelInputs, NodeInputs


def _init(stddev=0.1):
    return tf.keras.initializers.RandomNormal(stddev=stddev)


class NodeEncoder(tf.keras.layers.Layer):
    """h0 of one node set: the sum of an ID embedding (zero for the nodes of inputs.id_mask 0)
    and projections of its features; with text_cold_only, the text projection enters the sum of
    those id_mask-0 nodes only (it is still computed for every node, for the alignment head)."""

    def __init__(self, inputs: NodeInputs, dim: int, text_cold_only: bool = False, **kwargs):
        super().__init__(**kwargs)
        self._size = inputs.size
        self._text_cold_only = text_cold_only
        self.ids = tf.keras.layers.Embedding(inputs.size, dim, embeddings_initializer=_init())
        self._id_mask = None if inputs.id_mask is None else tf.constant(inputs.id_mask[:, None])
        self._cats = {f: tf.constant(idx) for f, (idx, _) in inputs.categorical.items()}
        self.cats = {f: tf.keras.layers.Embedding(v, dim, embeddings_initializer=_init(),
                                                  name=f"cat_{f}")
                     for f, (_, v) in inputs.categorical.items()}
        self._multi = {f: tf.constant(m) for f, m in inputs.multi_hot.items()}
        self.multi = {f: tf.keras.layers.Dense(dim, use_bias=False, name=f"tokens_{f}")
                      for f in inputs.multi_hot}
        self._numeric = tf.constant(inputs.numeric) if inputs.numeric.shape[1] else None
        self.numeric = tf.keras.layers.Dense(dim, name="numeric") if self._numeric is not None \
            else None
        self._text = None if inputs.text is None else tf.constant(inputs.text)
        self.text = None if inputs.text is None else tf.keras.layers.Dense(
            dim, use_bias=False, name="text")

    def call(self, _=None):
        """Returns (h0 [N, dim], text part [N, dim] or None)."""
        ids = self.ids(tf.range(self._size))
        parts = [ids if self._id_mask is None else ids * tf.cast(self._id_mask, ids.dtype)]
        parts += [self.cats[f](idx) for f, idx in self._cats.items()]
        parts += [self.multi[f](m) for f, m in self._multi.items()]
        if self.numeric is not None:
            parts.append(self.numeric(self._numeric))
        text = None if self.text is None else self.text(self._text)
        if text is not None:
            cold_only = self._text_cold_only and self._id_mask is not None
            parts.append(text * tf.cast(1.0 - self._id_mask, text.dtype) if cold_only else text)
        return tf.add_n(parts), text


@dataclasses.dataclass
class Embeddings:
    user: tf.Tensor  # [U, dim] float32 (unit rows if model.normalize)
    item: tf.Tensor  # [I, dim] float32
    item_text: tf.Tensor | None  # [I, dim] projected text part of the items' h0
    user_h0: tf.Tensor  # [U, dim] layer-0 ("ego") states, what weight decay regularises
    item_h0: tf.Tensor  # [I, dim]
    item_bias: tf.Tensor | None = None  # [I] learned score offset per item (model.item_bias)

    def scoring(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(user [U, D'], item [I, D']) whose dot products are the scores u.i + b_i: with a
        bias, D' = D + 1 (a constant 1 column for users, the bias column for items)."""
        if self.item_bias is None:
            return self.user, self.item
        return (tf.concat([self.user, tf.ones_like(self.user[:, :1])], axis=1),
                tf.concat([self.item, self.item_bias[:, None]], axis=1))


def structure_graph(inputs: ModelInputs):
    """The training graph's structure as a GraphTensor with edge features "efeat" [E, 1 + F]
    (the LightGCN norm 1/sqrt(deg_out(u) deg_in(v)) first, then the edge's numeric features)."""
    edge_sets = {}
    for name, e in inputs.edges.items():
        n_src, n_dst = inputs.nodes[e.source_set].size, inputs.nodes[e.target_set].size
        deg_out = np.bincount(e.source, minlength=n_src).astype(np.float32)
        deg_in = np.bincount(e.target, minlength=n_dst).astype(np.float32)
        norm = 1.0 / np.sqrt(np.maximum(deg_out[e.source] * deg_in[e.target], 1.0))
        feats = np.concatenate([norm[:, None], e.features[:, 1:]], axis=1).astype(np.float32)
        edge_sets[name] = tfgnn.EdgeSet.from_fields(
            sizes=tf.constant([len(e.source)], tf.int32),
            adjacency=tfgnn.Adjacency.from_indices(
                source=(e.source_set, tf.constant(e.source)),
                target=(e.target_set, tf.constant(e.target))),
            features={"efeat": tf.constant(feats)})
    node_sets = {n: tfgnn.NodeSet.from_fields(sizes=tf.constant([x.size], tf.int32))
                 for n, x in inputs.nodes.items()}
    return tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets)


class GraphRecommender(tf.keras.Model):
    """Embeds every user and item of the training graph (full-graph message passing)."""

    def __init__(self, inputs: ModelInputs, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self._user_set, self._item_set = inputs.user_set, inputs.item_set
        self.encoders = {n: NodeEncoder(x, config.dim, config.text_input == "cold",
                                        name=f"encode_{n}")
                         for n, x in inputs.nodes.items()}
        self.graph = structure_graph(inputs)
        self.gnn = [build_layer(config, self.graph.spec, i) for i in range(config.layers)]
        self.dropout = tf.keras.layers.Dropout(config.dropout)
        items = inputs.nodes[inputs.item_set]
        self.item_bias = self.add_weight(name="item_bias", shape=[items.size],
                                         initializer="zeros") if config.item_bias else None
        # items without training interactions keep bias 0 (nothing would train it)
        self._bias_mask = None if items.id_mask is None else tf.constant(items.id_mask)

    def embed(self, training: bool = False) -> Embeddings:
        h0, text = {}, {}
        for name, encoder in self.encoders.items():
            h0[name], text[name] = encoder(None)
        states = [h0]
        graph = self.graph.replace_features(
            node_sets={n: {tfgnn.HIDDEN_STATE: self.dropout(h, training=training)}
                       for n, h in h0.items()})
        for layer in self.gnn:
            graph = layer(graph, training=training)
            states.append({n: graph.node_sets[n][tfgnn.HIDDEN_STATE] for n in h0})

        def combine(name):
            layers = [s[name] for s in states]
            if self.config.combine == "last":
                return layers[-1]
            total = tf.add_n(layers)
            return total / len(layers) if self.config.combine == "mean" else total

        def output(name):
            x = tf.cast(combine(name), tf.float32)
            return tf.math.l2_normalize(x, -1) if self.config.normalize else x

        bias = self.item_bias
        if bias is not None and self._bias_mask is not None:
            bias = bias * self._bias_mask
        return Embeddings(output(self._user_set), output(self._item_set), text[self._item_set],
                          tf.cast(h0[self._user_set], tf.float32),
                          tf.cast(h0[self._item_set], tf.float32), bias)

    def call(self, _=None, training=False):
        e = self.embed(training)
        return e.user, e.item
