"""The training GraphTensor -> the model's GraphTensor, the one input GraphRecommender reads.

`model_graph` derives it from the schema-checked training graph (tfrec.data.graph_tensor) in
documented steps, each a function of that one graph:
  1. select: without the knowledge graph (model.use_kg off) only the user and item node sets and
     the edge sets between them are kept;
  2. prune: the edges of knowledge-graph leaves are dropped (`kg_leaf_edges`): featureless
     nodes outside the user and item sets with a single connection (an actor of one film) tell
     the model nothing their one neighbour's own embedding does not;
  3. node features: "row" [N] int32 (the node's row in the full graph: ID embeddings and item
     biases are looked up by it, so a sampled subgraph works too), "id_mask" [N] float32 (1 for
     users and items with training interactions: the others get no ID embedding),
     "cat.<f>" [N] int32 vocabulary indices (0 = unknown), "tokens.<f>" [N, V] multi-hot rows,
     "numeric" [N, F] standardised numbers, "text" [N, 384] frozen MiniLM embeddings (the
     normalised mean over the node's text features) and, for fine-tuning, "text_ids" /
     "text_mask" [N, T, L] (WordPiece ids and padding mask of each of its T text features);
  4. edge features: "efeat" [E, 1 + F], the LightGCN norm 1 / sqrt(deg_out(u) deg_in(v)) first,
     then one-hot categories and standardised numbers (they gate each edge's message).
Vocabulary sizes and widths go into a `ModelSpec`, from which the model is built.
"""

import dataclasses

import numpy as np

from tfrec.schema import Schema

MAX_TOKENS = 512  # vocabulary cap of a token-list feature (most frequent tokens kept)
MAX_EDGE_VALUES = 64  # one-hot width cap of a string edge feature


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """What the initial-state encoder of one node set reads from the model graph.

    size: rows of its ID table (the node set's size in the full graph).
    categorical: feature -> vocabulary size, out-of-vocabulary index 0 included.
    tokens: feature -> multi-hot width.
    numeric: F, the width of "numeric" (0 = none).
    text: the node set has a "text" feature; finetune: and "text_ids" / "text_mask".
    """

    size: int
    categorical: dict[str, int] = dataclasses.field(default_factory=dict)
    tokens: dict[str, int] = dataclasses.field(default_factory=dict)
    numeric: int = 0
    text: bool = False
    finetune: bool = False


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """graph_spec: tfgnn.GraphTensorSpec of the model graph; encoders: node set -> EncoderSpec."""

    graph_spec: object
    encoders: dict[str, EncoderSpec]
    user_set: str
    item_set: str


def _strings(values) -> np.ndarray:
    """A numpy array of bytes (tf.string) -> object array of str."""
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values],
                    dtype=object)


def _vocab(values: np.ndarray, cap: int | None = None) -> dict[str, int]:
    """value -> index from 1 (0 = out of vocabulary), most frequent first, ties by value."""
    uniq, counts = np.unique(values.astype(str), return_counts=True)
    order = np.lexsort((uniq, -counts))[:cap]
    return {uniq[i]: j + 1 for j, i in enumerate(order)}


def categorical(values: np.ndarray) -> tuple[np.ndarray, int]:
    """[N] strings -> ([N] int32 indices, vocabulary size incl. index 0)."""
    vocab = _vocab(values)
    return np.array([vocab.get(v, 0) for v in values.astype(str)], np.int32), len(vocab) + 1


def multi_hot(values: np.ndarray) -> np.ndarray:
    """[N] space-separated token lists -> [N, V] float32 (the MAX_TOKENS most frequent)."""
    tokens = [str(v).split() for v in values]
    vocab = _vocab(np.array([t for row in tokens for t in row] or [""], dtype=object), MAX_TOKENS)
    out = np.zeros((len(values), len(vocab)), np.float32)
    for r, row in enumerate(tokens):
        for t in row:
            if t in vocab:
                out[r, vocab[t] - 1] = 1.0
    return out


def standardise(columns: list[np.ndarray], n: int) -> np.ndarray:
    """[n] numeric columns -> [n, F] float32, each with mean 0 and standard deviation 1."""
    if not columns:
        return np.zeros((n, 0), np.float32)
    x = np.stack([c.astype(np.float64) for c in columns], axis=1)
    return ((x - x.mean(0)) / (x.std(0) + 1e-9)).astype(np.float32)


