"""Reading the tables a schema names into validated numpy columns.

Tables are UTF-8 tab-separated files with a header row. A header cell may carry a type suffix
as in RecBole's atomic files (`user_id:token`); the suffix is ignored. Row numbers in messages
are file line numbers (the header is line 1).
"""

import csv
import importlib.resources
import os
from pathlib import Path

import numpy as np

from tfrec.errors import TfrecError
from tfrec.schema.loader import FeatureSpec, Schema


def resolve(filename: str, schema: Schema):
    """The file a schema's metadata.filename names (a Path or an importlib Traversable).

    "recbole:REL" is recbole/dataset_example/REL in the installed recbole package; "tfrec:NAME/REL"
    is the generated default dataset NAME; anything else is relative to the schema's folder.
    """
    if filename.startswith("recbole:"):
        try:
            root = importlib.resources.files("recbole")
        except ModuleNotFoundError:
            raise TfrecError(f"{filename} needs the recbole package: pip install --no-deps "
                             "recbole==1.2.1 (make install does)") from None
        return root / "dataset_example" / filename.removeprefix("recbole:")
    if filename.startswith("tfrec:"):
        name, _, rel = filename.removeprefix("tfrec:").partition("/")
        if name != "ecommerce":
            raise TfrecError(f"{schema.path}: unknown built-in dataset {name!r} in {filename!r}")
        from tfrec.data.ecommerce import default_dir

        return default_dir() / rel
    return schema.path.parent / os.path.expanduser(filename)


class Table:
    """A table's columns, read as strings: `columns[name]` is a list, `name` the file's name."""

    def __init__(self, name: str, header: list[str], rows: list[list[str]]):
        self.name = name
        self.columns = {h: [r[i] for r in rows] for i, h in enumerate(header)}
        self.num_rows = len(rows)

    def column(self, name: str, what: str) -> list[str]:
        if name not in self.columns:
            raise TfrecError(f"{self.name}: no column {name!r} ({what}); the header has "
                             f"{', '.join(self.columns)}")
        return self.columns[name]

    def feature(self, spec: FeatureSpec) -> np.ndarray:
        """The column of `spec` converted to its dtype: [num_rows] array; numbers must be finite."""
        values = self.column(spec.column, f"feature {spec.name!r}")
        if spec.dtype == "str":
            return np.array(values, dtype=object)
        try:
            array = np.array(values, dtype=spec.dtype)
        except ValueError:
            convert = float if spec.dtype.startswith("float") else int
            for row, v in enumerate(values):
                try:
                    convert(v)
                except ValueError:
                    raise TfrecError(f"{self.name}, line {row + 2}, column {spec.column!r}: "
                                     f"{v!r} is not a valid {spec.dtype} value") from None
            raise
        if array.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(array))
            if bad.size:
                raise TfrecError(f"{self.name}, line {bad[0] + 2}, column {spec.column!r}: "
                                 f"{values[bad[0]]!r} is not a finite number")
        return array


def read_table(file, display_name: str) -> Table:
    """Reads a TSV table with a header; TfrecError if missing, ragged or without data rows."""
    try:
        with file.open("r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            rows = list(reader)
    except FileNotFoundError:
        raise TfrecError(f"data file {display_name} does not exist") from None
    except UnicodeDecodeError as e:
        raise TfrecError(f"data file {display_name} is not UTF-8 text ({e.reason})") from None
    if header is None:
        raise TfrecError(f"data file {display_name} is empty (no header row)")
    header = [h.split(":", 1)[0].strip() for h in header]
    rows = [r for r in rows if r != []]  # a trailing blank line is not a row
    if not rows:
        raise TfrecError(f"data file {display_name} has a header but no data rows")
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise TfrecError(f"data file {display_name}, line {i + 2}: {len(r)} fields, but the "
                             f"header has {len(header)}")
    return Table(display_name, header, rows)


def open_table(filename: str, schema: Schema) -> Table:
    file = resolve(filename, schema)
    return read_table(file, str(file))

