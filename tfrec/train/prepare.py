"""Everything a model needs before it trains: graph data, split, the training graph, the model
graph. Shared by `tfrec train`, `tfrec evaluate` and `tfrec export`, so all three see the same
split and the same graph (the one `tfrec data build` writes)."""

import dataclasses

import numpy as np

from tfrec.config import Config
from tfrec.data.graph_data import GraphData, load_graph_data
from tfrec.data.graph_tensor import training_graph
from tfrec.data.splits import Split, split_interactions
from tfrec.evaluate.metrics import csr_from_pairs
from tfrec.model.inputs import ModelSpec, model_graph
from tfrec.model.recommender import resolved


@dataclasses.dataclass
class Prepared:
    data: GraphData
    split: Split
    graph: object  # the schema-checked training tfgnn.GraphTensor
    model_graph: object = None  # its model form (tfrec.model.inputs); None for popularity
    spec: ModelSpec | None = None
    sentence_encoder: object = None  # the SentenceEncoder to fine-tune (text.mode "finetune")

    @property
    def num_users(self) -> int:
        return self.data.num_nodes(self.data.schema.user_set)

    @property
    def num_items(self) -> int:
        return self.data.num_nodes(self.data.schema.item_set)

    def csr(self, *splits: str):
        """CSR (indptr [U + 1], indices) of the items of `splits` per user."""
        pairs = [self.split.pairs(s) for s in splits]
        users = np.concatenate([p[0] for p in pairs])
        items = np.concatenate([p[1] for p in pairs])
        return csr_from_pairs(users, items, self.num_users)

    def ranking_labels(self) -> np.ndarray | None:
        """[P_train] float32 ranking label of each training pair (the last edge's value), or
        None when the schema names no ranking_label."""
        label = self.data.schema.ranking_label
        if label is None:
            return None
        feature, value = label
        raw = self.data.interactions.features[feature]
        y = (raw.astype(str) == value).astype(np.float32) if value else raw.astype(np.float32)
        per_pair = np.zeros(len(self.split.pair_split), np.float32)
        per_pair[self.split.edge_pair] = y  # later edges of a pair overwrite earlier ones
        return per_pair[self.split.pair_split == 0]


def _graph_texts(graph, schema) -> dict[str, list[list[str]]]:
    """node set -> its text features' values ([T] lists of N strings), read from the graph."""
    out: dict[str, list[list[str]]] = {}
    for node_set, feature in schema.text_features:
        values = graph.node_sets[node_set][feature].numpy()
        out.setdefault(node_set, []).append([v.decode("utf-8") for v in values])
    return out


def node_texts(texts: dict[str, list[list[str]]], config: Config,
               progress: bool = True) -> dict[str, np.ndarray]:
    """node set -> [N, 384]: the normalised mean of the frozen MiniLM embeddings of its texts."""
    from tfrec.text import embed_texts

    out = {}
    for node_set, features in texts.items():
        m = np.mean([embed_texts(t, config.text, progress=progress) for t in features], axis=0)
        out[node_set] = (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)
                         ).astype(np.float32)
    return out


def text_tokens(texts: list[list[str]], encoder) -> tuple[np.ndarray, np.ndarray]:
    """T lists of N texts -> (token ids [N, T, L] int32, padding mask [N, T, L] bool), tokenised
    in-graph by the SentenceEncoder's preprocessor."""
    from tfrec.text.preprocessing import clean_texts

    pieces = [encoder.tokenize(clean_texts(t, encoder.sequence_length)) for t in texts]
    ids = np.stack([p[0].numpy() for p in pieces], axis=1)
    mask = np.stack([p[1].numpy() for p in pieces], axis=1)
    return ids, mask


def prepare(schema_path: str, config: Config, progress: bool = True) -> Prepared:
    """Stages: read + validate tables -> split -> the training GraphTensor (checked against the
    schema) -> frozen text embeddings (and token ids to fine-tune) -> the model graph."""
    return with_model_graph(prepare_graph(schema_path, config), config, progress)


def prepare_graph(schema_path: str, config: Config) -> Prepared:
    """The data side alone (tables -> split -> training GraphTensor): what every model of the
    same schema and `config.split` shares (`tfrec search` prepares it once for all trials)."""
    data = load_graph_data(schema_path)
    split = split_interactions(data, config.split)
    return Prepared(data, split, training_graph(data, split))


def with_model_graph(base: Prepared, config: Config, progress: bool = True) -> Prepared:
    """`base` (from prepare_graph) with the model inputs of `config.model` and `config.text`:
    text embeddings (disk-cached) and the model graph; unchanged for popularity."""
    data, split, graph = base.data, base.split, base.graph
    if config.model.kind == "popularity":
        return Prepared(data, split, graph)
    m = resolved(config.model)
    schema = data.schema
    texts = _graph_texts(graph, schema) if m.use_text and config.text.mode != "off" else {}
    if not m.use_kg:
        texts = {n: t for n, t in texts.items() if n in (schema.user_set, schema.item_set)}
    tokens, encoder = {}, None
    if config.text.mode == "finetune" and schema.item_set in texts:
        from tfrec.text import make_sentence_encoder

        encoder = make_sentence_encoder(config.text)
        tokens[schema.item_set] = text_tokens(texts[schema.item_set], encoder)
    graph_in, spec = model_graph(
        graph, schema, use_kg=m.use_kg, use_features=m.use_features,
        use_edge_features=m.edge_gates, texts=node_texts(texts, config, progress),
        text_tokens=tokens)
    return Prepared(data, split, graph, graph_in, spec, encoder)
