"""`tfrec data build`: schema + tables -> a folder with the training graph, vocabularies, splits.

Output folder (written to a temporary folder, renamed into place when complete):
  schema.pbtxt          the schema it was built from
  graph.tfrecord        one tf.Example: the message-passing GraphTensor (training pairs only)
  vocab/<node set>.txt  original ids, one per line; line i = dense index i
  splits/{train,valid,test}.tsv   user_id, item_id: original ids (the explicit split format)
  summary.json          node/edge counts and split sizes
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from tfrec.atomic import atomic_dir
from tfrec.data.graph_data import GraphData, load_graph_data
from tfrec.data.graph_tensor import training_graph
from tfrec.data.splits import SPLITS, Split, SplitConfig, split_interactions


@dataclasses.dataclass(frozen=True)
class BuiltGraph:
    data: GraphData
    split: Split
    graph: object  # tfgnn.GraphTensor of the training graph


def build_graph(schema_path: str, split_config: SplitConfig) -> BuiltGraph:
    """Stages: read + validate tables (load_graph_data) -> split interaction pairs ->
    GraphTensor of the training graph, checked against the schema."""
    data = load_graph_data(schema_path)
    split = split_interactions(data, split_config)
    return BuiltGraph(data, split, training_graph(data, split))


def read_graph(folder: str | Path):
    """The training GraphTensor a `tfrec data build` folder holds, parsed with the spec of its
    schema (`Schema.graph_spec`): the graph `training_graph` built."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    from tfrec.schema import load_schema

    spec = load_schema(Path(folder) / "schema.pbtxt").graph_spec()
    record = next(iter(tf.data.TFRecordDataset(str(Path(folder) / "graph.tfrecord"))))
    return tfgnn.parse_single_example(spec, record)


def summary(built: BuiltGraph) -> dict:
    g, schema = built.graph, built.data.schema
    sizes = {s: int(np.sum(built.split.pair_split == i)) for i, s in enumerate(SPLITS)}
    return {
        "schema": str(schema.path),
        "node_sets": {n: {"nodes": int(g.node_sets[n].sizes[0]),
                          "features": sorted(g.node_sets[n].features)} for n in schema.node_sets},
        "edge_sets": {n: {"edges": int(g.edge_sets[n].sizes[0]),
                          "features": sorted(g.edge_sets[n].features),
                          "source": schema.edge_sets[n].source,
                          "target": schema.edge_sets[n].target} for n in schema.edge_sets},
        "interaction_pairs": {**sizes, "dropped": int(np.sum(built.split.pair_split < 0))},
    }


def format_summary(s: dict) -> str:
    lines = [f"{'node set':<18}{'nodes':>9}  features"]
    lines += [f"{n:<18}{v['nodes']:>9,}  {', '.join(v['features']) or '-'}"
              for n, v in s["node_sets"].items()]
    lines += ["", f"{'edge set (train graph)':<24}{'edges':>9}  {'from -> to':<20} features"]
    lines += [f"{n:<24}{v['edges']:>9,}  {v['source'] + ' -> ' + v['target']:<20} "
              f"{', '.join(v['features']) or '-'}" for n, v in s["edge_sets"].items()]
    p = s["interaction_pairs"]
    lines += ["", "interaction pairs: " + ", ".join(f"{k} {v:,}" for k, v in p.items())]
    return "\n".join(lines)


def write_built(built: BuiltGraph, out: str | Path) -> dict:
    """Writes the folder described in the module docstring atomically; returns its summary."""
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    data, split = built.data, built.split
    info = summary(built)
    with atomic_dir(out) as tmp:
        shutil.copyfile(data.schema.path, tmp / "schema.pbtxt")
        with tf.io.TFRecordWriter(str(tmp / "graph.tfrecord")) as w:
            w.write(tfgnn.write_example(built.graph).SerializeToString())
        (tmp / "vocab").mkdir()
        for name, ids in data.node_ids.items():
            (tmp / "vocab" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids),
                                                       encoding="utf-8")
        (tmp / "splits").mkdir()
        users, items = data.node_ids[data.schema.user_set], data.node_ids[data.schema.item_set]
        for name in SPLITS:
            u, i = split.pairs(name)
            rows = "".join(f"{a}\t{b}\n" for a, b in zip(users[u], items[i]))
            (tmp / "splits" / f"{name}.tsv").write_text("user_id\titem_id\n" + rows,
                                                       encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
