"""`tfrec serve --workers N`: N server processes sharing the gRPC (and REST) port.

One Python process serves at most one core's worth of Python (the GIL), and grpcio's server, the
request handlers and the batching run in Python; N processes bound to one port with SO_REUSEPORT
(the kernel spreads the incoming connections over them) each run a whole server: its own loaded
model, batching, and poll of the model base (each swaps versions on its own, within a poll
period of the others). This process stays light (no TensorFlow) and:
  1. holds the ports (a bound, not listening, SO_REUSEPORT socket each, so that port 0 becomes
     one number for every worker) and a fresh folder for the workers' Prometheus files;
  2. spawns the workers and waits until each answers (the first that fails to start stops them
     all: its one-sentence reason is the command's error);
  3. replaces a worker that exits while serving (logged with its exit code), at most
     MAX_RESTARTS times a minute: beyond that it stops the others and exits 1 saying so;
  4. on SIGTERM / SIGINT passes SIGTERM to the workers (each finishes its calls in flight within
     --grace-seconds), waits for them, removes the metrics folder, returns 0.
"""

import ctypes
import dataclasses
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.connection import wait

from tfrec.errors import TfrecError
from tfrec.serving.serve_config import ServeConfig, bracket, listening_line, shared_socket

log = logging.getLogger("tfrec.serving")

MAX_RESTARTS = 5  # per minute; more means the workers keep dying: stop
START_SECONDS = 600.0  # a worker that neither answers nor fails in this time is stuck
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # as tfrec.serving.monitoring reads it
PR_SET_PDEATHSIG = 1  # prctl(2)


class Supervisor:
    """The worker processes of one `tfrec serve`; `start()`, then `wait()` until `stop()`."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self._context = mp.get_context("spawn")  # never fork a process with threads
        self._workers: dict[int, mp.Process] = {}  # index -> process
        self._restarts: list[float] = []
        self._stopping = threading.Event()
        self._sockets = []
        self._metrics_dir: str | None = None
        self.port: int | None = None
        self.rest_port: int | None = None
        self.version: int | None = None

    def start(self) -> None:
        config = self.config
        self.port = self._hold(config.port, "")
        if config.rest_port is not None:
            self.rest_port = self._hold(config.rest_port, " for REST")
        self._metrics_dir = tempfile.mkdtemp(prefix="tfrec-serve-metrics-")
        os.environ[MULTIPROCESS_DIR] = self._metrics_dir  # inherited by the workers
        pending = {index: self._spawn(index) for index in range(config.workers)}
        for index, (process, conn) in pending.items():
            self._await_ready(index, process, conn)

    def wait(self) -> int:
        """Keeps the workers running until stop(); 0, or 1 if they kept dying."""
        while not self._stopping.is_set():
            sentinels = {p.sentinel: index for index, p in self._workers.items()}
            for sentinel in wait(list(sentinels), timeout=0.5):
                if self._stopping.is_set():
                    break
                index = sentinels[sentinel]
                process = self._workers[index]
                process.join()
                _forget(process.pid)
                log.error("worker %d (pid %d) exited with code %s while serving; starting "
                          "another", index, process.pid, process.exitcode)
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < 60] + [now]
                if len(self._restarts) > MAX_RESTARTS:
                    print(f"tfrec serve: workers exited {len(self._restarts)} times within a "
                          "minute; stopping (see the log above for why)", file=sys.stderr)
                    return 1
                try:
                    self._await_ready(index, *self._spawn(index))
                except TfrecError as e:
                    print(f"tfrec serve: worker {index} could not be restarted: {e}",
                          file=sys.stderr)
                    return 1
        return 0

    def request_stop(self) -> None:
        """Makes wait() return (safe in a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """SIGTERM to every worker, then waits for them (grace + 30 s, then SIGKILL)."""
        self._stopping.set()
        for process in self._workers.values():
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + self.config.grace_seconds + 30
        for process in self._workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %d did not stop in time: killing it", process.pid)
                process.kill()
                process.join()
        self._workers.clear()
        for sock in self._sockets:
            sock.close()
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            os.environ.pop(MULTIPROCESS_DIR, None)
            self._metrics_dir = None

    def _hold(self, port: int, what: str) -> int:
        """Binds HOST:PORT for the workers to share; its number (port 0: a free one)."""
        address = f"{bracket(self.config.host)}:{port}"
        try:
            probe = shared_socket(self.config.host, port, reuse_port=False)  # busy: an error
            port = probe.getsockname()[1]
            probe.close()
            sock = shared_socket(self.config.host, port)
        except OSError as e:
            raise TfrecError(f"cannot listen on {address}{what}: {e.strerror or e}.") from None
        self._sockets.append(sock)
        return port

    def _spawn(self, index: int):
        config = dataclasses.replace(self.config, port=self.port, rest_port=self.rest_port)
        parent, child = self._context.Pipe(duplex=False)
        process = self._context.Process(target=run_worker,
                                        args=(config, index, child, os.getpid()),
                                        name=f"tfrec-serve-{index}", daemon=False)
        process.start()
        child.close()
        self._workers[index] = process
        return process, parent

    def _await_ready(self, index: int, process: mp.Process, conn) -> None:
        """Returns once worker `index` answers; TfrecError (its reason) if it cannot start."""
        with conn:
            try:
                if not conn.poll(START_SECONDS):
                    raise EOFError
                kind, value = conn.recv()
            except EOFError:  # died (killed, out of memory) or stuck before answering
                process.kill()
                process.join()
                kind, value = "error", (f"worker {index} stopped before answering (exit code "
                                        f"{process.exitcode})")
        if kind == "error":
            raise TfrecError(value)
        self.version = value
        log.info("worker %d (pid %d) serves version %d", index, process.pid, value)


def supervise(config: ServeConfig) -> int:
    """`tfrec serve --workers N`: runs the workers until SIGTERM or SIGINT; 0 after a clean
    shutdown, 1 if the workers kept dying."""
    supervisor = Supervisor(config)
    previous = {sig: signal.signal(sig, lambda *_: supervisor.request_stop())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.start()
        print(listening_line(config, supervisor.version, supervisor.port, supervisor.rest_port,
                             f", {config.workers} workers"), flush=True)
        code = supervisor.wait()
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("tfrec serve: stopped", flush=True)
    return code


def run_worker(config: ServeConfig, index: int, conn, parent: int) -> None:
    """One worker process: a whole server on the shared ports; tells `conn` ("ready", version)
    or ("error", reason) and, once ready, serves until SIGTERM (sent by the supervisor, pid
    `parent`, or by the kernel if the supervisor dies without stopping it)."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [worker {index} pid %(process)d] "
                        "%(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the supervisor stops us (SIGTERM)
    _stop_with_parent(parent)
    try:
        from tfrec.serving.server import serve

        serve(config, ready=lambda server: conn.send(("ready", server.store.latest.version)),
              reuse_port=True)
    except TfrecError as e:
        conn.send(("error", str(e)))
        raise SystemExit(2) from None


def _stop_with_parent(parent: int) -> None:
    """Asks Linux for SIGTERM when the supervisor dies (killed with SIGKILL, it cannot stop its
    workers), so that no worker keeps the port without it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux / glibc: the supervisor's stop() only
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _forget(pid: int) -> None:
    """Drops a dead worker's live gauges from the metrics (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
