"""The peers' own virtual environment: RecBole 1.2.1 on a CPU torch, created on first use.

RecBole pulls torch, so it never enters tfrec's environment: the bench creates a separate venv
(default `~/.cache/tfrec/peers-venv`, or `$TFREC_PEERS_VENV`) and runs every peer model in a
subprocess of its Python. torch is installed first and alone, pinned to 2.13.0 with plain pip
(the CPU build on this disk; a looser pin would download a CUDA build of several GB), then
RecBole and the pins its imports need (numpy<2 and pandas<2.2: RecBole 1.2.1 uses np.float_
and DataFrame APIs removed later; setuptools<81 for pkg_resources).
"""

import os
import subprocess
import sys
from pathlib import Path

TORCH = "torch==2.13.0"
PINS = [
    "recbole==1.2.1", "numpy<2", "pandas<2.2", "scipy==1.11.4", "setuptools>=77,<81",
    "colorlog", "colorama", "tensorboard", "texttable", "psutil", "thop", "tabulate", "plotly",
    "ray", "hyperopt",
]
# RecBole's checkpoints hold numpy objects: torch >= 2.6 refuses them unless told otherwise.
ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
_STAMP = ".peers-installed"


def default_path() -> Path:
    return Path(os.environ.get("TFREC_PEERS_VENV",
                               Path.home() / ".cache" / "tfrec" / "peers-venv"))


def ensure_venv(path: Path | None = None, python: str = "python3.11") -> Path:
    """Returns the venv's python, creating and installing the venv if it is not complete."""
    path = Path(path or default_path())
    exe = path / "bin" / "python"
    stamp = path / _STAMP
    wanted = "\n".join([TORCH, *PINS])
    if stamp.exists() and stamp.read_text() == wanted:
        return exe
    print(f"creating the peers venv {path} (torch + RecBole, a few minutes)", file=sys.stderr)
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    pip = [str(exe), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, *PINS], check=True)
    stamp.write_text(wanted)
    return exe


if __name__ == "__main__":
    print(ensure_venv())
