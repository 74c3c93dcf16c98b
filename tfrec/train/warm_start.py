"""Warm start: a new run's model starts from an old run's best checkpoint (`tfrec train
--warm-start OLD_RUN`), across vocabularies that changed.

    old run: run.json (schema, config) + vocab/<node set>.txt + checkpoints/best
    new run: its own tables -> GraphData (new vocabularies) -> a freshly built model
Stages:
  1. `WarmStart.open` (before anything is read or written): the old run is a trained run, not
     the new folder; its schema has the new schema's node sets, user/item sets and id columns;
     its architecture (kind, dim, conv, layers, ...) is the new config's;
  2. `WarmStart.map` (once the new tables are read): per node set, the old ids onto the new
     ones (`VocabMap`), refusing a node set whose ids share nothing with the old run's (an id
     type that changed: "12" vs "u12"), and the old ID tables' shapes against the old vocab;
  3. `WarmStart.apply(trained)` (on the freshly built model, before the first step): every
     ID-indexed variable (ID embeddings [N, dim], fine-tuned text tables [N, 384], the item
     bias [I]) gets the old rows of the ids it still has; new ids keep their fresh
     initialisation (their features, text and KG neighbours embed them, the cold-start path);
     removed ids are dropped. Every other model/ranking variable (convolutions, projections,
     the ranking MLP) is copied when its shape is unchanged, else left fresh (a categorical
     vocabulary that grew). The optimizer restarts: its moments belong to rows that moved.
Every problem of stages 1-2 is a TfrecError (one sentence, exit 2) raised before the new run
folder is claimed, so nothing is written.
"""

import dataclasses
import re
from pathlib import Path

import numpy as np

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.schema import load_schema
from tfrec.train.run_dir import RunDir

# model config keys that decide variable shapes: they must not change across a warm start
ARCHITECTURE = ("kind", "dim", "conv", "layers", "hidden", "heads", "normalization", "residual",
                "use_text", "use_kg", "use_features", "edge_gates", "item_bias")
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
# checkpoint keys of the variables whose rows are the nodes of a node set
_ID_KEYS = (re.compile(r"^model/encoders/(?P<set>[^/]+)/ids/embeddings$"),
            re.compile(r"^model/encoders/(?P<set>[^/]+)/text_table$"))
_ITEM_BIAS = "model/item_bias"


@dataclasses.dataclass(frozen=True)
class VocabMap:
    """How one node set's old rows become new rows: new_table[new_rows] = old_table[old_rows].

    old_rows, new_rows: [K] int64 rows of the K ids in both vocabularies; added: ids only in
    the new one (fresh rows); removed: ids only in the old one (dropped)."""

    node_set: str
    old_rows: np.ndarray
    new_rows: np.ndarray
    added: int
    removed: int


def map_vocab(node_set: str, old_ids, new_ids) -> VocabMap:
    """old_ids [N_old], new_ids [N_new] (row = dense index, ids unique) -> their VocabMap."""
    new_index = {str(i): r for r, i in enumerate(new_ids)}
    pairs = [(r, new_index[str(i)]) for r, i in enumerate(old_ids) if str(i) in new_index]
    old_rows = np.array([p[0] for p in pairs], np.int64)
    new_rows = np.array([p[1] for p in pairs], np.int64)
    return VocabMap(node_set, old_rows, new_rows, len(new_ids) - len(pairs),
                    len(old_ids) - len(pairs))


def checkpoint_keys(trained) -> dict[str, object]:
    """checkpoint key (without the attribute suffix) -> variable, for the model and ranking
    variables of a built `tfrec.train.fit.Trained`, named as its checkpoint names them."""
    from tensorflow.python.checkpoint import graph_view, util  # the keys tf.train.Checkpoint uses

    names = util.objects_ids_and_slot_variables_and_paths(
        graph_view.ObjectGraphView(trained.checkpoint), skip_slot_variables=True)[4]
    out = {}
    variables = list(trained.model.variables)
    variables += trained.ranking.variables if trained.ranking is not None else []
    for v in variables:
        v = getattr(v, "_variable", v)  # an AutoCastVariable under mixed precision
        if v in names:
            out[names[v]] = v
    return out


def _id_node_set(key: str, item_set: str) -> str | None:
    if key == _ITEM_BIAS:
        return item_set
    for pattern in _ID_KEYS:
        if m := pattern.match(key):
            return m.group("set")
    return None


