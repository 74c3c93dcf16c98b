"""`tfrec serve --native`: the C++ front end of serving/native (built by `make native`).

It answers PredictionService/Predict and GetModelMetadata and ModelService/GetModelStatus with
the same answers, status codes and messages as `tfrec serve` (tests/test_native_serving.py
compares them), through TensorFlow's C API of the pip wheel. Versions as `tfrec serve`
(models.h): the newest --num-versions under the model base, polled every --poll-seconds (and
at once on SIGHUP); a new version is loaded beside the served ones and swapped in (requests in
flight finish on the old one), a version that fails to load is logged on one line and the
current ones keep serving, a version whose folder disappears is unloaded, a folder replaced
under a served number is loaded again; model_spec.version picks a served version (NOT_FOUND
otherwise), version labels are refused as `tfrec serve` refuses them. TF Text's op libraries
are loaded (item_text tokenises in-graph) after libtensorflow_framework.so.2 is made global,
as Python's import makes it. Each TF Text library bundles and exports its own protobuf and
absl: with TF's framework library private (RTLD_LOCAL) their calls bound to their own copies,
e.g. the trimmer kernel's Map<string, AttrValue>::at, whose absl hash seed (the address of a
static) is not TF's, so it looked for attr "N" in the wrong bucket of the NodeDef TF had
built and aborted the process ("key not found: N") whenever the two seeds picked different
buckets (most runs). Metrics (as monitoring.py's, from /tfrec.native.Monitoring/Metrics) and
--access-log (on stderr) are its own; with --rest-port it runs as the child of a Python REST
gateway (gateway, native_backend), which tags its calls so that they count under api="rest".
It does not (yet) do: server-side batching, warm-up replay or --workers. It has no contract_checks of its own: an unknown id, k out of
range or an empty history row is refused by the graph (same code and words); so a request
that is both oversized and bad gets RESOURCE_EXHAUSTED here where tfrec serve says
INVALID_ARGUMENT. A load error in GetModelStatus is TensorFlow's C++ loader's words, not
Python's.
"""

import importlib.util
import json
import os
import struct
import subprocess
from pathlib import Path

from tfrec.errors import TfrecError

ENV_BINARY = "TFREC_NATIVE_SERVE"  # overrides the built binary's path


def binary() -> Path:
    """The built tfrec-native-serve (build/native/ of this checkout, or $TFREC_NATIVE_SERVE)."""
    return Path(os.environ.get(ENV_BINARY) or
                Path(__file__).resolve().parents[2] / "build" / "native" / "tfrec-native-serve")


def load_binary() -> Path:
    """The built load generator tfrec-native-load, beside tfrec-native-serve (bench only)."""
    return binary().with_name("tfrec-native-load")


def write_requests(path: Path, requests: list[bytes], codes: list[int] | None = None) -> Path:
    """Writes serialised requests as tfrec-native-load reads them: each after its length (4
    bytes, little-endian); bad ones (`codes`) also after the status code each must get."""
    heads = [struct.pack("<I", code) for code in codes] if codes else [b""] * len(requests)
    Path(path).write_bytes(b"".join(
        head + struct.pack("<I", len(r)) + r for head, r in zip(heads, requests)))
    return Path(path)


def run_load(target: str, requests_file: Path, clients: int = 8, seconds: float = 10.0,
             channels: str = "own", invalid: float = 0.0, invalid_file: Path | None = None,
             calls: int = 0) -> dict:
    """Runs tfrec-native-load against HOST:PORT `target` (a fraction `invalid` of the calls from
    `invalid_file`; `calls` per client instead of `seconds` if given): its JSON (calls answered
    in the timed window, `invalid` ones among them, those `refused` with their code, failures,
    qps, p50_ms / p95_ms / p99_ms of the OK good ones, cpu_seconds, first_failure)."""
    command = [str(load_binary()), "--target", target, "--requests", str(requests_file),
               "--clients", str(clients), "--seconds", str(seconds), "--channels", channels,
               "--calls", str(calls)]
    if invalid:
        command += ["--invalid", repr(invalid), "--invalid-requests", str(invalid_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode:
        raise TfrecError(f"tfrec-native-load failed (exit {done.returncode}): {done.stderr}")
    return json.loads(done.stdout)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def tf_library() -> Path:
    """The pip wheel's libtensorflow_cc.so.2 (the C API), found without importing TF."""
    package = _package_dir("tensorflow")
    if package is None or not (package / "libtensorflow_cc.so.2").is_file():
        raise TfrecError("tensorflow's libtensorflow_cc.so.2 is not installed")
    return package / "libtensorflow_cc.so.2"


def op_libraries() -> list[Path]:
    """TF Text's op libraries (item_text signatures tokenise in-graph), if installed."""
    package = _package_dir("tensorflow_text")
    return sorted((package / "python" / "ops").glob("_*.so")) if package else []


def command(model_base: Path | str, model_name: str | None = None, host: str = "127.0.0.1",
            port: int = 8500, max_batch: int = 1024, max_message_mb: int = 16,
            poll_seconds: float = 1.0, num_versions: int = 1,
            access_log: bool = False) -> list[str]:
    """The command line that starts tfrec-native-serve (TfrecError if it is not built)."""
    path = binary()
    if not path.is_file():
        raise TfrecError(f"{path} is not built: run `make native` (needs g++ and Debian's "
                         "libgrpc++-dev), or serve without --native")
    line = [str(path), "--model-base", str(model_base), "--tf-lib", str(tf_library()),
            "--host", host, "--port", str(port), "--max-batch", str(max_batch),
            "--max-message-mb", str(max_message_mb), "--poll-seconds", str(poll_seconds),
            "--num-versions", str(num_versions)]
    if model_name:
        line += ["--model-name", model_name]
    for library in op_libraries():
        line += ["--op-library", str(library)]
    if access_log:
        line.append("--access-log")
    return line


def serve_command(config) -> list[str]:
    """`command` for the ServeConfig of `tfrec serve --native`."""
    return command(config.model_base, config.model_name, config.host, config.port,
                   config.max_batch, config.max_message_mb, config.poll_seconds,
                   config.num_versions, config.access_log)
