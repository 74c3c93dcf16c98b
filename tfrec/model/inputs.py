"""GraphData -> ModelInputs: every feature as a numeric array, and the message-passing structure.

Strings become vocabulary indices (categorical), multi-hot rows (token lists) or frozen MiniLM
sentence embeddings (text); numbers are standardised. Edge features (KG relation types,
interaction event/rating) become one numeric row per edge that gates its message. Everything is
computed once in numpy, so a training step runs only the dense model.
"""

import dataclasses

import numpy as np

from tfrec.data.graph_data import GraphData
from tfrec.data.graph_tensor import training_edges
from tfrec.data.splits import Split

MAX_TOKENS = 512  # vocabulary cap of a token-list feature (most frequent tokens kept)


@dataclasses.dataclass
class NodeInputs:
    """Inputs of one node set with N nodes.

    categorical: name -> ([N] int32 index, 0 = out of vocabulary; vocabulary size incl. OOV).
    multi_hot: name -> [N, V] float32 rows (token lists).
    numeric: [N, F] float32 standardised numeric features (F may be 0).
    text: [N, 384] float32 mean of the node's L2-normalised text embeddings, or None.
    id_mask: [N] float32, 1 for the nodes that get an ID embedding, 0 for users and items
      without training interactions (nothing would train their ID; their state comes from
      features, text and the knowledge graph), or None (every node).
    """

    size: int
    categorical: dict[str, tuple[np.ndarray, int]]
    multi_hot: dict[str, np.ndarray]
    numeric: np.ndarray
    text: np.ndarray | None
    id_mask: np.ndarray | None = None


@dataclasses.dataclass
class EdgeInputs:
    """One edge set of the training graph: source, target [E] int32; features [E, F] float32
    (a constant 1 column first, then one-hot categories and standardised numbers)."""

    source_set: str
    target_set: str
    source: np.ndarray
    target: np.ndarray
    features: np.ndarray


@dataclasses.dataclass
class ModelInputs:
    nodes: dict[str, NodeInputs]
    edges: dict[str, EdgeInputs]
    user_set: str
    item_set: str


def _vocab(values: np.ndarray, cap: int | None = None) -> dict[str, int]:
    uniq, counts = np.unique(values.astype(str), return_counts=True)
    order = np.lexsort((uniq, -counts))[:cap]
    return {uniq[i]: j + 1 for j, i in enumerate(order)}  # 0 = out of vocabulary


def _categorical(values: np.ndarray) -> tuple[np.ndarray, int]:
    vocab = _vocab(values)
    return np.array([vocab.get(v, 0) for v in values.astype(str)], np.int32), len(vocab) + 1


def _multi_hot(values: np.ndarray) -> np.ndarray:
    tokens = [str(v).split() for v in values]
    vocab = _vocab(np.array([t for row in tokens for t in row] or [""], dtype=object), MAX_TOKENS)
    out = np.zeros((len(values), len(vocab)), np.float32)
    for r, row in enumerate(tokens):
        for t in row:
            if t in vocab:
                out[r, vocab[t] - 1] = 1.0
    return out


def _standardise(columns: list[np.ndarray], n: int) -> np.ndarray:
    if not columns:
        return np.zeros((n, 0), np.float32)
    x = np.stack([c.astype(np.float64) for c in columns], axis=1)
    return ((x - x.mean(0)) / (x.std(0) + 1e-9)).astype(np.float32)


def node_inputs(data: GraphData, name: str, text: np.ndarray | None,
                use_features: bool) -> NodeInputs:
    spec = data.schema.node_sets[name]
    feats = data.node_features[name] if use_features else {}
    roles = {f.name: f.role for f in spec.features}
    return NodeInputs(
        size=data.num_nodes(name),
        categorical={f: _categorical(v) for f, v in feats.items() if roles[f] == "categorical"},
        multi_hot={f: _multi_hot(v) for f, v in feats.items() if roles[f] == "tokens"},
        numeric=_standardise([v for f, v in feats.items() if roles[f] == "numeric"],
                             data.num_nodes(name)),
        text=text)


def edge_feature_columns(features: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One-hot [E, V] blocks for string features (64 most frequent values), [E, 1] otherwise."""
    cols = []
    for values in features.values():
        if values.dtype == object:
            vocab = _vocab(values, 64)
            idx = np.array([vocab.get(v, 0) for v in values.astype(str)])
            cols.append(np.eye(len(vocab) + 1, dtype=np.float32)[idx][:, 1:])
        else:
            cols.append(_standardise([values], len(values)))
    return cols


def _not_to_leaves(data: GraphData) -> dict[str, np.ndarray]:
    """edge set -> [E] bool, False for the edges of knowledge-graph leaves: featureless nodes
    outside the user and item sets with a single connection (e.g. an actor of one film), which
    tell the model nothing their one neighbour's own embedding does not. Reverse edge sets are
    not counted twice."""
    schema = data.schema
    degree = {n: np.zeros(data.num_nodes(n), np.int64) for n, spec in schema.node_sets.items()
              if n not in (schema.user_set, schema.item_set) and not spec.features}
    for name, spec in schema.edge_sets.items():
        if spec.reverse_of is None:
            for node_set, ids in ((spec.source, data.edges[name].source),
                                  (spec.target, data.edges[name].target)):
                if node_set in degree:
                    degree[node_set] += np.bincount(ids, minlength=len(degree[node_set]))
    keep = {}
    for name, spec in schema.edge_sets.items():
        e = data.edges[name]
        ok = np.ones(len(e.source), bool)
        for node_set, ids in ((spec.source, e.source), (spec.target, e.target)):
            if node_set in degree:
                ok &= degree[node_set][ids] > 1
        keep[name] = ok
    return keep


def model_inputs(data: GraphData, split: Split, texts: dict[str, np.ndarray],
                 use_kg: bool = True, use_features: bool = True,
                 use_edge_features: bool = True) -> ModelInputs:
    """The inputs of the recommender for the training graph of `split`.

    texts: node set -> [N, 384] text embeddings (absent = no text for that set).
    use_kg=False keeps only the user and item node sets and the edge sets between them; the
    edges of knowledge-graph leaves are left out (see _not_to_leaves).
    """
    schema = data.schema
    keep_sets = set(schema.node_sets) if use_kg else {schema.user_set, schema.item_set}
    nodes = {n: node_inputs(data, n, texts.get(n), use_features) for n in sorted(keep_sets)}
    edges = {}
    not_to_leaves = _not_to_leaves(data)
    for name, mask in training_edges(data, split).items():
        spec, e = schema.edge_sets[name], data.edges[name]
        if spec.source not in keep_sets or spec.target not in keep_sets:
            continue
        mask = not_to_leaves[name] if mask is None else mask & not_to_leaves[name]
        src, dst = e.source[mask], e.target[mask]
        feats = {f: v[mask] for f, v in e.features.items()}
        cols = edge_feature_columns(feats) if use_edge_features else []
        ones = np.ones((len(src), 1), np.float32)
        edges[name] = EdgeInputs(spec.source, spec.target, src.astype(np.int32),
                                 dst.astype(np.int32), np.concatenate([ones, *cols], axis=1))
    users, items = split.pairs("train")
    for name, ids in ((schema.user_set, users), (schema.item_set, items)):
        nodes[name].id_mask = (np.bincount(ids, minlength=nodes[name].size) > 0).astype(np.float32)
    return ModelInputs(nodes, edges, schema.user_set, schema.item_set)
