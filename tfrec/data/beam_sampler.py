"""Link-prediction subgraphs sampled by TF-GNN's Apache Beam sampler, for graphs that do not fit
one host (the in-memory sampler, tfrec.data.sampling, is for those that do).

    DIR/graph/: unigraph tables (tfrec.data.beam_tables: nodes, edges, training pairs)
      --sampling model (Keras), per (user, item) pair: TF-GNN's sampling steps draw the tree
        of the SAME SamplingSpec as the in-memory sampler (tfrec.data.sampling.sampling_spec,
        [sample] fanouts, uniform) rooted at the user and the one rooted at the item; TF-GNN's
        build_graph_tensor merges both into one graph (each node once, parallel edges once);
        each node's features are looked up by "#id"; TF-GNN's link readout adds a "_readout"
        node with edges from the user ("_readout/source") and the item ("_readout/target");
        the edges between the pair's user and item (interaction edge set and its reverse) are
        dropped: message passing never sees the edge it predicts
      --sampler.create_program: the model as Beam stages (edge sampling and feature lookups
        are joins against the tables; the rest runs as saved TF models, DIR/artifacts/)
      --Beam (DirectRunner here; Dataflow / Flink / Spark with their pipeline flags)
      --> DIR/samples/examples.tfrecord-NNNNN-of-MMMMM: one serialized GraphTensor per pair,
          DIR/samples/schema.pbtxt: its GraphSchema (tfrec.data.beam_reader parses with it)

TF-GNN's own link sampler (symmetric_link_seed_op, the `tfgnn_sampler` console script) needs
the pair's two nodes in ONE node set; a user -> item pair is not, hence this model built from
its parts. Each direction of an edge is sampled on its own, as TF-GNN samples: unlike the
in-memory sampler's union, a sampled edge does not bring its reverse (the reverse edge's
features are in another table, which a per-example stage cannot read without another join).
"""

import contextlib
import dataclasses
import logging
from pathlib import Path

from tfrec.data.beam_tables import write_unigraph
from tfrec.schema import Schema
from tfrec.tf_setup import debug


@dataclasses.dataclass(frozen=True)
class LinkSets:
    """What the sampling model needs to know of the schema: the user and item node sets, and
    the edge sets whose (user, item) edges are the predicted link (interactions, reverses)."""

    user_set: str
    item_set: str
    interaction_sets: tuple[str, ...]


def _tensor_spec(feature, outer=(None,)):
    """The tf.TensorSpec of `feature` (a GraphSchema Feature) with `outer` leading dims."""
    import tensorflow as tf

    shape = tf.TensorShape(list(outer) + [d.size for d in feature.shape.dim])
    return tf.TensorSpec(shape, tf.dtypes.as_dtype(feature.dtype))


