"""`tfrec serve`: a gRPC server speaking TF Serving's API for one model base folder.

Stages of `serve`:
  1. load the newest version of the model base (fail in one sentence if none loads),
  2. bind HOST:PORT and start the gRPC server (a thread pool handles concurrent requests),
     and, with --rest-port, the REST server (TF Serving's JSON API, metrics, health; see rest),
  3. poll the base folder for new versions in a background thread (hot swap, see model_store),
  4. on SIGTERM / SIGINT stop accepting calls, let calls in flight finish for the grace period,
     stop polling, return 0.
With --workers N, this whole server runs in each of N processes sharing the ports (supervisor).
"""

import logging
import os
import signal
import threading
from concurrent import futures
from typing import Callable

import grpc

from tfrec.errors import TfrecError
from tfrec.serving.serve_config import ServeConfig, bracket, listening_line, shared_socket
from tfrec.tf_setup import import_tf

import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import

from tensorflow_serving.apis import (  # noqa: E402
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tfrec.serving.batching import Batcher  # noqa: E402
from tfrec.serving.model_store import ModelStore  # noqa: E402
from tfrec.serving.monitoring import Monitor  # noqa: E402
from tfrec.serving.predict_service import (  # noqa: E402
    ModelServicer,
    PredictionServicer,
    warm_up,
)
from tfrec.serving.rest import RestApp, RestServer  # noqa: E402
from tfrec.serving.rest_store import StoreBackend  # noqa: E402

log = logging.getLogger("tfrec.serving")


class ModelServer:
    """The gRPC server and its ModelStore; `start()` returns the bound port. With `reuse_port`
    (a worker process of supervisor) its ports are shared with the other workers (SO_REUSEPORT:
    the kernel spreads the connections over them); else a busy port is an error."""

    def __init__(self, config: ServeConfig, reuse_port: bool = False):
        self.config, self.reuse_port = config, reuse_port
        self.store = ModelStore(
            config.model_base, config.name, config.poll_seconds,
            warmup=lambda servable: warm_up(servable, config.max_batch),
            num_versions=config.num_versions,
        )
        self.monitor = Monitor(self.store, config.access_log)
        self.batcher = (Batcher(config.max_batch, config.batch_threads,
                                self.monitor.record_batch) if config.batch_threads else None)
        self._server: grpc.Server | None = None
        self._rest: RestServer | None = None
        self.port: int | None = None
        self.rest_port: int | None = None

    def start(self) -> int:
        config = self.config
        self.store.load_initial()
        limit = config.max_message_mb * 1024 * 1024
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="rpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", int(self.reuse_port)),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.store, config.max_batch, limit, self.monitor, self.batcher),
            server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.store, self.monitor), server)
        address = f"{bracket(config.host)}:{config.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            raise TfrecError(f"cannot listen on {address}: the port is in use or the host is "
                             "not an address of this machine.")
        if config.rest_port is not None:
            app = RestApp(StoreBackend(self.store, self.monitor, config.max_batch, limit,
                                       self.batcher), limit)
            try:
                shared = shared_socket(config.host, config.rest_port) if self.reuse_port else None
                self._rest = RestServer(app, config.host, config.rest_port, config.threads, limit,
                                        shared)
            except OSError as e:
                raise TfrecError(f"cannot listen on {bracket(config.host)}:{config.rest_port} "
                                 f"for REST: {e.strerror or e}.") from None
            self.rest_port = self._rest.start()
        server.start()
        self._server, self.port = server, port
        self.store.start_polling()
        log.info("serving model %s version(s) %s on %s:%d (gRPC, TF Serving API)%s",
                 config.name, self.store.versions, config.host, port,
                 f", REST on port {self.rest_port}" if self._rest else "")
        return port

    def stop(self, grace: float | None = None) -> None:
        """Stops accepting calls, waits up to `grace` s for calls in flight, stops polling."""
        if self._server is not None:
            self._server.stop(self.config.grace_seconds if grace is None else grace).wait()
            self._server = None
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        self.store.stop()

    def __enter__(self) -> "ModelServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(config: ServeConfig, ready: Callable[[ModelServer], None] | None = None,
          reuse_port: bool = False) -> int:
    """Runs one server until SIGTERM or SIGINT; returns 0 after a clean shutdown. `ready(server)`
    is called once it answers (default: print where it listens)."""
    stop = threading.Event()
    server = ModelServer(config, reuse_port)
    # Handlers first: a signal that arrives while loading stops the server once it is up.
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)
                if signal.getsignal(sig) is not signal.SIG_IGN}  # an ignored one stays ignored
    try:
        server.start()
        (ready or _announce)(server)
        while not stop.wait(3600):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server.port is not None:
            log.info("shutting down (grace %.0f s)", config.grace_seconds)
        server.stop()
    if ready is None:
        print("tfrec serve: stopped", flush=True)
    return 0


def _announce(server: ModelServer) -> None:
    print(listening_line(server.config, server.store.latest.version, server.port,
                         server.rest_port), flush=True)
