"""GraphRecommender: initial node states from features, TF-GNN message passing, embeddings.

    model graph (tfrec.model.inputs) --NodeEncoder--> h0 [N, dim] per node set
                --GraphUpdate x layers (tfrec.model.convs)--> h1..hL
                --combine (mean/last/sum)--> user [U, dim], item [I, dim] (+ item bias [I])
Scores are u.i + b_i (cosines if normalised, plus a learned per-item offset if model.item_bias).
The model reads everything from the GraphTensor it is called on: the full training graph or
any subgraph with the same features (ID rows are the "row" feature, not positions).
The item text part of h0 (the projected MiniLM embedding, [I, dim]) is returned too: the
alignment head pulls it towards the item's graph embedding, so an item known only by its text
lands in the same space.

Text fine-tuning (text.mode = "finetune"): the item NodeEncoder holds the MiniLM backbone as a
layer and a table of the current text embeddings of every item ([I, 384], in checkpoints). A
training step re-encodes the `fresh` items (a sample of the batch's positives) from their token
ids with gradients, and reads the others from the table; `refresh_text` re-encodes every item
with the current backbone (once an epoch), so the states that enter message passing follow it.
"""

import dataclasses

import tensorflow as tf
import tensorflow_gnn as tfgnn

from tfrec.config import ModelConfig
from tfrec.model.convs import build_layer
from tfrec.model.inputs import EncoderSpec, ModelSpec

TEXT_DIM = 384  # MiniLM sentence embedding width


def _init(stddev=0.1):
    return tf.keras.initializers.RandomNormal(stddev=stddev)


def resolved(config: ModelConfig) -> ModelConfig:
    """The architecture `config` describes: kind "mf" is the same model with ID embeddings only
    (no features, text, knowledge graph or message passing): matrix factorisation."""
    if config.kind != "mf":
        return config
    return dataclasses.replace(config, layers=0, use_text=False, use_kg=False,
                               use_features=False, edge_gates=False)


