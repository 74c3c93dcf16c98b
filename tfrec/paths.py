"""Where tfrec keeps caches (generated default data, converted weights, text embeddings), and
reading the text files users hand it (schemas, configs) with one-sentence errors."""

import os
from pathlib import Path

from tfrec.errors import TfrecError


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text (a BOM dropped) of the file `path`, a `what` such as "config file";
    TfrecError in one sentence if it is missing, a folder, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TfrecError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TfrecError(f"{what} {path} is a folder, not a file") from None
    except OSError as e:
        raise TfrecError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise TfrecError(f"{what} {path}, line {line}: not UTF-8 text (byte "
                         f"0x{e.object[e.start]:02x}); save it as UTF-8") from None


def cache_dir(*parts: str) -> Path:
    """`$TFREC_CACHE` (default `~/.cache/tfrec`) joined with `parts`; created on demand."""
    root = Path(os.environ.get("TFREC_CACHE", Path.home() / ".cache" / "tfrec"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
