"""bench/peers/atomic.py: RecBole atomic files from a `tfrec data build` folder (no RecBole needed).

The build folder is made by hand (tests/data/tiny's schema and tables, split files and item
vocabulary written here), so every expected row below is read off the inputs.
"""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("peers_atomic", ROOT / "bench/peers/atomic.py")
atomic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(atomic)

SPLIT_ROWS = {"train": "u1\ti1\nu1\ti2\nu2\ti3\n", "valid": "u1\ti3\n", "test": "u1\ti4\nu2\ti1\n"}


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


@pytest.fixture
def build(tiny) -> Path:
    """A `tfrec data build`-shaped folder: schema + tables, splits/*.tsv, vocab/item.txt."""
    (tiny / "splits").mkdir()
    for name, rows in SPLIT_ROWS.items():
        (tiny / "splits" / f"{name}.tsv").write_text("user_id\titem_id\n" + rows)
    (tiny / "vocab").mkdir()
    items = [r[0] for r in _rows(tiny / "items.tsv")[1:]]
    (tiny / "vocab" / "item.txt").write_text("".join(f"{i}\n" for i in items))
    return tiny


def test_split_files_and_items(build, tmp_path):
    out = atomic.write_atomic(build, tmp_path / "atomic", "tiny")
    assert out == tmp_path / "atomic" / "tiny"
    assert _rows(out / "tiny.train.inter") == [["user_id:token", "item_id:token"], ["u1", "i1"],
                                               ["u1", "i2"], ["u2", "i3"]]
    assert _rows(out / "tiny.valid.inter")[1:] == [["u1", "i3"]]
    assert _rows(out / "tiny.test.inter")[1:] == [["u1", "i4"], ["u2", "i1"]]
    # every item of the table, also those in no split (i5, i6): both systems rank the same items
    assert _rows(out / "tiny.item") == [["item_id:token"], ["i1"], ["i2"], ["i3"], ["i4"],
                                        ["i5"], ["i6"]]
    assert [p.name for p in (tmp_path / "atomic").iterdir()] == ["tiny"]  # no temp folder left


def test_items_with_several_entities_become_entities_of_their_own(build, tmp_path):
    # item_entity.tsv: i1 -> wool, clothing; i2 -> cotton, clothing; i3 -> kitchen
    out = atomic.write_atomic(build, tmp_path, "tiny")
    assert _rows(out / "tiny.link") == [["item_id:token", "entity_id:token"], ["i1", "item:i1"],
                                        ["i2", "item:i2"], ["i3", "item:i3"]]
    assert _rows(out / "tiny.kg") == [
        ["head_id:token", "relation_id:token", "tail_id:token"],
        ["item:i1", "material", "wool"], ["item:i2", "material", "cotton"],
        ["item:i1", "category", "clothing"], ["item:i2", "category", "clothing"],
        ["item:i3", "category", "kitchen"]]


def test_one_entity_per_item_is_recboles_link_file(build, tmp_path):
    # MovieLens' shape: item -> entity at most once per item (.link), entity -> entity triples
    (build / "item_entity.tsv").write_text("item_id\tentity_id\trelation\ni1\tm.1\tlink\n"
                                           "i3\tm.3\tlink\n")
    (build / "kg.tsv").write_text("head_id\trelation_id\ttail_id\nm.1\tdirected_by\tm.9\n")
    schema = (build / "schema.pbtxt").read_text() + """
edge_sets {
  key: "kg"
  value {
    source: "entity"
    target: "entity"
    features { key: "relation" value { dtype: DT_STRING source: "relation_id" } }
    metadata {
      filename: "kg.tsv"
      extra { key: "source_column" value: "head_id" }
      extra { key: "target_column" value: "tail_id" }
    }
  }
}
"""
    (build / "schema.pbtxt").write_text(schema)
    out = atomic.write_atomic(build, tmp_path, "tiny")
    assert _rows(out / "tiny.link")[1:] == [["i1", "m.1"], ["i3", "m.3"]]
    assert _rows(out / "tiny.kg")[1:] == [["m.1", "directed_by", "m.9"]]


def test_without_knowledge_graph_no_kg_files(build, tmp_path):
    out = atomic.write_atomic(build, tmp_path, "tiny", with_kg=False)
    assert not (out / "tiny.kg").exists() and not (out / "tiny.link").exists()


def test_failed_write_leaves_nothing(build, tmp_path):
    (build / "splits" / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError):
        atomic.write_atomic(build, tmp_path / "atomic", "tiny")
    assert list((tmp_path / "atomic").iterdir()) == []
    shutil.rmtree(tmp_path / "atomic")