def sampling_model(graph_schema, link: LinkSets, fanouts):
    """(Keras model, {sampling layer name: feed name}) for `graph_schema` (the unigraph schema
    of tfrec.data.beam_tables). The model maps {"SeedUser", "SeedItem": ragged [B, 1] string
    "#id"s of the pairs, "SeedLabel": ragged [B, 1] float32 their labels} to a GraphTensor [B]
    of link subgraphs (module docstring); the feed
    names are the keys TF-GNN's ReadAndConvertUnigraph gives the tables ("nodes/<set>",
    "edges/<set>")."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn
    from tensorflow_gnn.experimental import sampler
    from tensorflow_gnn.experimental.sampler import core, subgraph_pipeline

    from tfrec.data.sampling import sampling_spec

    feeds: dict[str, str] = {}
    counter: dict[str, int] = {}

    def edge_sampler(op):
        features = graph_schema.edge_sets[op.edge_set_name].features
        count = counter.setdefault(op.edge_set_name, 0)
        counter[op.edge_set_name] += 1
        name = f"edges/{op.edge_set_name}_{count}"
        feeds[name] = f"edges/{op.edge_set_name}"
        # The keys and values below are placeholders: Beam joins against the edge table.
        return sampler.UniformEdgesSampler(
            outgoing_edges_accessor=sampler.KeyToTfExampleAccessor(
                sampler.InMemStringKeyToBytesAccessor(keys_to_values={"b": b"b"}),
                features_spec={tfgnn.TARGET_NAME: tf.TensorSpec([None], tf.string),
                               **{f: _tensor_spec(v) for f, v in features.items()}}),
            sample_size=op.sample_size, edge_target_feature_name=tfgnn.TARGET_NAME,
            name=name)

    seeds = {role: tf.keras.Input(type_spec=tf.RaggedTensorSpec([None, None], tf.string, 1),
                                  name=f"Seed{role.title()}") for role in ("user", "item")}
    label = tf.keras.Input(type_spec=tf.RaggedTensorSpec([None, None], tf.float32, 1),
                           name="SeedLabel")
    roots = {"user": link.user_set, "item": link.item_set}
    edge_sets: dict[str, list] = {}
    for role, seed in seeds.items():
        spec = sampling_spec(graph_schema, roots[role], fanouts)
        sampled = subgraph_pipeline.sample_edge_sets(seed, graph_schema, spec, edge_sampler)
        for key, features in sampled.items():
            edge_sets.setdefault(key, []).append(features)
        # each seed a node even when it has no edge: a self-loop set, dropped below
        edge_sets[f"{roots[role]},_seed_{role},{roots[role]}"] = {
            tfgnn.SOURCE_NAME: seed, tfgnn.TARGET_NAME: seed}
    graph = core.build_graph_tensor(edge_sets=edge_sets)
    graph = tfgnn.GraphTensor.from_pieces(
        context=graph.context, node_sets=graph.node_sets,
        edge_sets={n: e for n, e in graph.edge_sets.items() if not n.startswith("_seed_")})
    features = {}
    for name, nodes in graph.node_sets.items():
        specs = {f: _tensor_spec(v, ()) for f, v in graph_schema.node_sets[name].features.items()}
        accessor = sampler.KeyToTfExampleAccessor(
            sampler.InMemStringKeyToBytesAccessor(keys_to_values={"b": b"b"},
                                                  name=f"nodes/{name}"), features_spec=specs)
        features[name] = {**accessor(nodes["#id"]), "#id": nodes["#id"]}
    graph = graph.replace_features(node_sets=features)
    out = _link_layer()(link.user_set, link.item_set, link.interaction_sets)(
        [graph, seeds["user"].flat_values, seeds["item"].flat_values, label.flat_values])
    return tf.keras.Model({"SeedUser": seeds["user"], "SeedItem": seeds["item"],
                           "SeedLabel": label}, out), feeds


def _link_layer():
    """The Keras layer class that finishes each link subgraph of a batch: TF-GNN's link
    readout (a "_readout" node with the pair's "label" [1] float32 (its ranking label),
    "_readout/source" from the user seed, "_readout/target" from the item seed), then the
    edges between the pair's user and item dropped from the interaction edge sets (a layer
    with a config, not a Lambda: the sampling program's stage models are saved). Defined on
    first use: importing this module does not import TF."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn
    from tensorflow_gnn.experimental.sampler import link_samplers

    class LinkSubgraph(tf.keras.layers.Layer):
        def __init__(self, user_set: str, item_set: str, interaction_sets, **kwargs):
            super().__init__(**kwargs)
            self.user_set, self.item_set = user_set, item_set
            self.interaction_sets = tuple(interaction_sets)

        def get_config(self):
            return {**super().get_config(), "user_set": self.user_set,
                    "item_set": self.item_set, "interaction_sets": self.interaction_sets}

        def call(self, inputs):
            graphs, users, items, labels = inputs  # GraphTensor [B]; ids [B]; labels [B]
            spec = link_samplers._add_readout_to_spec(  # noqa: SLF001 (TF-GNN's helper)
                graphs.spec._unbatch().relax(num_nodes=True, num_edges=True),  # noqa: SLF001
                self.user_set, self.item_set)
            readout = tfgnn.NodeSetSpec.from_field_specs(
                features_spec={"label": tf.TensorSpec([1], tf.float32)},
                sizes_spec=spec.node_sets_spec["_readout"].sizes_spec)
            spec = tfgnn.GraphTensorSpec.from_piece_specs(
                context_spec=spec.context_spec, edge_sets_spec=spec.edge_sets_spec,
                node_sets_spec={**spec.node_sets_spec, "_readout": readout})
            return tf.map_fn(self._one, (graphs, users, items, labels),
                             fn_output_signature=spec)

        def _one(self, args):
            graph, user_id, item_id, label = args
            graph = link_samplers.add_readout(graph, user_id, item_id,
                                              source_node_set_name=self.user_set,
                                              target_node_set_name=self.item_set)
            graph = graph.replace_features(node_sets={"_readout": {"label": tf.reshape(
                label, [1])}})
            user = graph.edge_sets["_readout/source"].adjacency.source[0]
            item = graph.edge_sets["_readout/target"].adjacency.source[0]
            edge_sets = dict(graph.edge_sets)
            for name in self.interaction_sets:
                e = graph.edge_sets[name]
                pair = (user, item) if e.adjacency.source_name == self.user_set \
                    else (item, user)
                keep = ~((e.adjacency.source == pair[0]) & (e.adjacency.target == pair[1]))
                edge_sets[name] = tfgnn.EdgeSet.from_fields(
                    sizes=tf.reshape(tf.reduce_sum(tf.cast(keep, e.sizes.dtype)), [1]),
                    adjacency=tfgnn.Adjacency.from_indices(
                        (e.adjacency.source_name, tf.boolean_mask(e.adjacency.source, keep)),
                        (e.adjacency.target_name, tf.boolean_mask(e.adjacency.target, keep))),
                    features={f: tf.boolean_mask(v, keep) for f, v in e.features.items()})
            return tfgnn.GraphTensor.from_pieces(context=graph.context,
                                                 node_sets=graph.node_sets, edge_sets=edge_sets)

    return LinkSubgraph


