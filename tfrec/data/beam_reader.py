"""The Beam sampler's output (tfrec.data.beam_sampler) read back as training batches, in-graph.

    DIR/samples/examples.tfrecord-*   one serialized link subgraph per training pair
      --tf.data: (shuffle) -> batch B -> tfgnn.parse_example with DIR/samples/schema.pbtxt
      --one component: the B subgraphs side by side (a node drawn by two pairs is there twice)
      --the model graph's features, as the in-memory sampler gives them: "row" and the other
        node features cast to the model spec's dtypes, edge features stacked back from their
        scalar columns ("efeat.0", ... -> "efeat" [E, 1 + F]); "#id", "eid" and the "_readout"
        sets dropped
      --> (graph, users [B], items [B], item_rows [I_g], labels [B]): positions of each
          pair's user and item in `graph` (from the "_readout/source" and "_readout/target"
          edges), the global row of each item node (the fields of
          tfrec.data.sampling.Subgraph) and each pair's ranking label (the "_readout" node's)
"""

from pathlib import Path

from tfrec.errors import TfrecError
from tfrec.paths import read_text

SAMPLES = "samples"  # the folder of DIR that holds the examples and their schema


def check_sampled(folder: str | Path, *, schema: str | Path, fanouts, split: dict,
                  nodes: dict[str, int], pairs: int, batch: int) -> dict:
    """The sampled.json of `folder` (a `tfrec data sample --out` folder) if it was written for
    this run: the same schema file (path or text), `fanouts`, `split` (the [split] section as
    a dict) and node set sizes (`nodes`: set -> count), one example per training pair
    (`pairs`), at least `batch` of them; else TfrecError, one sentence naming what differs."""
    import json

    folder = Path(folder)
    info_path = folder / "sampled.json"
    if not info_path.is_file():
        raise TfrecError(f"sample.examples: {folder} is not a folder written by `tfrec data "
                         "sample` (it has no sampled.json)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TfrecError(f"{info_path} is not readable JSON ({e})") from None
    again = "run `tfrec data sample` again with this run's schema and config"
    recorded = Path(info.get("schema", ""))
    same_schema = recorded.resolve() == Path(schema).resolve() or (
        recorded.is_file() and recorded.read_bytes() == Path(schema).read_bytes())
    if not same_schema:
        raise TfrecError(f"{folder} was sampled from the schema {recorded}, not {schema}: {again}")
    if list(info.get("fanouts", [])) != list(fanouts):
        raise TfrecError(f"{folder} was sampled with fanouts {info.get('fanouts')}, but "
                         f"sample.fanouts is {list(fanouts)}: {again}")
    if "split" in info and info["split"] != json.loads(json.dumps(split)):
        raise TfrecError(f"{folder} was sampled from the training pairs of the split "
                         f"{info['split']}, not of this run's {split}: {again}")
    tables = info.get("tables", {})
    for name, count in nodes.items():
        if tables.get(f"nodes.{name}") != count:
            raise TfrecError(f"{folder} was sampled from a graph of {tables.get(f'nodes.{name}')} "
                             f"{name} nodes, but this run's has {count}: {again}")
    if info.get("examples") != pairs:
        raise TfrecError(f"{folder} holds {info.get('examples')} examples, but this run has "
                         f"{pairs} training pairs: {again}")
    if batch > pairs:
        raise TfrecError(f"train.batch_size {batch} is more than the {pairs} examples of "
                         f"{folder}: lower it")
    sample_files(folder)
    return info


def example_spec(folder: str | Path):
    """The GraphTensorSpec of one example of `folder` (a `tfrec data sample --out` folder)."""
    import tensorflow_gnn as tfgnn
    from google.protobuf import text_format

    path = Path(folder) / SAMPLES / "schema.pbtxt"
    schema = text_format.Parse(read_text(path, "sampled-graph schema"), tfgnn.GraphSchema())
    return tfgnn.create_graph_spec_from_schema_pb(schema)


def sample_files(folder: str | Path) -> list[str]:
    """The example shards of `folder`, sorted; TfrecError if there are none."""
    files = sorted(str(p) for p in (Path(folder) / SAMPLES).glob("examples.tfrecord-*"))
    if not files:
        raise TfrecError(f"{Path(folder) / SAMPLES} holds no examples.tfrecord-* shards: run "
                         "`tfrec data sample` into it first")
    return files


def to_model_graph(graph, graph_spec, user_set: str, item_set: str):
    """A parsed batch of link subgraphs (a GraphTensor [B]) -> (graph, users, items,
    item_rows, labels) as in the module docstring. graph_spec: the model graph's GraphTensorSpec
    (node sets, edge sets and features to keep, with their dtypes)."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn
    from tensorflow_gnn.experimental.sampler import link_samplers

    graph = link_samplers.merge_components(graph.merge_batch_to_components())
    users = tf.cast(graph.edge_sets["_readout/source"].adjacency.source, tf.int32)
    items = tf.cast(graph.edge_sets["_readout/target"].adjacency.source, tf.int32)
    node_sets = {}
    for name, spec in graph_spec.node_sets_spec.items():
        nodes = graph.node_sets[name]
        node_sets[name] = tfgnn.NodeSet.from_fields(
            sizes=nodes.sizes, features={f: tf.cast(nodes[f], s.dtype)
                                         for f, s in spec.features_spec.items()})
    edge_sets = {}
    for name, spec in graph_spec.edge_sets_spec.items():
        edges = graph.edge_sets[name]
        features = {}
        for f, s in spec.features_spec.items():
            if f in edges.features:
                features[f] = tf.cast(edges[f], s.dtype)
            else:  # written as scalar columns f.0, f.1, ... (tfrec.data.beam_tables)
                features[f] = tf.cast(tf.stack([edges[f"{f}.{k}"] for k in range(s.shape[-1])],
                                               axis=-1), s.dtype)
        edge_sets[name] = tfgnn.EdgeSet.from_fields(
            sizes=edges.sizes, adjacency=tfgnn.Adjacency.from_indices(
                (spec.adjacency_spec.source_name, edges.adjacency.source),
                (spec.adjacency_spec.target_name, edges.adjacency.target)),
            features=features)
    out = tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets)
    labels = tf.reshape(graph.node_sets["_readout"]["label"], [-1])
    return out, users, items, node_sets[item_set]["row"], labels


def read_sampled(folder: str | Path, graph_spec, user_set: str, item_set: str, *,
                 batch_size: int, shuffle: int = 0, seed: int = 0, shard=(1, 0)):
    """The tf.data.Dataset of training batches of `folder` (see the module docstring): each
    element (graph, users [B] int32, items [B] int32, item_rows [I_g] int32, labels [B]
    float32), `graph` of `graph_spec` with relaxed sizes and one component. shuffle: buffer
    of examples shuffled (with `seed`) before batching (0 = file order); the last partial
    batch is dropped."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    spec = example_spec(folder)
    data = tf.data.TFRecordDataset(sample_files(folder))
    if shuffle:
        data = data.shuffle(shuffle, seed=seed)
    if shard[0] > 1:
        data = data.shard(*shard)
    return (data.batch(batch_size, drop_remainder=True)
            .map(lambda s: to_model_graph(tfgnn.parse_example(spec, s), graph_spec, user_set,
                                          item_set), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))
