"""RecBole atomic files from a `tfrec data build` folder: the same split, the same item set.

    write_atomic(build_dir, out_dir, name) -> out_dir/name/
      name.train.inter, name.valid.inter, name.test.inter   user_id:token, item_id:token
                                     (RecBole's `benchmark_filename: [train, valid, test]`)
      name.item                      item_id:token: EVERY item of the schema's item table, so
                                     RecBole ranks the same items tfrec does (also those
                                     without any interaction)
      name.kg, name.link             only when the schema has a knowledge graph (see `kg_rows`)

Rows are the split files' pairs in their order (original ids), so both systems read the
identical train / valid / test pairs. Only the standard library and tfrec's schema reader are
used: the peers' venv never needs tfrec, and tfrec never needs RecBole.
"""

import shutil
import tempfile
from pathlib import Path

SPLITS = ("train", "valid", "test")


def _tsv(path: Path) -> list[list[str]]:
    """Rows (header dropped) of a tab-separated file."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def _write(path: Path, header: list[str], rows) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        f.writelines("\t".join(r) + "\n" for r in rows)


def kg_rows(schema) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(link rows (item_id, entity_id), kg rows (head, relation, tail)) from the schema's tables.

    The knowledge graph is every edge set with a table of its own that is neither the
    interactions nor touches the user set; the relation is the edge set's `relation` feature
    when it has one, else the edge set's name. When one item -> entity edge set names at most
    one entity per item and other triples exist (MovieLens: `.link` and `.kg`), it becomes the
    link file and the rest the triples, ids unchanged (the files then hold RecBole's own
    ml-100k.link / ml-100k.kg rows). Otherwise each item is linked to its own entity `item:ID`
    and every edge is a triple. ([], []) when there is no knowledge graph.
    """
    from tfrec.data.tables import read_table, resolve

    item = schema.item_set
    edges = {}  # edge set -> (heads, relations, tails), ids as in the tables
    for e in schema.edge_sets.values():
        if not e.filename or e.is_interactions or schema.user_set in (e.source, e.target):
            continue
        t = read_table(resolve(e.filename, schema), e.filename)
        heads = t.column(e.source_column, "edge sources")
        rel = next((f.column for f in e.features if f.name == "relation"), None)
        edges[e.name] = (heads, t.column(rel, "relations") if rel else [e.name] * len(heads),
                         t.column(e.target_column, "edge targets"))
    from_items = [n for n in edges if schema.edge_sets[n].source == item]
    if len(from_items) == 1 and len(edges) > 1:
        heads, _, tails = edges[from_items[0]]
        if len(set(heads)) == len(heads):
            triples = [t for n, (h, r, x) in edges.items() if n != from_items[0]
                       for t in zip(h, r, x)]
            return list(zip(heads, tails)), triples

    def entity(node_set, i):
        return f"item:{i}" if node_set == item else i

    triples = [(entity(schema.edge_sets[n].source, h), r, entity(schema.edge_sets[n].target, x))
               for n, (hs, rs, xs) in edges.items() for h, r, x in zip(hs, rs, xs)]
    items = sorted({i for h, _, x in triples for i in (h, x) if i.startswith("item:")})
    return [(i.removeprefix("item:"), i) for i in items], triples


def write_atomic(build_dir: str | Path, out_dir: str | Path, name: str,
                 schema_path: str | Path | None = None, with_kg: bool = True) -> Path:
    """Writes out_dir/name/ (module docstring) from a `tfrec data build` folder; returns it.

    schema_path: the schema the folder was built from (its tables are found relative to it;
    default: the folder's copy, schema.pbtxt). The folder appears whole or not at all (written
    beside it, then renamed)."""
    from tfrec.schema import load_schema

    build_dir, out_dir = Path(build_dir), Path(out_dir)
    schema = load_schema(schema_path or build_dir / "schema.pbtxt")
    final = out_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))
    try:
        for split in SPLITS:
            _write(tmp / f"{name}.{split}.inter", ["user_id:token", "item_id:token"],
                   _tsv(build_dir / "splits" / f"{split}.tsv"))
        items = (build_dir / "vocab" / f"{schema.item_set}.txt").read_text(
            encoding="utf-8").splitlines()
        _write(tmp / f"{name}.item", ["item_id:token"], ([i] for i in items))
        links, triples = kg_rows(schema) if with_kg else ([], [])
        if triples:
            _write(tmp / f"{name}.link", ["item_id:token", "entity_id:token"], links)
            _write(tmp / f"{name}.kg", ["head_id:token", "relation_id:token", "tail_id:token"],
                   triples)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