def edge_feature_columns(features: dict[str, np.ndarray]) -> np.ndarray | None:
    """[E, F] float32: one-hot blocks for string features (MAX_EDGE_VALUES most frequent values),
    one standardised column for numbers; None without features."""
    cols = []
    for values in features.values():
        if values.dtype == object:
            vocab = _vocab(values, MAX_EDGE_VALUES)
            idx = np.array([vocab.get(v, 0) for v in values.astype(str)])
            cols.append(np.eye(len(vocab) + 1, dtype=np.float32)[idx][:, 1:])
        else:
            cols.append(standardise([values], len(values)))
    return np.concatenate(cols, axis=1) if cols else None


def lightgcn_norm(source: np.ndarray, target: np.ndarray, n_source: int,
                  n_target: int) -> np.ndarray:
    """[E] float32 1 / sqrt(deg_out(source) deg_in(target)), degrees counted in this edge set."""
    deg_out = np.bincount(source, minlength=n_source).astype(np.float32)
    deg_in = np.bincount(target, minlength=n_target).astype(np.float32)
    return (1.0 / np.sqrt(np.maximum(deg_out[source] * deg_in[target], 1.0))).astype(np.float32)


@dataclasses.dataclass
class _Edges:
    """One edge set of the graph in numpy: source, target [E] int64; features name -> [E]."""

    source_set: str
    target_set: str
    source: np.ndarray
    target: np.ndarray
    features: dict[str, np.ndarray]


def _graph_numpy(graph, edge_features: bool = True
                 ) -> tuple[dict, dict[str, int], dict[str, _Edges]]:
    """(node features name -> {feature: [N] numpy}, sizes, edge sets) of a scalar GraphTensor;
    without `edge_features` the edge sets' features are left out ({}): at 1e7 interactions a
    string feature decoded one str per edge is ~0.9 GB."""
    def numpy(t):
        a = t.numpy()
        return _strings(a) if a.dtype == object else a

    nodes = {n: {f: numpy(v) for f, v in s.features.items()} for n, s in graph.node_sets.items()}
    sizes = {n: int(s.sizes.numpy().sum()) for n, s in graph.node_sets.items()}
    edges = {n: _Edges(e.adjacency.source_name, e.adjacency.target_name,
                       e.adjacency.source.numpy().astype(np.int64),
                       e.adjacency.target.numpy().astype(np.int64),
                       {f: numpy(v) for f, v in e.features.items()} if edge_features else {})
             for n, e in graph.edge_sets.items()}
    return nodes, sizes, edges


OOV = "\0"  # stands for row 0 of a categorical table (out of vocabulary) in a vocabulary list


def feature_vocabularies(graph, schema: Schema) -> dict[str, list[str]]:
    """"<node set>/cats/<f>" -> [V] the value of each row of a categorical feature's table (row
    0, out of vocabulary, as OOV) and "<node set>/multi/<f>" -> [V] the token of each row of a
    token feature's projection, as `model_graph` builds them from the training `graph`: the
    rows depend on the data (most frequent first), so a warm start maps them by value."""
    nodes, _, _ = _graph_numpy(graph, edge_features=False)
    out = {}
    for name, feats in nodes.items():
        roles = {f.name: f.role for f in schema.node_sets[name].features}
        for f, values in feats.items():
            if roles.get(f) == "categorical":
                out[f"{name}/cats/{f}"] = [OOV, *_vocab(values)]
            elif roles.get(f) == "tokens":
                tokens = [t for v in values for t in str(v).split()]
                out[f"{name}/multi/{f}"] = list(_vocab(np.array(tokens or [""], dtype=object),
                                                       MAX_TOKENS))
    return out


def kg_leaf_edges(schema: Schema, sizes: dict[str, int], edges: dict[str, _Edges]):
    """edge set -> [E] bool, True for the edges of knowledge-graph leaves: featureless nodes
    outside the user and item sets with a single connection. Reverse edge sets are not counted
    twice."""
    degree = {n: np.zeros(sizes[n], np.int64) for n, spec in schema.node_sets.items()
              if n not in (schema.user_set, schema.item_set) and not spec.features}
    for name, e in edges.items():
        if schema.edge_sets[name].reverse_of is None:
            for node_set, ids in ((e.source_set, e.source), (e.target_set, e.target)):
                if node_set in degree:
                    degree[node_set] += np.bincount(ids, minlength=sizes[node_set])
    leaf = {}
    for name, e in edges.items():
        out = np.zeros(len(e.source), bool)
        for node_set, ids in ((e.source_set, e.source), (e.target_set, e.target)):
            if node_set in degree:
                out |= degree[node_set][ids] <= 1
        leaf[name] = out
    return leaf