class NodeEncoder(tf.keras.layers.Layer):
    """h0 of one node set: the sum of an ID embedding (zero for the nodes with id_mask 0) and
    projections of its features; with text_cold_only, the text projection enters the sum of
    those id_mask-0 nodes only (it is still computed for every node, for the alignment head).

    sentence_encoder: a trainable tfrec.text.SentenceEncoder when the node set's text is
    fine-tuned (spec.finetune); its current embeddings of all nodes live in `text_table`."""

    def __init__(self, spec: EncoderSpec, dim: int, text_cold_only: bool = False,
                 sentence_encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.dim, self.text_cold_only = spec, dim, text_cold_only
        # === Layers ===
        self.ids = tf.keras.layers.Embedding(spec.size, dim, embeddings_initializer=_init())
        self.cats = {f: tf.keras.layers.Embedding(v, dim, embeddings_initializer=_init(),
                                                  name=f"cat_{f}")
                     for f, v in spec.categorical.items()}
        self.multi = {f: tf.keras.layers.Dense(dim, use_bias=False, name=f"tokens_{f}")
                      for f in spec.tokens}
        self.numeric = tf.keras.layers.Dense(dim, name="numeric") if spec.numeric else None
        self.text = tf.keras.layers.Dense(dim, use_bias=False, name="text") if spec.text \
            else None
        self.sentence_encoder = sentence_encoder if spec.finetune else None
        if spec.finetune and sentence_encoder is None:
            raise ValueError("a fine-tuned text encoder needs its sentence_encoder")
        self.text_table = self.add_weight(
            name="text_table", shape=[spec.size, TEXT_DIM], initializer="zeros",
            trainable=False, dtype=tf.float32) if spec.finetune else None
        self._encode = None  # encode_text as a tf.function, traced on first refresh

    def get_config(self):
        return {**super().get_config(), "spec": dataclasses.asdict(self.spec), "dim": self.dim,
                "text_cold_only": self.text_cold_only}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(EncoderSpec(**config.pop("spec")), **config)

    def encode_text(self, features, rows, training=False):
        """rows [F] -> [F, 384] float32: the current backbone's normalised mean embedding of
        each row's T texts (token ids features["text_ids"] [N, T, L])."""
        ids = tf.gather(features["text_ids"], rows)  # [F, T, L]
        mask = tf.gather(features["text_mask"], rows)
        shape = tf.shape(ids)
        flat = self.sentence_encoder.encode_tokens(
            tf.reshape(ids, [-1, shape[2]]), tf.reshape(mask, [-1, shape[2]]), training=training)
        mean = tf.reduce_mean(tf.reshape(flat, [shape[0], shape[1], TEXT_DIM]), axis=1)
        return tf.math.l2_normalize(tf.cast(mean, tf.float32), -1)

    def call(self, features, fresh=None, training=False):
        """features: the node set's model-graph features (N nodes); fresh: optional [F] node
        positions whose text is re-encoded with gradients (fine-tuning).
        Returns (h0 [N, dim], text part [N, dim] or None)."""
        ids = self.ids(features["row"])
        id_mask = features.get("id_mask")
        parts = [ids if id_mask is None else ids * tf.cast(id_mask[:, None], ids.dtype)]
        parts += [self.cats[f](features[f"cat.{f}"]) for f in self.cats]
        parts += [self.multi[f](features[f"tokens.{f}"]) for f in self.multi]
        if self.numeric is not None:
            parts.append(self.numeric(features["numeric"]))
        text = None
        if self.text is not None:
            if self.sentence_encoder is None:
                sentence = features["text"]
            else:
                sentence = tf.gather(self.text_table, features["row"])
                if fresh is not None:
                    fresh_text = self.encode_text(features, fresh, training)
                    sentence = tf.tensor_scatter_nd_update(  # the table reads in compute dtype
                        sentence, fresh[:, None], tf.cast(fresh_text, sentence.dtype))
            text = self.text(sentence)
            if self.text_cold_only and id_mask is not None:
                parts.append(text * tf.cast(1.0 - id_mask[:, None], text.dtype))
            else:
                parts.append(text)
        return tf.add_n(parts), text

    def refresh_text(self, features, batch_size: int = 256) -> None:
        """Re-encodes every node's text with the current backbone into `text_table`
        (inference mode; features are those of the full graph)."""
        if self._encode is None:
            self._encode = tf.function(self.encode_text)
        n = int(features["row"].shape[0])
        for start in range(0, n, batch_size):
            rows = tf.range(start, min(n, start + batch_size))
            self.text_table.scatter_nd_update(tf.gather(features["row"], rows)[:, None],
                                              self._encode(features, rows))


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


class GraphRecommender(tf.keras.Model):
    """Embeds the users and items of the GraphTensor it is given (see the module docstring).

    spec: the ModelSpec of the model graphs it will be called on; config: the architecture
    (`resolved` applied); sentence_encoder: the trainable SentenceEncoder of the fine-tuned
    node sets (text.mode = "finetune"), else None."""

    def __init__(self, spec: ModelSpec, config: ModelConfig, sentence_encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self._user_set, self._item_set = spec.user_set, spec.item_set
        self.encoders = {n: NodeEncoder(s, config.dim, config.text_input == "cold",
                                        sentence_encoder, name=f"encode_{n}")
                         for n, s in spec.encoders.items()}
        self.gnn = [build_layer(config, spec.graph_spec, i) for i in range(config.layers)]
        self.dropout = tf.keras.layers.Dropout(config.dropout)
        self.item_bias = self.add_weight(
            name="item_bias", shape=[spec.encoders[spec.item_set].size],
            initializer="zeros") if config.item_bias else None

    @property
    def sentence_encoder(self):
        """The fine-tuned SentenceEncoder of the items, or None."""
        return self.encoders[self._item_set].sentence_encoder

    def embed(self, graph, training: bool = False, fresh_items=None) -> Embeddings:
        """graph: a model graph (tfrec.model.inputs); fresh_items: optional [F] item node
        positions whose text is re-encoded with gradients."""
        items = dict(graph.node_sets[self._item_set].features)
        h0, text = {}, {}
        for name, encoder in self.encoders.items():
            fresh = fresh_items if name == self._item_set else None
            h0[name], text[name] = encoder(dict(graph.node_sets[name].features), fresh=fresh,
                                           training=training)
        states = [h0]
        graph = graph.replace_features(
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

        bias = None
        if self.item_bias is not None:  # items without training interactions keep bias 0
            bias = tf.gather(self.item_bias, items["row"])
            if "id_mask" in items:
                bias *= items["id_mask"]
        return Embeddings(output(self._user_set), output(self._item_set), text[self._item_set],
                          tf.cast(h0[self._user_set], tf.float32),
                          tf.cast(h0[self._item_set], tf.float32), bias)

    def call(self, graph, training=False):
        e = self.embed(graph, training)
        return e.user, e.item

    def refresh_text(self, graph) -> None:
        """Re-encodes the fine-tuned texts of the full model `graph` into their tables."""
        for name, encoder in self.encoders.items():
            if encoder.sentence_encoder is not None:
                encoder.refresh_text(dict(graph.node_sets[name].features))