class WarmStart:
    """An old run to start from; see the module docstring for the stages."""

    def __init__(self, old: RunDir, schema, config: Config, checkpoint: str):
        self.old, self.old_schema, self.old_config, self.checkpoint = \
            old, schema, config, checkpoint
        self.maps: dict[str, VocabMap] = {}
        self.report: dict = {}

    @classmethod
    def open(cls, old_dir: str, new_dir: str, schema_path: str, config: Config) -> "WarmStart":
        """Stage 1: checks the old run against the new schema and config."""
        old = RunDir(old_dir)
        if old.path.resolve() == Path(new_dir).resolve():
            raise TfrecError(f"--warm-start {old_dir} is the new --run-dir; the old run is "
                             "never modified: train into a new folder")
        old_schema_path, old_config = old.schema_and_config()
        if old_config.model.kind == "popularity":
            raise TfrecError(f"run {old_dir} is a popularity baseline, which has no weights to "
                             "warm-start from")
        checkpoint = old.best_checkpoint()
        old_schema, new_schema = load_schema(old_schema_path), load_schema(schema_path)
        o, n = sorted(old_schema.node_sets), sorted(new_schema.node_sets)
        if o != n:
            raise TfrecError(f"schema {schema_path} has the node sets {n} but run {old_dir} was "
                             f"trained on {o}; a warm start maps ids within the same node sets")
        for role in ("user_set", "item_set"):
            if getattr(old_schema, role) != getattr(new_schema, role):
                raise TfrecError(f"schema {schema_path} has {role.split('_')[0]}s in node set "
                                 f"{getattr(new_schema, role)!r} but run {old_dir} had them in "
                                 f"{getattr(old_schema, role)!r}")
        for name in n:
            a, b = old_schema.node_sets[name], new_schema.node_sets[name]
            if (a.filename is None) != (b.filename is None) or a.id_column != b.id_column:
                raise TfrecError(f"schema {schema_path}: node set {name!r} takes its ids from "
                                 f"{_id_source(b)} but run {old_dir} took them from "
                                 f"{_id_source(a)}, so its ids cannot be assumed the same")
        diff = [k for k in ARCHITECTURE
                if getattr(old_config.model, k) != getattr(config.model, k)]
        if old_config.text.mode != config.text.mode:
            diff.append("text.mode")
        if diff:
            raise TfrecError(f"the config differs from run {old_dir}'s in "
                             f"{', '.join(f'model.{k}' if '.' not in k else k for k in diff)}, "
                             "which changes the shapes of its weights: warm-start with the old "
                             "architecture or train from scratch")
        return cls(old, old_schema, old_config, checkpoint)

    def old_vocabularies(self) -> dict[str, np.ndarray]:
        """node set -> [N] old ids: the run's vocab/ folder, or (a run from before it was
        written) its schema's tables as they are now."""
        vocab = self.old.read_vocab()
        if vocab is not None:
            return vocab
        from tfrec.data.graph_data import load_graph_data

        return load_graph_data(self.old_schema).node_ids

    def map(self, node_ids: dict[str, np.ndarray]) -> None:
        """Stage 2: maps the old vocabularies onto the new ones (node set -> [N] ids)."""
        import tensorflow as tf

        old_ids = self.old_vocabularies()
        shapes = tf.train.load_checkpoint(self.checkpoint).get_variable_to_shape_map()
        for name, ids in node_ids.items():
            if name not in old_ids:
                raise TfrecError(f"run {self.old.path} has no vocabulary of node set {name!r}")
            m = map_vocab(name, old_ids[name], ids)
            if len(ids) and len(old_ids[name]) and not len(m.new_rows):
                raise TfrecError(
                    f"node set {name!r} shares no id with run {self.old.path} (old ids like "
                    f"{str(old_ids[name][0])!r}, new ones like {str(ids[0])!r}): did its id "
                    "column's type change?")
            self.maps[name] = m
        for key, shape in shapes.items():
            name = _id_node_set(key.removesuffix(_VALUE), self.old_schema.item_set)
            if name is not None and name in old_ids and shape[0] != len(old_ids[name]):
                raise TfrecError(f"the checkpoint {self.checkpoint} has {shape[0]} rows of node "
                                 f"set {name!r} but its vocabulary {len(old_ids[name])} ids: the "
                                 "run's tables changed since it trained")
        self.report = {"from": str(self.old.path), "checkpoint": self.checkpoint,
                       "node_sets": {n: {"kept": len(m.new_rows), "added": m.added,
                                         "removed": m.removed} for n, m in self.maps.items()}}

    def apply(self, trained) -> dict:
        """Stage 3: the old weights into the freshly built `trained` (tfrec.train.fit.Trained);
        returns {"mapped", "copied", "fresh": [checkpoint keys]}."""
        import tensorflow as tf

        reader = tf.train.load_checkpoint(self.checkpoint)
        shapes = reader.get_variable_to_shape_map()
        done = {"mapped": [], "copied": [], "fresh": []}
        for key, var in sorted(checkpoint_keys(trained).items()):
            full = key + _VALUE
            node_set = _id_node_set(key, self.old_schema.item_set)
            if full not in shapes:
                done["fresh"].append(key)
            elif node_set is not None:
                m = self.maps[node_set]
                value = var.numpy()
                value[m.new_rows] = reader.get_tensor(full)[m.old_rows]
                var.assign(value)
                done["mapped"].append(key)
            elif list(shapes[full]) == list(var.shape):
                var.assign(reader.get_tensor(full))
                done["copied"].append(key)
            else:
                done["fresh"].append(key)
        self.report.update({k: len(v) for k, v in done.items()}, fresh_keys=done["fresh"])
        return done

    def summary(self) -> str:
        """One line per node set and one for the variables, for the training log."""
        lines = [f"warm start from {self.old.path} (best checkpoint {Path(self.checkpoint).name}"
                 "); the optimizer restarts"]
        lines += [f"  {n}: {v['kept']} ids keep their rows, {v['added']} new, {v['removed']} "
                  "removed" for n, v in self.report["node_sets"].items()]
        if "mapped" in self.report:
            lines.append(f"  variables: {self.report['mapped']} ID tables mapped, "
                         f"{self.report['copied']} copied, {self.report['fresh']} fresh"
                         + (f" ({', '.join(self.report['fresh_keys'])})"
                            if self.report["fresh_keys"] else ""))
        return "\n".join(lines)


def _id_source(node_set) -> str:
    return "its edges" if node_set.filename is None else f"column {node_set.id_column!r}"
