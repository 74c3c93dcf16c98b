"""`tfrec schema validate SCHEMA`."""

from tfrec.schema.loader import load_schema


def register(sub) -> None:
    schema = sub.add_parser("schema", help="check a TF-GNN GraphSchema")
    cmds = schema.add_subparsers(dest="schema_command", metavar="SUBCOMMAND", required=True)
    validate = cmds.add_parser(
        "validate", help="parse and check a schema, print a summary",
        description="Parse SCHEMA (a GraphSchema text proto), check it is a recommendation graph "
        "tfrec can build (edge sets name existing node sets, supported feature dtypes and "
        "shapes, one interaction edge set, tables named), and print a summary.")
    validate.add_argument("schema", metavar="SCHEMA", help="path to a .pbtxt GraphSchema")
    validate.set_defaults(func=_validate)


def _validate(args) -> int:
    s = load_schema(args.schema)
    print(f"{s.path}: valid. Users = {s.user_set!r}, items = {s.item_set!r}, "
          f"interactions = {s.interactions!r}.")
    for n in s.node_sets.values():
        feats = ", ".join(f"{f.name}:{f.dtype}/{f.role}" for f in n.features) or "-"
        table = n.filename or "(ids from edges)"
        print(f"  node set {n.name:<14} table {table}; features {feats}; "
              f"shown as {n.title or 'its id'}")
    for e in s.edge_sets.values():
        feats = ", ".join(f"{f.name}:{f.dtype}" for f in e.features) or "-"
        table = e.filename or f"(reverse of {e.reverse_of})"
        print(f"  edge set {e.name:<14} {e.source} -> {e.target}, table {table}; features {feats}")
    return 0