def model_graph(graph, schema: Schema, *, use_kg: bool = True, use_features: bool = True,
                use_edge_features: bool = True, texts: dict[str, np.ndarray] | None = None,
                text_tokens: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
    """The model's GraphTensor and ModelSpec from the training `graph` (steps 1-4 above).

    texts: node set -> [N, 384] frozen text embeddings (absent: no text for that set).
    text_tokens: node set -> (token ids [N, T, L] int32, padding mask [N, T, L] bool) of the node
      sets whose text encoder is fine-tuned.
    """
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    texts, text_tokens = texts or {}, text_tokens or {}
    nodes, sizes, edges = _graph_numpy(graph, edge_features=use_edge_features)
    # 1. select
    keep_sets = set(schema.node_sets) if use_kg else {schema.user_set, schema.item_set}
    edges = {n: e for n, e in edges.items()
             if e.source_set in keep_sets and e.target_set in keep_sets}
    # 2. prune
    leaf = kg_leaf_edges(schema, sizes, edges)
    edges = {n: _Edges(e.source_set, e.target_set, e.source[~leaf[n]], e.target[~leaf[n]],
                       {f: v[~leaf[n]] for f, v in e.features.items()})
             for n, e in edges.items()}
    # 3. node features
    interactions = edges[schema.interactions]
    trained = {schema.user_set: interactions.source, schema.item_set: interactions.target}
    node_sets, encoders = {}, {}
    for name in (n for n in schema.node_sets if n in keep_sets):
        n = sizes[name]
        roles = {f.name: f.role for f in schema.node_sets[name].features}
        feats = nodes[name] if use_features else {}
        out = {"row": np.arange(n, dtype=np.int32)}
        if name in trained:
            out["id_mask"] = (np.bincount(trained[name], minlength=n) > 0).astype(np.float32)
        cats = {f: categorical(v) for f, v in feats.items() if roles[f] == "categorical"}
        out.update({f"cat.{f}": idx for f, (idx, _) in cats.items()})
        tokens = {f: multi_hot(v) for f, v in feats.items() if roles[f] == "tokens"}
        out.update({f"tokens.{f}": m for f, m in tokens.items()})
        numeric = standardise([v for f, v in feats.items() if roles[f] == "numeric"], n)
        if numeric.shape[1]:
            out["numeric"] = numeric
        if name in texts:
            out["text"] = np.asarray(texts[name], np.float32)
        if name in text_tokens:
            out["text_ids"], out["text_mask"] = text_tokens[name]
        encoders[name] = EncoderSpec(n, {f: v for f, (_, v) in cats.items()},
                                     {f: m.shape[1] for f, m in tokens.items()},
                                     numeric.shape[1], name in texts, name in text_tokens)
        node_sets[name] = tfgnn.NodeSet.from_fields(
            sizes=tf.constant([n], tf.int32),
            features={f: tf.constant(v) for f, v in out.items()})
    # 4. edge features
    edge_sets = {}
    for name, e in edges.items():
        norm = lightgcn_norm(e.source, e.target, sizes[e.source_set], sizes[e.target_set])
        feats = edge_feature_columns(e.features) if use_edge_features else None
        efeat = norm[:, None] if feats is None else np.concatenate([norm[:, None], feats], 1)
        edge_sets[name] = tfgnn.EdgeSet.from_fields(
            sizes=tf.constant([len(e.source)], tf.int32),
            adjacency=tfgnn.Adjacency.from_indices(
                source=(e.source_set, tf.constant(e.source, tf.int32)),
                target=(e.target_set, tf.constant(e.target, tf.int32))),
            features={"efeat": tf.constant(efeat, tf.float32)})
    model_in = tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets)
    return model_in, ModelSpec(model_in.spec, encoders, schema.user_set, schema.item_set)


def edgeless(graph):
    """`graph` (a model graph) with every edge set emptied, its nodes and their features
    unchanged: a pass over it builds every weight of a model (node encoders on all nodes, the
    layers' message functions on no edges) without the full graph's [E, dim] messages (at 1e7
    interactions each is ~4 GB)."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    edge_sets = {}
    for name, e in graph.edge_sets.items():
        adj = e.adjacency
        edge_sets[name] = tfgnn.EdgeSet.from_fields(
            sizes=tf.zeros_like(e.sizes),
            adjacency=tfgnn.Adjacency.from_indices(source=(adj.source_name, adj.source[:0]),
                                                   target=(adj.target_name, adj.target[:0])),
            features={k: v[:0] for k, v in e.features.items()})
    return tfgnn.GraphTensor.from_pieces(context=graph.context, node_sets=graph.node_sets,
                                         edge_sets=edge_sets)
