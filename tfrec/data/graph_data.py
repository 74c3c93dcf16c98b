"""Tables -> GraphData: every node set indexed densely, every edge set as index arrays + features.

This is the whole graph in numpy, all interactions included; `tfrec.data.splits` decides which
interactions are held out and `tfrec.data.graph_tensor` builds the message-passing graph from the
training ones only.
"""

import dataclasses

import numpy as np

from tfrec.data.tables import Table, open_table
from tfrec.errors import TfrecError
from tfrec.schema import Schema, load_schema


@dataclasses.dataclass
class EdgeData:
    """source, target: [E] int64 node indices; features: name -> [E] array."""

    source: np.ndarray
    target: np.ndarray
    features: dict[str, np.ndarray]

    def reversed(self, names) -> "EdgeData":
        return EdgeData(self.target, self.source, {n: self.features[n] for n in names})


@dataclasses.dataclass
class GraphData:
    """A schema's graph in memory.

    node_ids: node set -> [N] object array of the original ids; row = dense index.
    node_features: node set -> feature -> [N] array.
    edges: edge set -> EdgeData (reverse edge sets included).
    """

    schema: Schema
    node_ids: dict[str, np.ndarray]
    node_features: dict[str, dict[str, np.ndarray]]
    edges: dict[str, EdgeData]

    def num_nodes(self, node_set: str) -> int:
        return len(self.node_ids[node_set])

    @property
    def interactions(self) -> EdgeData:
        return self.edges[self.schema.interactions]

    def titles(self, node_set: str) -> np.ndarray:
        """[N] str: how each node is shown to people, the schema's display feature of the node
        set (`NodeSetSpec.title`), or the node's id where that is missing or empty."""
        ids = self.node_ids[node_set].astype(str)
        title = self.schema.node_sets[node_set].title
        if title is None:
            return ids
        values = np.array([" ".join(str(v).split()) for v in self.node_features[node_set][title]])
        return np.where(values == "", ids, values)


def _index(ids: list[str], table: Table, column: str) -> dict[str, int]:
    index = {}
    for row, i in enumerate(ids):
        if i in index:
            raise TfrecError(f"{table.name}, line {table.line(row)}: duplicated id {i!r} in column "
                             f"{column!r} (first on line {table.line(index[i])})")
        index[i] = row
    return index


def _lookup(ids: list[str], index: dict[str, int], table: Table, column: str, node_set: str):
    out = np.empty(len(ids), dtype=np.int64)
    for row, i in enumerate(ids):
        j = index.get(i)
        if j is None:
            raise TfrecError(f"{table.name}, line {table.line(row)}, column {column!r}: id "
                             f"{i!r} is not a node of node set {node_set!r}")
        out[row] = j
    return out


def load_graph_data(schema: Schema | str) -> GraphData:
    """Reads and validates every table of `schema` (a Schema or the path of one)."""
    if not isinstance(schema, Schema):
        schema = load_schema(schema)
    node_ids, node_features, index = {}, {}, {}
    for ns in schema.node_sets.values():
        if ns.filename is None:
            continue
        table = open_table(ns.filename, schema, ns.features, ids=(ns.id_column,))
        ids = table.column(ns.id_column, f"the id column of node set {ns.name!r}")
        index[ns.name] = _index(ids, table, ns.id_column)
        node_ids[ns.name] = np.array(ids, dtype=object)
        node_features[ns.name] = {f.name: table.feature(f) for f in ns.features}

    tables = {e.name: open_table(e.filename, schema, e.features,
                                 ids=(e.source_column, e.target_column))
              for e in schema.edge_sets.values() if e.filename is not None}
    for ns in schema.node_sets.values():  # node sets whose ids are their edges' endpoints
        if ns.filename is not None:
            continue
        seen = {}
        for e in schema.edge_sets.values():
            if e.filename is None:
                continue
            for end, column in (("source", e.source_column), ("target", e.target_column)):
                if getattr(e, end) == ns.name:
                    for i in tables[e.name].column(column, f"the {end} ids of {e.name!r}"):
                        seen.setdefault(i, len(seen))
        index[ns.name] = seen
        node_ids[ns.name] = np.array(list(seen), dtype=object)
        node_features[ns.name] = {}

    edges = {}
    for e in schema.edge_sets.values():
        if e.filename is None:
            continue
        table = tables[e.name]
        src_ids = table.column(e.source_column, f"the source ids of {e.name!r}")
        dst_ids = table.column(e.target_column, f"the target ids of {e.name!r}")
        edges[e.name] = EdgeData(
            _lookup(src_ids, index[e.source], table, e.source_column, e.source),
            _lookup(dst_ids, index[e.target], table, e.target_column, e.target),
            {f.name: table.feature(f) for f in e.features})
    for e in schema.edge_sets.values():
        if e.reverse_of is not None:
            edges[e.name] = edges[e.reverse_of].reversed([f.name for f in e.features])
    return GraphData(schema, node_ids, node_features, edges)


def read_texts(schema_path: str) -> dict[tuple[str, str], list[str]]:
    """(node_set, feature) -> the texts of each text feature, in node-index order."""
    data = load_graph_data(schema_path)
    return {(n, f): list(data.node_features[n][f])
            for n, f in data.schema.text_features}
