"""`tfrec serve --native --rest-port`: tfrec-native-serve in a child process, TF Serving's REST
API (rest.RestApp over native_backend.NativeBackend) in this one. No TensorFlow is loaded here.

Stages of `run`:
  1. start tfrec-native-serve (its stderr is ours: its errors and access log) and read the line
     saying where it listens; if it exits first (a bad model base, a busy port), return its exit
     code: its one-sentence error is printed already,
  2. open a gRPC channel to it and serve REST on --rest-port (a busy port: one sentence),
  3. print where both listen (serve_config.listening_line),
  4. until SIGTERM / SIGINT: then stop REST, SIGTERM the child, return 0. SIGHUP is passed on
     (look for versions now). If the child exits by itself, say so in one line and return its
     exit code.
"""

import ctypes
import dataclasses
import re
import signal
import subprocess
import sys
import threading

from tfrec.errors import TfrecError
from tfrec.serving import native
from tfrec.serving.native_backend import NativeBackend
from tfrec.serving.rest import RestApp, RestServer
from tfrec.serving.serve_config import ServeConfig, bracket, listening_line

LISTENING = re.compile(r"tfrec-native-serve: model '(?P<name>.*)' version (?P<version>[0-9]+)"
                       r"[0-9, ]* on (?P<host>.*):(?P<port>[0-9]+) \(pid")
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}


def run(config: ServeConfig) -> int:
    """Serves until SIGTERM / SIGINT (0) or the child's exit (its code); see the stages above."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    child = _start_child(config)
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP,
                                            lambda *_: child.send_signal(signal.SIGHUP))
    rest = backend = None
    try:
        found = LISTENING.match(child.stdout.readline())
        if found is None:
            return _exit_code(child.wait())  # its own one-line error is on stderr
        copier = threading.Thread(target=_copy, args=(child.stdout,), daemon=True)
        copier.start()
        threading.Thread(target=lambda: (child.wait(), stop.set()), daemon=True).start()
        host = _ANY_ADDRESS.get(config.host, config.host)
        limit = config.max_message_mb * 1024 * 1024
        backend = NativeBackend(f"{bracket(host)}:{found['port']}", found["name"], limit)
        try:
            rest = RestServer(RestApp(backend, limit), config.host, config.rest_port,
                              config.threads, limit)
        except OSError as e:
            raise TfrecError(f"cannot listen on {bracket(config.host)}:{config.rest_port} for "
                             f"REST: {e.strerror or e}.") from None
        rest_port = rest.start()
        shown = dataclasses.replace(config, model_name=found["name"])
        print(listening_line(shown, found["version"], int(found["port"]), rest_port),
              flush=True)
        stop.wait()
        rest.stop()  # no new REST calls, then the child finishes its own
        rest = None
        code = _stop(child)
        copier.join(timeout=5)  # its last lines (CPU per call) before ours
        if code:
            how = f"exited with code {code}" if code > 0 else f"was killed by signal {-code}"
            print(f"tfrec serve: tfrec-native-serve (pid {child.pid}) {how}; the REST server "
                  "stops too.", file=sys.stderr, flush=True)
            return _exit_code(code)
        print("tfrec serve: stopped", flush=True)
        return 0
    finally:
        if rest is not None:
            rest.stop()
        _stop(child)
        if backend is not None:
            backend.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(child: subprocess.Popen) -> int:
    """SIGTERM to the child if it runs (calls in flight finish, 5 s at most); its exit code."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def _start_child(config: ServeConfig) -> subprocess.Popen:
    """tfrec-native-serve with `config`'s flags, its stdout piped to read where it listens."""
    # Its own session (Ctrl-C reaches this process only, which stops it), and SIGTERM when this
    # process dies, so that it never outlives the REST server.
    return subprocess.Popen(native.serve_command(config), stdout=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _copy(stream) -> None:
    for text in stream:
        print(text, end="", flush=True)


def _exit_code(returncode: int) -> int:
    """A child's exit code as this process's: killed by signal N -> 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode
