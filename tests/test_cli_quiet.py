"""TensorFlow's start-up noise (absl/C++ logs, the cuInit error of a host without a GPU) stays
out of the CLI's output unless TFREC_DEBUG=1."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
NOISE = re.compile(r"cuInit|^[EWI]0000 |oneDNN|absl::InitializeLog|cuda_platform|cpu_feature_guard",
                   re.MULTILINE)


def _data_build(tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFREC_DEBUG")}  # as a user's shell has them
    clean.update(PYTHONPATH=str(ROOT), **env)
    out = tmp_path / f"out{len(env)}"
    return subprocess.run([sys.executable, "-m", "tfrec.cli", "data", "build", "--schema",
                           str(ROOT / "tests" / "data" / "tiny" / "schema.pbtxt"), "--out",
                           str(out)], capture_output=True, text=True, env=clean, timeout=300)


def test_tf_commands_print_no_startup_noise_unless_debugging(tmp_path):
    quiet = _data_build(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "wrote " in quiet.stdout
    assert not NOISE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr == ""
    debug = _data_build(tmp_path, TFREC_DEBUG="1")
    assert debug.returncode == 0, debug.stderr
    # On a host without a GPU, the pinned TensorFlow (built with CUDA) logs a failed cuInit at
    # start-up: with TFREC_DEBUG=1 it is shown, with absl's other start-up lines.
    if not _has_gpu():
        assert "cuInit" in debug.stderr and "I0000" in debug.stderr, debug.stderr


def _has_gpu() -> bool:
    return Path("/dev/nvidia0").exists()
