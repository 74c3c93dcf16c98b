"""Bad data gets one sentence naming the file/row/field, exit code 2, and no output folder."""

import os
import pathlib

import pytest

from tfrec.cli import main
from tfrec.data import tables


def replace(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def append(path, line):
    path.write_text(path.read_text() + line)


def folder_instead(path):
    path.unlink()
    path.mkdir()


def symlink_loop(path):
    path.unlink()
    path.symlink_to(path.name)  # items.tsv -> items.tsv


def blank_line_after_header(path, then=""):
    header, rest = path.read_text().split("\n", 1)
    path.write_text(header + "\n\n" + rest + then)


CASES = {
    "missing file": (lambda d: (d / "items.tsv").unlink(),
                     ["items.tsv", "does not exist"]),
    "missing column": (lambda d: replace(d / "items.tsv", "\tprice\n", "\tcost\n"),
                       ["items.tsv", "no column 'price'"]),
    "wrong dtype": (lambda d: replace(d / "items.tsv", "\t25\n", "\tcheap\n"),
                    ["items.tsv, line 3, column 'price'", "'cheap' is not a valid float32"]),
    "nan": (lambda d: replace(d / "users.tsv", "\t30\n", "\tnan\n"),
            ["users.tsv, line 3, column 'age'", "not a finite number"]),
    "inf": (lambda d: replace(d / "ratings.tsv", "u3\ti5\t4", "u3\ti5\tinf"),
            ["ratings.tsv, line 12, column 'rating'", "not a finite number"]),
    "unknown node id": (lambda d: append(d / "ratings.tsv", "u9\ti1\t3\t1\n"),
                        ["ratings.tsv, line 16, column 'user_id'", "'u9' is not a node of "
                         "node set 'user'"]),
    "duplicated node id": (lambda d: append(d / "users.tsv", "u2\t31\n"),
                           ["users.tsv, line 6", "duplicated id 'u2'", "first on line 3"]),
    "empty table": (lambda d: (d / "ratings.tsv").write_text("user_id\titem_id\trating\t"
                                                             "timestamp\n"),
                    ["ratings.tsv", "no data rows"]),
    "empty file": (lambda d: (d / "users.tsv").write_text(""), ["users.tsv", "empty"]),
    "ragged row": (lambda d: append(d / "users.tsv", "u5\n"),
                   ["users.tsv, line 6", "1 fields, but the header has 2"]),
    "bad int": (lambda d: replace(d / "ratings.tsv", "\t300\n", "\t3e2x\n"),
                ["ratings.tsv, line 4, column 'timestamp'", "not a valid int64"]),
    "folder instead of a table": (lambda d: folder_instead(d / "items.tsv"),
                                  ["items.tsv is a folder, not a table"]),
    "symlink loop": (lambda d: symlink_loop(d / "items.tsv"),
                     ["items.tsv is a symbolic link that loops"]),
    "duplicated header column": (
        lambda d: (d / "items.tsv").write_text("item_id\ttitle\tprice\ttitle\ni1\tA\t1\tB\n"),
        ["items.tsv, line 1: column 'title' appears twice in the header (columns 2 and 4)"]),
    "duplicated typed header column": (  # the type suffix is dropped: both are item_id
        lambda d: replace(d / "items.tsv", "item_id\ttitle\tprice",
                          "item_id:token\ttitle\titem_id:float"),
        ["items.tsv, line 1: column 'item_id' appears twice in the header (columns 1 and 3)"]),
    # users.tsv: header (line 1), blank (2), u1 (3), u2 (4), u3 (5), u4 (6), u5 (7)
    "ragged row after a blank line": (lambda d: blank_line_after_header(d / "users.tsv", "u5\n"),
                                      ["users.tsv, line 7: 1 fields, but the header has 2"]),
    "duplicated id after a blank line": (
        lambda d: blank_line_after_header(d / "users.tsv", "u2\t31\n"),
        ["users.tsv, line 7: duplicated id 'u2'", "first on line 4"]),
    "bad value after a blank line": (
        lambda d: blank_line_after_header(d / "users.tsv", "u5\told\n"),
        ["users.tsv, line 7, column 'age'", "'old' is not a valid float32"]),
    "byte-order mark and a wrong column": (
        lambda d: (d / "users.tsv").write_bytes("\ufeffuid\tage\nu1\t20\n".encode()),
        ["users.tsv: no column 'user_id'", "the header has uid, age"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_table(tiny, tmp_path, capsys, case):
    corrupt, words = CASES[case]
    corrupt(tiny)
    out = tmp_path / "out"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfrec: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_table_with_a_byte_order_mark_and_long_fields_builds(tiny, tmp_path, capsys):
    """A BOM (as Excel writes) is not part of the first column's name, and a field longer than
    csv's default limit of 131,072 characters is read whole."""
    users = tiny / "users.tsv"
    users.write_bytes(b"\xef\xbb\xbf" + users.read_bytes())
    long_title = "wool " * 40_000  # 200,000 characters
    replace(tiny / "items.tsv", "Red Wool Sweater", long_title)
    from tfrec.data.graph_data import load_graph_data

    data = load_graph_data(tiny / "schema.pbtxt")
    assert list(data.node_ids["user"]) == ["u1", "u2", "u3", "u4"]
    assert data.node_features["item"]["title"][0] == long_title


def test_field_over_the_limit_names_its_line(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tables, "MAX_FIELD_CHARS", 1000)
    replace(tiny / "items.tsv", "Ceramic Vase", "x" * 1001)  # line 5
    out = tmp_path / "out"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"tfrec: error: data file {tiny / 'items.tsv'}, line 5: a field is longer "
                   "than 1,000 characters\n")
    assert not out.exists()


def _refuse_to_open(monkeypatch, name):
    """Path.open raises PermissionError for files called `name`, as for a chmod 000 file read by
    a user other than root (the tests may run as root, who can read anything)."""
    real_open = pathlib.Path.open

    def fake_open(self, *args, **kwargs):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", fake_open)


def test_unreadable_table(tiny, tmp_path, capsys, monkeypatch):
    _refuse_to_open(monkeypatch, "ratings.tsv")
    out = tmp_path / "out"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"tfrec: error: data file {tiny / 'ratings.tsv'} cannot be read (permission "
                   "denied): check its permissions\n")
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_table_as_a_user(tiny, tmp_path, capsys):
    (tiny / "ratings.tsv").chmod(0)
    out = tmp_path / "out"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out)]) == 2
    assert "ratings.tsv cannot be read (permission denied)" in capsys.readouterr().err


