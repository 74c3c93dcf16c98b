"""`tfrec serve`'s options (ServeConfig) and addresses, kept free of TensorFlow so that the
supervisor of several worker processes (see supervisor) stays light."""

import dataclasses
import os
import socket
from pathlib import Path

from tfrec.config_fields import Validated, bounded
from tfrec.errors import TfrecError


@dataclasses.dataclass(frozen=True)
class ServeConfig(Validated):
    """What `tfrec serve` serves, where, and its limits; validated on construction (a bad value
    is a TfrecError naming its command-line option)."""

    model_base: Path
    model_name: str | None = None  # None: the folder name of model_base (as TF Serving)
    host: str = "127.0.0.1"
    port: int = bounded(8500, 0, 65535)  # 0: any free port
    rest_port: int | None = None  # None: no REST server; 0: any free port
    poll_seconds: float = bounded(1.0, 0.0)  # 0: never look for new versions
    num_versions: int = bounded(1, 1)  # serve the newest N versions (TF Serving's `latest`)
    max_batch: int = bounded(1024, 1)  # rows per request
    max_message_mb: int = bounded(16, 1, 2047)  # gRPC message size limit (int32 bytes)
    workers: int = bounded(1, 1, 64)  # server processes sharing the ports (see supervisor)
    threads: int = bounded(16, 1, 1024)  # threads handling requests, per worker
    grace_seconds: float = bounded(5.0, 0.0)  # for calls in flight at shutdown
    access_log: bool = False  # one log line per request
    batch_threads: int = bounded(1, 0, 1024)  # merged calls running at once per signature
    # (1 measured best on 2 cores, see bench/serving_grpc.py); 0: no batching

    @classmethod
    def key(cls, name: str) -> str:
        return "--" + name.replace("_", "-")

    def check(self):
        if self.model_name is not None and not self.model_name.strip():
            raise TfrecError("--model-name is empty; give a name or leave it out")
        if self.rest_port is not None and not 0 <= self.rest_port <= 65535:
            raise TfrecError(f"--rest-port must be between 0 and 65535, got {self.rest_port}")

    @property
    def name(self) -> str:
        return self.model_name or Path(self.model_base).resolve().name


def bracket(host: str) -> str:
    """`host` as it goes before ':port' (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def listening_line(config: ServeConfig, version: int, port: int, rest_port: int | None,
                   workers: str = "") -> str:
    """What `tfrec serve` prints once it answers (bench/serving_grpc.py reads the ports)."""
    rest = f", REST on port {rest_port}" if rest_port is not None else ""
    return (f"tfrec serve: model '{config.name}' version {version} on {config.host}:{port}"
            f"{rest} (pid {os.getpid()}{workers})")


def shared_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to HOST:PORT with SO_REUSEPORT (not listening yet): every worker's
    REST server binds one, and the supervisor holds one to keep the port numbers it chose
    (without `reuse_port`: whether the port is free)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
