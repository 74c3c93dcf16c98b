"""Reading TSV tables (tfrec.data.tables.read_table): columns, line numbers, and one string
object per repeated value of a column that repeats itself."""

from tfrec.data import tables
from tfrec.data.tables import read_table


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