SPLIT_CASES = {
    "unknown user": ("u1\ti1\n", "u7\ti1\n", ["train.tsv, line 2", "user_id 'u7' is not a user"]),
    "unknown item": ("u1\ti1\n", "u1\ti77\n", ["train.tsv, line 2", "item_id 'i77' is not an item"]),
    "not an interaction": ("u1\ti1\n", "u3\ti1\n", ["('u3', 'i1') is not an interaction"]),
}


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_bad_split_files(tiny, tmp_path, capsys, case):
    old, new, words = SPLIT_CASES[case]
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.tsv").write_text("user_id\titem_id\n" + old + "u1\ti2\n")
    (splits / "valid.tsv").write_text("user_id\titem_id\nu1\ti3\n")
    (splits / "test.tsv").write_text("user_id\titem_id\nu1\ti4\n")
    out = tmp_path / "out"
    args = ["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out)]
    assert main(args + ["--split-dir", str(splits)]) == 0  # the good files build
    capsys.readouterr()
    (splits / "train.tsv").write_text("user_id\titem_id\n" + new + "u1\ti2\n")
    before = sorted(p.name for p in (out / "splits").iterdir())
    assert main(args + ["--split-dir", str(splits)]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    # the earlier good output is untouched
    assert sorted(p.name for p in (out / "splits").iterdir()) == before
    assert (out / "splits" / "train.tsv").read_text() == "user_id\titem_id\nu1\ti1\nu1\ti2\n"


def test_pair_in_two_split_files(tiny, tmp_path, capsys):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train", "valid", "test"):
        (splits / f"{name}.tsv").write_text("user_id\titem_id\nu1\ti1\n")
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out",
                 str(tmp_path / "o"), "--split-dir", str(splits)]) == 2
    assert "('u1', 'i1') is also in train.tsv" in capsys.readouterr().err


def test_bad_ratios(tiny, capsys):
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--ratios",
                 "0.8,0.3,0.1"]) == 2
    assert "must be three non-negative numbers summing to 1" in capsys.readouterr().err


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "missing.pbtxt", "schema file {p} does not exist"),
    (lambda d: d, "schema file {p} is a folder, not a file"),
    (lambda d: _loop(d / "loop.pbtxt"), "schema file {p} cannot be read (Too many levels of "
     "symbolic links)"),
])
def test_bad_schema_path(tiny, tmp_path, capsys, make, message):
    path = make(tiny)
    assert main(["data", "build", "--schema", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"tfrec: error: {message.format(p=path)}\n"
    assert not (tmp_path / "out").exists()


def _loop(path):
    path.symlink_to(path.name)
    return path
