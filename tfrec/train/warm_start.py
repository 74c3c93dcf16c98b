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
     vocabulary that grew). The optimizer's slots (Adam's moments) follow their variables
     the same way (new rows zero) and its step count continues (the learning-rate schedule
     restarts: tfrec.train.fit.Shifted), so the warm run does not start with a cold
     optimizer. Then the item rows no old training shaped (new ids, and known ids whose
     slot rows are zero: they never had a gradient) start from the mean of their text and
     knowledge-graph neighbours' rows (tfrec.train.neighbours).
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
# checkpoint keys of the tables whose rows are the values of a categorical / token feature
_FEATURE_KEY = re.compile(r"^model/encoders/(?P<key>[^/]+/(cats|multi)/[^/]+)/"
                          r"(embeddings|kernel)$")
_ITEM_BIAS = "model/item_bias"
_ITEM_IDS = "model/encoders/{}/ids/embeddings"
_ITERATIONS = "optimizer/_iterations" + _VALUE


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


def old_slots(shapes: dict, optimizer, variables: list) -> dict[int, list]:
    """id(variable) -> [(its slot variable, the old checkpoint key of that slot)] for an
    optimizer whose slots were built over `variables` (tf-keras: its variables are the step
    count, then each variable's k slots in turn, which the checkpoint keys
    "optimizer/_variables/<n>" number). Empty when the old checkpoint's optimizer state is
    not one of the same kind and layout (another optimizer, a changed architecture): the
    optimizer then restarts."""
    slots = list(optimizer.variables)[1:]
    old = [k for k in shapes if k.startswith("optimizer/_variables/")]
    k = len(slots) // max(len(variables), 1)
    if not variables or len(slots) != k * len(variables) or len(old) != len(slots) \
            or _ITERATIONS not in shapes:
        return {}
    out = {}
    for i, var in enumerate(variables):
        pairs = []
        for j in range(k):
            slot, key = slots[i * k + j], f"optimizer/_variables/{1 + i * k + j}{_VALUE}"
            if key not in shapes or list(slot.shape)[1:] != list(shapes[key])[1:] \
                    or list(slot.shape) != list(var.shape):
                return {}
            pairs.append((slot, key))
        out[id(var)] = pairs
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
        self.feature_maps: dict[str, VocabMap] = {}  # "<set>/cats|multi/<feature>" ->
        self.report: dict = {}
        self.start_step = 0  # the old optimizer's step count (set by `map`)

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

    @staticmethod
    def training_config(config: Config) -> Config:
        """`config` with train.warm_learning_rate / warm_patience (where set) as the warm run's
        learning_rate / patience."""
        t = config.train
        return dataclasses.replace(config, train=dataclasses.replace(
            t, learning_rate=t.warm_learning_rate or t.learning_rate,
            patience=t.warm_patience or t.patience))

    def old_vocabularies(self) -> dict[str, np.ndarray]:
        """node set -> [N] old ids: the run's vocab/ folder, or (a run from before it was
        written) its schema's tables as they are now."""
        vocab = self.old.read_vocab()
        if vocab is not None:
            return vocab
        from tfrec.data.graph_data import load_graph_data

        return load_graph_data(self.old_schema).node_ids

    def map(self, node_ids: dict[str, np.ndarray], features: dict | None = None) -> None:
        """Stage 2: maps the old vocabularies onto the new ones (node set -> [N] ids), and the
        rows of the categorical / token feature tables by value (`features`: the new run's
        tfrec.model.inputs.feature_vocabularies; an old run from before vocab/features has
        its feature tables copied when their shapes match)."""
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
        old_features = self.old.read_feature_vocab()
        for key, values in (features or {}).items():
            full = f"model/encoders/{key}/{'embeddings' if '/cats/' in key else 'kernel'}"
            if key in old_features and list(shapes.get(full + _VALUE, [0]))[0] == \
                    len(old_features[key]):
                self.feature_maps[key] = map_vocab(key, old_features[key], values)
        if _ITERATIONS in shapes:
            self.start_step = int(tf.train.load_checkpoint(self.checkpoint).get_tensor(
                _ITERATIONS))
        self.report = {"from": str(self.old.path), "checkpoint": self.checkpoint,
                       "node_sets": {n: {"kept": len(m.new_rows), "added": m.added,
                                         "removed": m.removed} for n, m in self.maps.items()}}

    def apply(self, trained, optimizer=None, variables=None) -> dict:
        """Stage 3: the old weights into the freshly built `trained` (tfrec.train.fit.Trained),
        and, given its `optimizer` (slots built over `variables`, in the order the old run
        built them), the old optimizer state mapped the same way; then the untrained item rows
        start from their neighbours (`init_from_neighbours`).
        Returns {"mapped", "copied", "fresh": [checkpoint keys]}."""
        import tensorflow as tf

        reader = tf.train.load_checkpoint(self.checkpoint)
        shapes = reader.get_variable_to_shape_map()
        slots = old_slots(shapes, optimizer, variables) if optimizer is not None else {}
        if slots:
            optimizer.iterations.assign(reader.get_tensor(_ITERATIONS))
        done = {"mapped": [], "copied": [], "fresh": []}
        trained_rows = None  # new item rows that hold a trained old row
        for key, var in sorted(checkpoint_keys(trained).items()):
            full = key + _VALUE
            rows = self._rows(key)
            if full not in shapes or (rows is None and list(shapes[full]) != list(var.shape)):
                done["fresh"].append(key)
                continue
            move = _move(rows)
            var.assign(move(reader.get_tensor(full), var.numpy()))
            done["mapped" if rows is not None else "copied"].append(key)
            for slot, old_key in slots.get(id(var), []):
                if list(shapes[old_key]) != list(shapes[full]):
                    continue  # not this weight's slot: it stays fresh (zero)
                old = reader.get_tensor(old_key)
                slot.assign(move(old, np.zeros(slot.shape, old.dtype)))
                if key == _ITEM_IDS.format(self.old_schema.item_set):
                    trained_rows = self._trained_rows(old)
        self.report.update({k: len(v) for k, v in done.items()}, fresh_keys=done["fresh"],
                           optimizer="continued" if slots else "restarted")
        self.report["initialised"] = self.init_from_neighbours(trained, trained_rows)
        return done

    def _rows(self, key: str) -> VocabMap | None:
        """How the rows of the variable of checkpoint `key` move: its node set's ids (an
        ID-indexed variable) or its feature's values (a feature table); None: not by row."""
        node_set = _id_node_set(key, self.old_schema.item_set)
        if node_set is not None:
            return self.maps[node_set]
        m = _FEATURE_KEY.match(key)
        return self.feature_maps.get(m.group("key")) if m else None

    def _trained_rows(self, old_slot: np.ndarray) -> np.ndarray:
        """[I_new] bool: the new item rows holding an old row that was ever trained, known
        from `old_slot` (an optimizer slot of the old item ID table, [I_old, dim]): a row
        whose slot is all zero never had a gradient (an item without training interactions),
        so it holds only its initialisation."""
        m = self.maps[self.old_schema.item_set]
        out = np.zeros(len(m.new_rows) + m.added, bool)
        out[m.new_rows] = np.any(old_slot[m.old_rows] != 0, axis=1)
        return out

    def init_from_neighbours(self, trained, trained_rows: np.ndarray | None) -> int:
        """The item ID rows (and item biases) that no old training shaped (new ids; with the
        old optimizer's slots, also known ids that never had a gradient) become the mean of
        their text and knowledge-graph neighbours' (tfrec.train.neighbours); returns how many
        got neighbours."""
        from tfrec.train import neighbours as nb

        item_set, user_set = self.old_schema.item_set, self.old_schema.user_set
        encoder = trained.model.encoders[item_set]
        m = self.maps[item_set]
        if trained_rows is None:
            trained_rows = np.zeros(encoder.ids.input_dim, bool)
            trained_rows[m.new_rows] = True
        targets = np.flatnonzero(~trained_rows)
        if not len(targets) or not trained_rows.any():
            return 0
        features = trained.graph.node_sets[item_set].features
        text = features["text"].numpy() if "text" in features else None
        entities = nb.item_entities(trained.graph, user_set, item_set)
        rows = nb.neighbours(targets, trained_rows, text, entities if entities.nnz else None)
        tables = [encoder.ids.embeddings]
        tables += [trained.model.item_bias] if trained.model.item_bias is not None else []
        for table in tables:
            table.assign(nb.initialise(table.numpy(), targets, rows))
        return int(sum(len(r) > 0 for r in rows))

    def summary(self) -> str:
        """One line per node set and one for the variables, for the training log."""
        continued = self.report.get("optimizer") == "continued"
        lines = [f"warm start from {self.old.path} (best checkpoint {Path(self.checkpoint).name}"
                 "); the optimizer " + ("continues (its slots mapped like the weights)"
                                        if continued else "restarts")]
        lines += [f"  {n}: {v['kept']} ids keep their rows, {v['added']} new, {v['removed']} "
                  "removed" for n, v in self.report["node_sets"].items()]
        if "mapped" in self.report:
            lines.append(f"  variables: {self.report['mapped']} ID/feature tables mapped, "
                         f"{self.report['copied']} copied, {self.report['fresh']} fresh"
                         + (f" ({', '.join(self.report['fresh_keys'])})"
                            if self.report["fresh_keys"] else ""))
            lines.append(f"  {self.report['initialised']} untrained item rows start from their "
                         "text and knowledge-graph neighbours")
        return "\n".join(lines)


def _move(rows: VocabMap | None):
    """(old value, new value) -> the new value with the old one's rows that `rows` keeps, in
    their new places, or (rows None) the old value itself."""
    if rows is None:
        return lambda old, new: old

    def move(old, new):
        new[rows.new_rows] = old[rows.old_rows]
        return new
    return move


def _id_source(node_set) -> str:
    return "its edges" if node_set.filename is None else f"column {node_set.id_column!r}"