def check_beam() -> None:
    """TfrecError unless Apache Beam can write TFRecords here (the `beam` extra)."""
    from tfrec.errors import TfrecError

    try:
        import apache_beam  # noqa: F401
        import crcmod  # noqa: F401  (Beam's TFRecord writer needs a CRC32C: apache-beam[tfrecord])
    except ModuleNotFoundError as e:
        raise TfrecError(f"sampling with Beam needs {e.name}: pip install -e '.[beam]' "
                         "(apache-beam[tfrecord]==2.77.0; make install does)") from None


def seed_values(example) -> tuple[bytes, tuple]:
    """A seeds-table tf.Example -> (example key, (user, item, label)) in the executor's value
    format: each a list of one ragged [1, 1] tensor, [[flat values, row lengths]]."""
    import numpy as np

    f = example.features.feature
    ids = [f[k].bytes_list.value[0] for k in ("#source", "#target")]
    values = [np.array([i], dtype=object) for i in ids]
    values.append(np.array(f["label"].float_list.value[:1], dtype=np.float32))
    return b"u" + ids[0] + b":i" + ids[1], tuple([[v, np.array([1], np.int64)]] for v in values)


def run(unigraph: Path, out: Path, link: LinkSets, fanouts, *, shards: int = 0,
        pipeline_args=()) -> dict:
    """Samples one link subgraph per row of the seeds table of `unigraph` (a folder written by
    tfrec.data.beam_tables.write_unigraph) with Beam, writing out/artifacts/ (the sampling
    program's TF models), out/samples/examples.tfrecord-* (`shards` files; 0 = the runner
    decides) and out/samples/schema.pbtxt. pipeline_args: Beam's own flags, e.g.
    ["--runner=DirectRunner"]. Returns {"examples": written, "seconds": {"program": building
    and saving the sampling program, "pipeline": running Beam}}."""
    import time

    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_gnn as tfgnn
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from google.protobuf import text_format
    from tensorflow_gnn.data import unigraph as unigraph_io
    from tensorflow_gnn.experimental import sampler
    from tensorflow_gnn.experimental.sampler.beam import accessors  # noqa: F401 (registers)
    from tensorflow_gnn.experimental.sampler.beam import edge_samplers  # noqa: F401 (registers)
    from tensorflow_gnn.experimental.sampler.beam import executor_lib, unigraph_utils

    start = time.perf_counter()
    with _quiet_logs():
        unigraph = unigraph.resolve()  # unigraph.read_schema joins a relative folder twice
        graph_schema = unigraph_io.read_schema(str(unigraph / "schema.pbtxt"))
        model, feed_names = sampling_model(graph_schema, link, fanouts)
        # TF-GNN names the program's output layer Sink() by Keras' default, and its executor
        # requires the name "sink": a second program in one process would get "sink_1"
        tf.keras.backend.reset_uids()
        program, artifacts = sampler.create_program(model)
        for layer, stage_model in artifacts.models.items():
            sampler.save_model(stage_model, str(out / "artifacts" / layer))
        spec = model.output.spec._unbatch()  # noqa: SLF001
        (out / "samples").mkdir(parents=True, exist_ok=True)
        (out / "samples" / "schema.pbtxt").write_text(
            text_format.MessageToString(tfgnn.create_schema_pb_from_graph_spec(spec)),
            encoding="utf-8")
        program_seconds = time.perf_counter() - start
        root = beam.Pipeline(options=PipelineOptions(list(pipeline_args)))
        tables = root | "ReadGraph" >> unigraph_utils.ReadAndConvertUnigraph(
            graph_schema, str(unigraph))
        feeds = {**tables, **{layer: tables[name] for layer, name in feed_names.items()}}
        seeds = (root | "ReadSeeds" >> unigraph_io.ReadTable(str(unigraph / "seeds.tfrecord"))
                 | "SeedValues" >> beam.Map(seed_values))
        inputs = {"SeedUser": seeds | "UserSeeds" >> beam.MapTuple(lambda k, v: (k, v[0])),
                  "SeedItem": seeds | "ItemSeeds" >> beam.MapTuple(lambda k, v: (k, v[1])),
                  "SeedLabel": seeds | "Labels" >> beam.MapTuple(lambda k, v: (k, v[2]))}
        examples = executor_lib.execute(program, inputs, feeds=feeds,
                                        artifacts_path=str(out / "artifacts"))
        _ = (examples | "DropKeys" >> beam.Values()
             | "Write" >> beam.io.tfrecordio.WriteToTFRecord(
                 str(out / "samples" / "examples.tfrecord"), num_shards=shards,
                 coder=beam.coders.ProtoCoder(tf.train.Example)))
        result = root.run()
        result.wait_until_finish()
        counters = result.metrics().query(MetricsFilter().with_name("ExamplesCount"))["counters"]
        return {"examples": int(sum(c.committed or 0 for c in counters)),
                "seconds": {"program": round(program_seconds, 1),
                            "pipeline": round(time.perf_counter() - start - program_seconds, 1)}}


