"""Reading TSV tables (tfrec.data.tables.read_table): columns, line numbers, and one string
object per repeated value of a column that repeats itself."""

import array

import numpy as np
import pytest

from tfrec.data import tables
from tfrec.data.tables import read_table
from tfrec.errors import TfrecError
from tfrec.schema.loader import FeatureSpec


def test_columns_lines_and_shared_repeated_values(tmp_path, monkeypatch):
    """30 rows: users u0..u4 and 3 events (5 and 3 distinct values at the check after 24 rows,
    at most 24 / 4 = 6: shared) and distinct timestamps (24 of 24: no longer shared from row
    25 on); a blank line after the header puts data rows on lines 3..32."""
    monkeypatch.setattr(tables, "SHARED", 24)
    rows = [(f"u{k % 5}", ("view", "cart", "buy")[k % 3], str(1000 + k)) for k in range(30)]
    path = tmp_path / "t.tsv"
    path.write_text("user\tevent\ttime:int\n\n" + "".join("\t".join(r) + "\n" for r in rows))
    table = read_table(path, "t.tsv")
    assert table.num_rows == 30 and list(table.columns) == ["user", "event", "time"]
    assert table.columns["user"] == [r[0] for r in rows]
    assert table.line(0) == 3 and table.line(29) == 32
    event = table.columns["event"]
    assert event[0] is event[3] is event[27]  # "view": one object, before the check and after
    user = table.columns["user"]
    assert user[1] is user[11] is user[21]
    time = table.columns["time"]
    assert time == [r[2] for r in rows] and len({id(t) for t in time}) == 30


def test_numeric_columns_are_read_as_numbers_row_by_row(tmp_path):
    """`numeric` columns become int64 / float64 arrays while reading (no string per row);
    Table.feature narrows them to the schema's dtype."""
    path = tmp_path / "t.tsv"
    path.write_text("id\ttime\tscore\n7\t1700000000\t0.5\n8\t-3\t2e3\n")
    table = read_table(path, "t.tsv", {"time": "int32", "score": "float32"})
    assert table.columns["id"] == ["7", "8"]  # not named: text
    assert table.columns["time"] == array.array("q", [1700000000, -3])
    assert table.columns["score"] == array.array("d", [0.5, 2000.0])
    score = table.feature(FeatureSpec("score", "score", "float32", "numeric"))
    assert score.dtype == np.float32 and score.tolist() == [0.5, 2000.0]
    assert table.feature(FeatureSpec("t", "time", "int32", "numeric")).tolist() == [1700000000,
                                                                                   -3]
    path.write_text("id\ttime\tscore\n7\t1700000000\t0.5\n8\t3000000000\t1e39\n")
    table = read_table(path, "t.tsv", {"time": "int32", "score": "float32"})
    with pytest.raises(TfrecError, match=r"^t.tsv, line 3, column 'time': '3000000000' is not "
                                         r"a valid int32 value$"):
        table.feature(FeatureSpec("t", "time", "int32", "numeric"))
    with pytest.raises(TfrecError, match=r"^t.tsv, line 3, column 'score': '1e\+39' is not a "
                                         r"finite float32 number$"):
        table.feature(FeatureSpec("score", "score", "float32", "numeric"))
    for row, message in (("9\t12.5\t1", "'12.5' is not a valid int64 value"),
                         ("9\t12\tnan", "'nan' is not a finite number")):
        path.write_text(f"id\ttime\tscore\n7\t1\t0.5\n\n{row}\n")
        with pytest.raises(TfrecError, match=rf"^t.tsv, line 4, column '\w+': {message}$"):
            read_table(path, "t.tsv", {"time": "int64", "score": "float32"})
