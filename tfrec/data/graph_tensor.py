"""GraphData + Split -> THE training GraphTensor: the one graph that `tfrec data build` writes
and that training, evaluation and export derive their model inputs from
(`tfrec.model.inputs.model_graph`). It holds every node with its table features and every edge
but the held-out interactions, and is checked against the schema's GraphTensorSpec."""

import numpy as np

from tfrec.data.graph_data import GraphData
from tfrec.data.splits import Split


def training_edges(data: GraphData, split: Split) -> dict[str, np.ndarray | None]:
    """edge set -> [E] bool mask of the edges the training graph keeps (None = all)."""
    train = split.edge_split == 0
    schema = data.schema
    return {name: train if name == schema.interactions or e.reverse_of == schema.interactions
            else None for name, e in schema.edge_sets.items()}


def training_graph(data: GraphData, split: Split):
    """The GraphTensor of `data` whose interaction edge sets (and their reverses) hold only the
    training pairs of `split`; node features as in the tables, string features as tf.string.
    Raises if it does not match the schema (tfgnn.check_compatible_with_schema_pb)."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    def features(d: dict[str, np.ndarray], mask=None):
        out = {}
        for name, values in d.items():
            values = values if mask is None else values[mask]
            dtype = tf.string if values.dtype == object else tf.as_dtype(values.dtype)
            out[name] = tf.constant(values.tolist() if values.dtype == object else values, dtype)
        return out

    def index(values):  # tfgnn's default index dtype, as parsed from the schema
        return tf.constant(values, tf.int32)

    node_sets = {name: tfgnn.NodeSet.from_fields(
        sizes=index([data.num_nodes(name)]), features=features(data.node_features[name]))
        for name in data.schema.node_sets}
    edge_sets = {}
    for name, keep in training_edges(data, split).items():
        spec, e = data.schema.edge_sets[name], data.edges[name]
        src, dst = (e.source, e.target) if keep is None else (e.source[keep], e.target[keep])
        edge_sets[name] = tfgnn.EdgeSet.from_fields(
            sizes=index([len(src)]),
            adjacency=tfgnn.Adjacency.from_indices(source=(spec.source, index(src)),
                                                   target=(spec.target, index(dst))),
            features=features(e.features, keep))
    graph = tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets)
    tfgnn.check_compatible_with_schema_pb(graph, data.schema.proto)
    return graph
