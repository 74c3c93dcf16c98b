"""A model base's integer-named version folders, and the check made before serving it (without
TensorFlow: `tfrec serve --native` makes it before starting the C++ server)."""

from pathlib import Path

from tfrec.errors import TfrecError


def ready_versions(base: Path) -> dict[int, Path]:
    """{version: folder} of the integer-named subfolders of `base` that hold a saved_model.pb."""
    found = {}
    try:
        children = list(base.iterdir())
    except FileNotFoundError:
        return found
    for child in children:
        name = child.name
        if name.isascii() and name.isdigit() and (child / "saved_model.pb").is_file():
            found[int(name)] = child
    return found


def servable_versions(base: Path) -> dict[int, Path]:
    """ready_versions of `base`, or TfrecError saying why nothing can be served from it."""
    if not base.is_dir():
        raise TfrecError(f"model base {base} is not a folder.")
    versions = ready_versions(base)
    if not versions:
        raise TfrecError(f"model base {base} has no version folder (an integer name holding a "
                         "saved_model.pb), e.g. written by `tfrec export`.")
    return versions