@contextlib.contextmanager
def _quiet_logs():
    """Beam's Python warnings (one per stage: "input type hint will be ignored", ...) hidden
    unless TFREC_DEBUG=1, by raising the root logger to ERROR; errors still show."""
    if debug():
        yield
        return
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def sample_with_beam(graph, schema: Schema, users, items, labels, out: str | Path, fanouts,
                     *, shards: int = 0, pipeline_args=(), split: dict | None = None) -> dict:
    """`tfrec data sample`: link subgraphs of the training pairs (`users`, `items`: [P] rows,
    `labels`: [P] float32 ranking labels) of the model graph `graph`, sampled with Beam into
    the folder `out` (written whole or not at all). Stages: the unigraph tables (out/graph/,
    tfrec.data.beam_tables) -> the sampling model and program (the [sample] fanouts'
    SamplingSpec rooted at users and at items) -> the Beam pipeline (out/artifacts/,
    out/samples/) -> out/sampled.json, the summary returned (schema, fanouts, `split`: the
    [split] section the pairs came from, table rows, examples, seconds, the Beam flags)."""
    import json
    import time

    from tfrec.atomic import atomic_dir

    link = LinkSets(schema.user_set, schema.item_set,
                    tuple(n for n in graph.edge_sets if n == schema.interactions
                          or schema.edge_sets[n].reverse_of == schema.interactions))
    with atomic_dir(out) as tmp:
        start = time.perf_counter()
        tables = write_unigraph(graph, users, items, labels, tmp / "graph")
        tables_seconds = time.perf_counter() - start
        sampled = run(tmp / "graph", tmp, link, fanouts, shards=shards,
                      pipeline_args=pipeline_args)
        info = {"schema": str(schema.path), "fanouts": list(fanouts),
                **({} if split is None else {"split": split}), "tables": tables,
                "examples": sampled["examples"],
                "shards": len(list((tmp / "samples").glob("examples.tfrecord-*"))),
                "seconds": {"tables": round(tables_seconds, 1), **sampled["seconds"]},
                "pipeline_args": list(pipeline_args)}
        (tmp / "sampled.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
