"""The model graph -> the "unigraph" tables TF-GNN's Beam sampler reads.

    model graph (tfrec.model.inputs: "row" and the encoded features on every node set,
    "efeat" on every edge set) + the training (user, item) pairs
      --> DIR/schema.pbtxt        a GraphSchema whose metadata.filename name the tables below,
                                  relative to DIR (TF-GNN's unigraph.read_schema joins them to
                                  the schema's folder: give it an ABSOLUTE schema path, or a
                                  relative folder is joined twice)
          DIR/nodes.<set>.tfrecord   one tf.Example per node: "#id" (bytes, its row in decimal)
                                  and every node feature of the model graph
          DIR/edges.<set>.tfrecord   one tf.Example per edge: "#source", "#target" (the
                                  endpoints' "#id"), "eid" (the edge's index in its edge set)
                                  and "efeat"
          DIR/seeds.tfrecord      one tf.Example per training pair: "#source" (user "#id"),
                                  "#target" (item "#id"), "label" (its ranking label)

A node's "#id" is its global row, so a sampled node is found again by its row (the "row"
feature carries it as a number too). tf.Example holds int64, float32 and bytes only: int32
features are written as int64 (the schema says DT_INT64) and cast back by the reader
(tfrec.data.beam_reader). Multi-dimensional node features (text [384], tokens [V]) are
flattened row by row and the schema gives their shapes; a multi-dimensional EDGE feature
(efeat [E, 1 + F]) is written as 1 + F scalar columns "efeat.0", "efeat.1", ..., because
TF-GNN 1.0.3's Beam edge sampler emits a wrongly shaped empty value for a node without edges
when an edge feature has inner dimensions (edge_samplers._get_empty_value: [0], not [0, F]),
which fails the batching of the next stage; the reader stacks them back.
"""

from pathlib import Path

import numpy as np

# Feature dtypes as tf.Example stores them (DataType enum values): DT_INT32 is widened.
_STORED = {"int32": 9, "int64": 9, "float32": 1, "string": 7}


def _feature(values: np.ndarray):
    """[k] numpy values of one row -> a tf.train.Feature."""
    import tensorflow as tf

    if values.dtype == object or values.dtype.kind in "SU":
        data = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
    if values.dtype.kind in "iub":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64)))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.astype(np.float32)))


def _example(columns: dict[str, np.ndarray], row: int):
    """The tf.train.Example of row `row` of `columns` (name -> [N, ...] numpy)."""
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        name: _feature(np.reshape(values[row], [-1])) for name, values in columns.items()}))


def _write(path: Path, columns: dict[str, np.ndarray]) -> int:
    """Writes one tf.Example per row of `columns` to the TFRecord file `path`; returns rows."""
    import tensorflow as tf

    n = len(next(iter(columns.values())))
    with tf.io.TFRecordWriter(str(path)) as w:
        for row in range(n):
            w.write(_example(columns, row).SerializeToString())
    return n


def split_columns(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Edge features name -> [E] or [E, F] values as scalar columns: an [E, F] feature becomes
    "name.0" ... "name.<F-1>" (see the module docstring for why)."""
    out = {}
    for name, values in features.items():
        if values.ndim == 1:
            out[name] = values
        else:
            out.update({f"{name}.{k}": values[:, k] for k in range(values.shape[1])})
    return out


def _ids(rows: np.ndarray) -> np.ndarray:
    return np.array([str(r).encode() for r in rows], dtype=object)


def unigraph_schema(graph):
    """The GraphSchema of `graph` (a scalar model-graph GraphTensor) for the tables of the
    module docstring: its features with their per-item shapes, int32 stored as int64."""
    import tensorflow_gnn as tfgnn

    schema = tfgnn.create_schema_pb_from_graph_spec(graph.spec)
    for kind, name, piece in tfgnn.iter_sets(schema):
        if kind == tfgnn.CONTEXT:
            continue
        for feature in piece.features.values():
            if feature.dtype == 3:  # DT_INT32
                feature.dtype = _STORED["int32"]
        piece.metadata.filename = f"{kind}.{name}.tfrecord"
    return schema


def write_unigraph(graph, users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                   folder: str | Path) -> dict:
    """Writes the tables of the module docstring for the model graph `graph` and the training
    pairs `users`, `items` ([P] rows) with their ranking `labels` ([P] float32) into `folder`
    (created if need be); returns the number of rows of each table ("nodes.<set>",
    "edges.<set>", "seeds")."""
    from google.protobuf import text_format

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, nodes in graph.node_sets.items():
        n = int(nodes.total_size)
        columns = {"#id": _ids(np.arange(n))}
        columns.update({f: v.numpy() for f, v in nodes.features.items()})
        counts[f"nodes.{name}"] = _write(folder / f"nodes.{name}.tfrecord", columns)
    for name, edges in graph.edge_sets.items():
        columns = {"#source": _ids(edges.adjacency.source.numpy()),
                   "#target": _ids(edges.adjacency.target.numpy()),
                   "eid": np.arange(int(edges.total_size), dtype=np.int64)}
        columns.update(split_columns({f: v.numpy() for f, v in edges.features.items()}))
        counts[f"edges.{name}"] = _write(folder / f"edges.{name}.tfrecord", columns)
    counts["seeds"] = _write(folder / "seeds.tfrecord",
                             {"#source": _ids(users), "#target": _ids(items),
                              "label": np.asarray(labels, np.float32)})
    schema = unigraph_schema(graph)
    for name in graph.edge_sets:
        features = schema.edge_sets[name].features
        for f, v in graph.edge_sets[name].features.items():
            stored = features[f].dtype
            del features[f]
            for column in split_columns({f: v.numpy()}):
                features[column].dtype = stored
        features["eid"].dtype = _STORED["int64"]  # every edge table carries its edge index
    (folder / "schema.pbtxt").write_text(text_format.MessageToString(schema), encoding="utf-8")
    return counts
