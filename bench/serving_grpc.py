"""Load test of `tfrec serve` over gRPC or REST, against the in-process floor of the same run.

Stages:
  1. the model base: `--model-base BASE`, or `--synthetic` (random artifacts sized like
     MovieLens-100K: 943 users, 1682 items, D=64, ~85k seen pairs, exported to a temp folder);
  2. the user ids to ask for: read from the SavedModel's user table (or `--users FILE`);
  3. start `tfrec serve` (with --rest-port, for `--api rest` and its metrics; `--workers N`
     server processes) on free ports; note its RSS (start; with several workers, the sum over
     the supervisor and its workers, as for its CPU);
  4. run the clients in separate processes (spawned, so they do not share the server's GIL), each
     with its share of N threads; every thread sends top-k `serving_default` requests for random
     users, back to back, for T seconds (a gRPC client builds each distinct request once, so
     its CPU goes to the calls). With `--invalid F` a fraction F of the requests are
     bad ones (unknown user, k = 0, a number as user id, an unknown signature, and 1,024 rows x
     k = all items, whose answer is above the message limit) that must be refused (over gRPC:
     with their code, EXPECTED_CODES);
     `--swap-seconds S` copies a new version in every S s and removes the oldest (the server
     polls every second). `--load-generator native` sends the same kind of requests (one per
     user, serialised here, each client going round them) from tfrec-native-load instead (the
     C++ load generator of serving/native, `make native`: N threads, one connection each
     unless `--load-channels shared`; with `--invalid`, one bad request per user as well, of
     each kind in turn), so the clients' CPU leaves more of the 2 cores to the server; over
     gRPC only. The server's RSS
     is sampled every second: after `--warmup-seconds` (warm), at each minute and at the end;
     the merged TF calls are read from its metrics;
  5. stop the server (SIGTERM, expect exit 0) (with `--workers 1,2,...`, stages 3-5 again for
     each value, one server after the other); run N threads calling the SavedModel's
     `serving_default` in this process for T seconds (the floor: no RPC, no protos, no JSON);
  6. one caller in this process, 300 calls per signature (one row): p50/p99 per signature;
  6a. with `--native`, stages 3-5 against tfrec-native-serve (the C++ front end of
     serving/native, `make native`; `tfrec serve --native`) after the Python server's (with
     `--api rest`: `tfrec serve --native --rest-port`, the REST gateway in front of it);
  6b. with `--library-floor`, the same clients against grpcio's server answering stored bytes
     (no model, no parsing): the ceiling the gRPC library itself sets on this machine;
  7. print QPS, p50/p95/p99, failed valid requests, accepted bad ones, server CPU per request,
     requests per merged TF call, RSS start / warm / each minute / end, the ratios to the
     floor, whether issue 15's targets are met, and `uptime` load before and after.

`--soak` is `--invalid 0.1 --swap-seconds 60 --seconds 600 --warmup-seconds 60` unless given.

Examples:
  .venv/bin/python bench/serving_grpc.py --synthetic --clients 8 --seconds 20
  .venv/bin/python bench/serving_grpc.py --synthetic --seconds 15 --workers 1,2,1,2
  .venv/bin/python bench/serving_grpc.py --synthetic --seconds 15 --library-floor
  .venv/bin/python bench/serving_grpc.py --synthetic --seconds 15 --native
  .venv/bin/python bench/serving_grpc.py --synthetic --seconds 15 --native --library-floor \
      --load-generator native
  .venv/bin/python bench/serving_grpc.py --synthetic --api rest --seconds 20
  .venv/bin/python bench/serving_grpc.py --synthetic --soak
"""

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BAD_KINDS = ("unknown user", "k = 0", "number as user id", "unknown signature",
             "answer above the limit")
EXPECTED_CODES = dict.fromkeys(BAD_KINDS, "INVALID_ARGUMENT") | {
    "answer above the limit": "RESOURCE_EXHAUSTED"}  # gRPC status of each kind of bad request


def main() -> int:
    args = parse_args()
    import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
    from tfrec.tf_setup import import_tf

    tf = import_tf()
    try:
        import tensorflow_text  # noqa: F401  (registers the text ops of item_text signatures)
    except ImportError:
        pass
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="tfrec-bench-") as tmp:
        base = args.model_base
        if args.synthetic:
            from tfrec.export.versions import export_model
            from tfrec.export.synthetic import random_artifacts

            base = Path(tmp) / "movielens_synthetic"
            started = time.perf_counter()
            export_model(random_artifacts(943, 1682, 64, seen_per_user=90, seed=0), base)
            print(f"exported synthetic MovieLens-100K-sized model to {base} in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        name = args.model_name or Path(base).resolve().name
        version = max(int(p.name) for p in Path(base).iterdir() if p.name.isdigit())
        loaded = tf.saved_model.load(str(Path(base) / str(version)))
        users = read_users(args.users, loaded, tf)
        num_items = int(tf.size(loaded.item_ids)) if hasattr(loaded, "item_ids") else 1000
        clients = (f"{args.clients} clients of tfrec-native-load ({args.load_channels} "
                   "channels)" if args.load_generator == "native" else
                   f"{args.clients} clients in {args.client_processes} process(es)")
        print(f"model '{name}' version {version}, {len(users)} users, k={args.k}, "
              f"{clients} over {args.api}, {args.seconds:g} s, {args.invalid:.0%} bad requests, "
              f"swap every {args.swap_seconds or 'never'} s, load {load_before}", flush=True)

        label = "gRPC" if args.api == "grpc" else "REST"
        phases = [(f"{label}, {w} worker{'s' if w > 1 else ''}", serve_phase(
            Path(base), name, users, num_items, args, w)) for w in args.workers]
        for extra in args.native or []:
            phases.append((f"native {extra}".strip(), serve_phase(
                Path(base), name, users, num_items, args, 1, native=extra)))
        library = (library_floor(loaded, name, users, num_items, args, tf)
                   if args.library_floor else None)
        floor = run_in_process(loaded, users, args, tf)
        per_signature = signature_latencies(loaded, users, tf)

    load_after = load_average()
    print(f"{'':16}{'QPS':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'requests':>10}"
          f"{'failed':>8}")
    rows = [(row, remote) for row, (remote, _) in phases]
    extra = [("gRPC, no model", library)] if library else []
    for row, stats in rows + extra + [("in-process", floor)]:
        print(f"{row:16}{stats['qps']:8.0f}{stats['p50_ms']:9.2f}{stats['p95_ms']:9.2f}"
              f"{stats['p99_ms']:9.2f}{stats['requests']:10d}{stats['errors']:8d}")
    print("in-process, one caller, 300 calls: " + "; ".join(
        f"{name} p50 {p50:.2f} ms p99 {p99:.2f} ms" for name, (p50, p99) in per_signature.items()))
    failed, results = False, []
    for (row, remote), (_, (_, server_exit)) in zip(rows, phases):
        print(f"--- {row}")
        ratios = report(label, remote, floor, args)
        print(f"server exit code after SIGTERM: {server_exit}")
        failed = failed or remote["errors"] or remote["bad_accepted"] or server_exit
        results.append({"workers": row, "remote": remote, "ratios": ratios})
    if library:
        print(f"--- gRPC, no model (grpcio's server answering stored bytes; the most any "
              f"handler can reach): QPS x{library['qps'] / max(floor['qps'], 1e-9):.2f} and "
              f"p99 x{library['p99_ms'] / max(floor['p99_ms'], 1e-9):.2f} of in-process; CPU per "
              f"request: server {library['server_cpu_ms_per_request']:.2f} ms, clients "
              f"{library['client_cpu_ms_per_request']:.2f} ms; issue 15 targets: p99 <= 5 ms "
              f"{_met(library['p99_ms'] <= 5)}, >= 1,500 QPS {_met(library['qps'] >= 1500)}")
    print(f"load before {load_before}, after {load_after}")
    if args.json:
        print(json.dumps({"phases": results, "in_process": floor, "library_floor": library,
                          "per_signature_ms": per_signature,
                          "load": [load_before, load_after], "config": vars(args) | {
                              "model_base": str(args.model_base), "users": len(users)}},
                         default=str))
    return 1 if failed else 0


def serve_phase(base: Path, name: str, users: list[bytes], num_items: int, args,
                workers: int, native: str | None = None) -> tuple[dict, int]:
    """Starts `tfrec serve --workers W` (or tfrec-native-serve), runs the clients against it,
    stops it; (the clients' figures with the server's CPU, RSS and batching, its exit code).
    `native`: the native server's extra flags ("" for none), None for `tfrec serve`."""
    if native is not None and args.api == "rest":  # the REST gateway and its native child
        server, address, rest = start_server(base, args, 1, ["--native"])
    elif native is not None:
        server, address, rest = start_native(base, args.model_name, native)
    else:
        server, address, rest = start_server(base, args, workers)
    pids = process_tree(server.pid)  # the supervisor and its workers, or the one server
    rss = RssSampler(pids, args.warmup_seconds)
    stop_swaps, swapped = threading.Event(), []
    swapper = threading.Thread(target=swap_versions, args=(
        base, args.swap_seconds, stop_swaps, swapped), daemon=True)
    try:
        server_cpu, server_threads = cpu_seconds(pids), thread_cpu_seconds(pids)
        rss.start()
        if args.swap_seconds:
            swapper.start()
        remote = run_clients(address, name, users, num_items, args)
        stop_swaps.set()
        if args.swap_seconds:
            swapper.join()
            remote["swaps"] = len(swapped)
            remote["served_at_end"] = served_after_swaps(address, name, args.api, swapped)
        requests = max(remote["requests"] + remote["bad_requests"], 1)
        remote["server_cpu_ms_per_request"] = (
            (cpu_seconds(pids) - server_cpu) * 1e3 / requests)
        remote["server_cpu_ms_by_thread"] = {
            kind: (seconds - server_threads.get(kind, 0.0)) * 1e3 / requests
            for kind, seconds in thread_cpu_seconds(pids).items()}
        remote["client_cpu_ms_per_request"] = remote.pop("client_cpu") * 1e3 / requests
        remote.update(rss.stop())
        remote["tf_calls"], remote["requests_per_tf_call"] = (
            batch_sizes(rest) if rest else (0, 0.0))
    finally:
        stop_swaps.set()
        server.send_signal(signal.SIGTERM)
        server_exit = server.wait(timeout=60)
    if native is not None:
        time.sleep(0.5)  # the drain thread reads the last line
        remote["native_stats"] = "".join(getattr(server, "lines", [])).strip()
    return remote, server_exit


def library_floor(loaded, name: str, users: list[bytes], num_items: int, args, tf) -> dict:
    """The clients against grpcio's own server answering one stored serialized PredictResponse
    (a real top-k answer, no parsing, no model): (the clients' figures with its CPU)."""
    from tensorflow_serving.apis import predict_pb2

    from tfrec.serving.tensors import fill

    outputs = loaded.signatures["serving_default"](user_id=tf.constant(users[:1]),
                                                    k=tf.constant(args.k, tf.int32))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = name
    response.model_spec.version.value = 1
    response.model_spec.signature_name = "serving_default"
    for key, tensor in outputs.items():
        fill(response.outputs[key], tensor.numpy())
    ctx = mp.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=stored_answer_server, args=(
        response.SerializeToString(), args.server_threads, ports, stop))
    server.start()
    address = f"127.0.0.1:{ports.get(timeout=120)}"
    pids = [server.pid]
    server_cpu = cpu_seconds(pids)
    remote = run_clients(address, name, users, num_items, args)
    requests = max(remote["requests"] + remote["bad_requests"], 1)
    remote["server_cpu_ms_per_request"] = (cpu_seconds(pids) - server_cpu) * 1e3 / requests
    remote["client_cpu_ms_per_request"] = remote.pop("client_cpu") * 1e3 / requests
    stop.set()
    server.join(timeout=60)
    return remote


def stored_answer_server(answer: bytes, threads: int, ports, stop) -> None:
    """grpcio's sync server (as tfrec serve's) answering every Predict with `answer`."""
    from concurrent import futures

    import grpc

    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: answer)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": handler}),))
    ports.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(1).wait()


def report(label: str, remote: dict, floor: dict, args) -> dict:
    """Prints one phase's ratios to the floor, CPU, batching, RSS and the targets; the ratios."""
    ratios = {"qps": remote["qps"] / max(floor["qps"], 1e-9),
              "p50": remote["p50_ms"] / max(floor["p50_ms"], 1e-9),
              "p99": remote["p99_ms"] / max(floor["p99_ms"], 1e-9)}
    print(f"{label} / in-process: QPS x{ratios['qps']:.2f}, p50 x{ratios['p50']:.2f}, "
          f"p99 x{ratios['p99']:.2f}")
    if args.invalid:
        print(f"bad requests: {remote['bad_requests']} sent, {remote['bad_accepted']} wrongly "
              f"answered (OK, or over gRPC another code); failed valid requests: "
              f"{remote['errors']}")
    batching = (f"{remote['tf_calls']} TF calls, {remote['requests_per_tf_call']:.2f} requests "
                "per call" if remote["tf_calls"] else "off")
    print(f"CPU per request: server {remote['server_cpu_ms_per_request']:.2f} ms, clients "
          f"{remote['client_cpu_ms_per_request']:.2f} ms (2 cores shared); server-side "
          f"batching: {batching}")
    print("server CPU per request by thread: " + ", ".join(
        f"{kind} {ms:.2f} ms" for kind, ms in sorted(
            remote["server_cpu_ms_by_thread"].items(), key=lambda item: -item[1])))
    if remote.get("native_stats"):
        print(remote["native_stats"])
    print(f"server RSS MiB: start {remote['rss_start_mib']:.0f}, after warm-up "
          f"{remote['rss_warm_mib']:.0f}, end {remote['rss_end_mib']:.0f}, max "
          f"{remote['rss_max_mib']:.0f} (growth after warm-up "
          f"{remote['rss_growth_after_warmup']:+.1%})")
    if "swaps" in remote:
        print(f"versions swapped in: {remote['swaps']}; AVAILABLE at the end: "
              f"{remote['served_at_end']}")
    if remote["rss_by_minute_mib"]:
        print("server RSS MiB at each minute: " + " ".join(
            f"{mib:.0f}" for mib in remote["rss_by_minute_mib"]))
    print(f"issue 15 targets: p99 <= 5 ms {_met(remote['p99_ms'] <= 5)} "
          f"({remote['p99_ms']:.2f}); >= 1,500 QPS {_met(remote['qps'] >= 1500)} "
          f"({remote['qps']:.0f}); RSS growth after warm-up < 5% "
          f"{_met(remote['rss_growth_after_warmup'] < 0.05)} "
          f"({remote['rss_growth_after_warmup']:+.1%})")
    if remote["errors"]:
        print(f"first failure: {remote['first_error']}")
    return ratios


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-base", type=Path, help="folder of numbered SavedModel versions")
    source.add_argument("--synthetic", action="store_true",
                        help="export random MovieLens-100K-sized artifacts and serve those")
    parser.add_argument("--model-name", help="default: the folder name of the model base")
    parser.add_argument("--users", type=Path, help="file of user ids, one per line (default: "
                        "read from the SavedModel)")
    parser.add_argument("--api", choices=("grpc", "rest"), default="grpc")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, help="per phase (default 20; soak 600)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the client threads are spread over (default 1)")
    parser.add_argument("--workers", type=lambda text: [int(w) for w in text.split(",")],
                        default=[1], help="server processes (tfrec serve --workers; default "
                        "1); a list such as 1,2,1,2 runs one server after the other, each "
                        "against the same in-process floor")
    parser.add_argument("--server-threads", type=int, default=16,
                        help="request threads per server process (tfrec serve --threads)")
    parser.add_argument("--server-args", default="",
                        help="more `tfrec serve` flags, e.g. '--batch-threads 0'")
    parser.add_argument("--invalid", type=float, help="fraction of bad requests (soak 0.1)")
    parser.add_argument("--swap-seconds", type=float,
                        help="copy in a new version every S s (soak 60; default never)")
    parser.add_argument("--warmup-seconds", type=float,
                        help="RSS 'after warm-up' is taken this long after the start "
                        "(default: a tenth of --seconds; soak 60)")
    parser.add_argument("--soak", action="store_true",
                        help="10 minutes, 10%% bad requests, a version swap every minute")
    parser.add_argument("--library-floor", action="store_true",
                        help="also run the clients against a gRPC server without a model (it "
                        "answers stored bytes of a real answer): what grpcio alone allows here")
    parser.add_argument("--native", action="append", nargs="?", const="", metavar="FLAGS",
                        help="also run the clients against tfrec-native-serve (the C++ front "
                        "end, `make native`) after the Python server, in the same run; "
                        "FLAGS are more of its flags (e.g. '--inter-op-threads -1'); repeat "
                        "to compare variants")
    parser.add_argument("--load-generator", choices=("python", "native"), default="python",
                        help="the clients: Python grpcio threads (default) or tfrec-native-load "
                        "(C++, `make native`), against every server of the run")
    parser.add_argument("--load-channels", choices=("own", "shared"), default="own",
                        help="tfrec-native-load's clients: one channel (connection) each "
                        "(default) or one shared channel")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    soak = dict(seconds=600.0, invalid=0.1, swap_seconds=60.0, warmup_seconds=60.0)
    plain = dict(seconds=20.0, invalid=0.0, swap_seconds=0.0, warmup_seconds=None)
    for key, value in (soak if args.soak else plain).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.swap_seconds and len(args.workers) > 1:
        parser.error("--swap-seconds (and --soak) take one --workers value")
    if args.warmup_seconds is None:
        args.warmup_seconds = args.seconds / 10
    if args.api == "rest" and any(args.native or []):
        parser.error("--api rest runs `tfrec serve --native --rest-port`: no native FLAGS")
    if args.load_generator == "native" and args.api != "grpc":
        parser.error("--load-generator native sends gRPC requests only (no --api rest)")
    return args


def read_users(path, loaded, tf) -> list[bytes]:
    """User ids from --users, else exported from the SavedModel's id -> row table."""
    if path is not None:
        return [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
    table = getattr(loaded, "user_table", None)
    if table is None:
        sys.exit("the SavedModel has no user_table to read user ids from; give --users FILE")
    keys, _ = tf.raw_ops.LookupTableExportV2(
        table_handle=table.resource_handle, Tkeys=tf.string, Tvalues=tf.int64)
    return sorted(keys.numpy().tolist())


def start_server(base: Path, args, workers: int,
                 flags: tuple = ()) -> tuple[subprocess.Popen, str, str]:
    """`tfrec serve [flags]` on free ports in its own process (with REST, for its metrics);
    returns it, the HOST:PORT to ask and the HOST:PORT of REST."""
    command = [sys.executable, "-m", "tfrec.cli", "serve", *flags, "--model-base", str(base),
               "--port", "0", "--rest-port", "0",
               "--poll-seconds", "1" if args.swap_seconds else "0",
               "--workers", str(workers), "--threads", str(args.server_threads),
               *args.server_args.split()]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    line = process.stdout.readline()  # "... on HOST:PORT, REST on port P (pid N)"
    if " on " not in line:
        process.kill()
        sys.exit(f"tfrec serve did not start (exit {process.wait()})")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # drain
    address = line.split(" on ")[1].split()[0].rstrip(",")
    rest = f"{address.rsplit(':', 1)[0]}:{line.split('REST on port ')[1].split()[0]}"
    return process, (rest if args.api == "rest" else address), rest


def start_native(base: Path, model_name: str | None,
                 extra: str) -> tuple[subprocess.Popen, str, None]:
    """tfrec-native-serve on a free port (`tfrec serve --native`'s command line, plus the
    flags `extra`); returns it, the HOST:PORT to ask and None (it has no REST)."""
    from tfrec.serving import native

    command = native.command(base, model_name, port=0) + extra.split()
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # "tfrec-native-serve: model ... on HOST:PORT (pid N)"
    if " on " not in line:
        process.kill()
        sys.exit(f"tfrec-native-serve did not start (exit {process.wait()})")
    process.lines = []  # its CPU figures at exit (see serve_phase)
    threading.Thread(target=lambda: process.lines.extend(process.stdout), daemon=True).start()
    return process, line.split(" on ")[1].split()[0], None


def batch_sizes(rest: str) -> tuple[int, float]:
    """(TF calls, mean requests per call) of server-side batching, from the server's metrics."""
    import requests

    text = requests.get(f"http://{rest}/monitoring/prometheus/metrics", timeout=30).text
    total = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for part in total:
            if line.startswith(f"tfrec_batch_size_{part}{{"):
                total[part] += float(line.rsplit(" ", 1)[1])
    return int(total["count"]), total["sum"] / max(total["count"], 1)


def swap_versions(base: Path, every: float, stop: threading.Event, swapped: list) -> None:
    """Every `every` s: copy the newest version in as the next number (appended to `swapped`),
    drop all but the newest two (the newest is read from `base` each time: an earlier phase may
    have swapped)."""
    while not stop.wait(every):
        versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
        newest = versions[-1]
        staging = base / f".bench-{newest + 1}"
        shutil.copytree(base / str(newest), staging)
        os.rename(staging, base / str(newest + 1))
        swapped.append(newest + 1)
        for old in versions[:-1]:
            shutil.rmtree(base / str(old), ignore_errors=True)


def served_after_swaps(address: str, name: str, api: str, swapped: list[int]) -> list[int]:
    """The versions the server reports AVAILABLE once it has had 5 s (its poll is 1 s) to
    load the last one swapped in."""
    import requests
    from tensorflow_serving.apis import get_model_status_pb2

    from tfrec.serving.client import ServingClient

    deadline = time.monotonic() + 5
    while True:
        if api == "rest":
            status = requests.get(f"http://{address}/v1/models/{name}", timeout=10).json()
            served = [int(s["version"]) for s in status["model_version_status"]
                      if s["state"] == "AVAILABLE"]
        else:
            with ServingClient(address) as client:
                served = [s.version for s in client.status(name)
                          if s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE]
        if not swapped or swapped[-1] in served or time.monotonic() > deadline:
            return sorted(served)
        time.sleep(0.2)


class RssSampler:
    """The server's RSS (summed over its processes) every second: start, after `warmup` s, end,
    max (MiB)."""

    def __init__(self, pids: list[int], warmup: float):
        self.pids, self.warmup = pids, warmup
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self.samples.append((0.0, rss_mib(self.pids)))
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.perf_counter() - self._t0, rss_mib(self.pids)))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._t0, rss_mib(self.pids)))
        warm = next((mib for t, mib in self.samples if t >= self.warmup), self.samples[-1][1])
        end = self.samples[-1][1]
        return {"rss_start_mib": self.samples[0][1], "rss_warm_mib": warm, "rss_end_mib": end,
                "rss_max_mib": max(mib for _, mib in self.samples),
                "rss_growth_after_warmup": end / warm - 1,
                "rss_by_minute_mib": [next(mib for t, mib in self.samples if t >= minute * 60)
                                      for minute in range(1, int(self.samples[-1][0] // 60) + 1)]}


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc: the children of each of its threads)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        found.append(parent)
        for task in Path(f"/proc/{parent}/task").iterdir():
            todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def rss_mib(pids: list[int]) -> float:
    """Resident MiB summed over `pids` (pages the workers share are counted once each)."""
    total = 0.0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:  # a worker that died (the supervisor replaces it)
            continue
        total += sum(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:"))
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of running processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


THREAD_KINDS = {"python": "Python threads (gRPC polling, handlers)", "tf_Compute": "TF pool",
                "event_engine": "gRPC event engine",
                # tfrec-native-serve's: gRPC's callback threads run its handlers (and TF's ops
                # with --inter-op-threads -1)
                "nexting_thread": "gRPC callback threads", "default-executo": "gRPC executor"}


def thread_cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds of running processes' threads by kind (their names in /proc: Python's
    threads are all 'python', TF's pool 'tf_Compute', gRPC's own 'event_engine')."""
    found: dict[str, float] = {}
    tasks = [task for pid in pids if Path(f"/proc/{pid}").exists()
             for task in Path(f"/proc/{pid}/task").iterdir()]
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        kind = THREAD_KINDS.get(name, "other")
        found[kind] = found.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf(
            "SC_CLK_TCK")
    return found


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# === Clients (in spawned processes) ===


def run_clients(address: str, model: str, users: list[bytes], num_items: int, args) -> dict:
    if args.load_generator == "native":
        return run_native_clients(address, model, users, num_items, args)
    ctx = mp.get_context("spawn")
    processes = max(1, min(args.client_processes, args.clients))
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    shares = [args.clients // processes + (i < args.clients % processes)
              for i in range(processes)]
    options = dict(api=args.api, k=args.k, seconds=args.seconds, invalid=args.invalid,
                   num_items=num_items)
    workers = [ctx.Process(target=client_process, args=(
        address, model, users, threads, options, barrier, results, seed))
        for seed, threads in enumerate(shares)]
    for w in workers:
        w.start()
    barrier.wait(timeout=180)  # every client connected and warmed up
    total = {"lat": [], "err": 0, "first": "", "bad": 0, "accepted": 0}
    elapsed = cpu = 0.0
    for _ in workers:
        out, seconds, cpu_used = results.get(timeout=args.seconds + 180)
        for key in ("lat",):
            total[key].extend(out[key])
        for key in ("err", "bad", "accepted"):
            total[key] += out[key]
        total["first"] = total["first"] or out["first"]
        elapsed, cpu = max(elapsed, seconds), cpu + cpu_used
    for w in workers:
        w.join()
    return dict(summarize(total["lat"], total["err"], elapsed, total["first"]),
                bad_requests=total["bad"], bad_accepted=total["accepted"], client_cpu=cpu)


def run_native_clients(address: str, model: str, users: list[bytes], num_items: int,
                       args) -> dict:
    """tfrec-native-load's N clients against `address`, on one request per user (k = --k)
    and, with --invalid, one bad request per user (the kinds in turn): the figures of
    run_clients."""
    import grpc

    from tfrec.serving import native

    kinds = [BAD_KINDS[i % len(BAD_KINDS)] for i in range(len(users))]
    with tempfile.TemporaryDirectory(prefix="tfrec-load-") as tmp:
        path = native.write_requests(Path(tmp) / "requests.bin", [
            predict_request(model, user, args.k, None, 0).SerializeToString() for user in users])
        bad = native.write_requests(Path(tmp) / "bad.bin", [
            predict_request(model, user, args.k, kind, num_items).SerializeToString()
            for user, kind in zip(users, kinds)],
            [grpc.StatusCode[EXPECTED_CODES[kind]].value[0] for kind in kinds])
        out = native.run_load(address, path, args.clients, args.seconds, args.load_channels,
                              args.invalid, bad)
    bad_accepted = out["invalid"] - out["refused"]  # answered OK or with another code
    errors = out["failures"] - bad_accepted
    return {"requests": out["requests"] - out["invalid"] - errors, "errors": errors,
            "seconds": out["seconds"], "qps": out["qps"], "p50_ms": out["p50_ms"],
            "p95_ms": out["p95_ms"], "p99_ms": out["p99_ms"],
            "first_error": out["first_failure"], "bad_requests": out["invalid"],
            "bad_accepted": bad_accepted, "client_cpu": out["cpu_seconds"]}


def client_process(address, model, users, threads, options, barrier, results, seed):
    """`threads` blocking clients (one connection each); puts (counts, seconds, CPU seconds of
    this process while timed)."""
    caller = GrpcCaller if options["api"] == "grpc" else RestCaller
    callers = [caller(address, model, options["num_items"]) for _ in range(threads)]
    for c in callers:
        c.call(users[0], options["k"], None)  # connect + warm up
    out, lock = {"lat": [], "err": 0, "first": "", "bad": 0, "accepted": 0}, threading.Lock()
    barrier.wait(timeout=180)
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + options["seconds"]

    def loop(c, rng):
        mine = {"lat": [], "err": 0, "first": "", "bad": 0, "accepted": 0}
        while True:
            user = users[rng.integers(len(users))]
            bad = BAD_KINDS[rng.integers(len(BAD_KINDS))] if rng.random() < options[
                "invalid"] else None
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            error = c.call(user, options["k"], bad)
            if bad is not None:
                mine["bad"] += 1
                mine["accepted"] += not c.refused(bad, error)
            elif error is None:
                mine["lat"].append(time.perf_counter() - t0)
            else:
                mine["err"] += 1
                mine["first"] = mine["first"] or error
        with lock:
            for key in ("lat",):
                out[key].extend(mine[key])
            for key in ("err", "bad", "accepted"):
                out[key] += mine[key]
            out["first"] = out["first"] or mine["first"]

    pool = [threading.Thread(target=loop, args=(c, np.random.default_rng([seed, i])))
            for i, c in enumerate(callers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((out, time.perf_counter() - start, time.process_time() - cpu_start))


class GrpcCaller:
    """One channel; `call` returns None on success, else the error."""

    def __init__(self, address: str, model: str, num_items: int):
        import grpc

        from tfrec.serving.tensors import to_proto  # noqa: F401 (imports TF the tfrec way first)
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self._grpc = grpc
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(address))
        self._model, self._num_items = model, num_items
        self._requests = {}  # built once each: the clients' CPU is not what is measured

    def call(self, user: bytes, k: int, bad: str | None) -> str | None:
        req = self._requests.get((user, k, bad))
        if req is None:
            req = self._requests[user, k, bad] = predict_request(
                self._model, user, k, bad, self._num_items)
        try:
            self._stub.Predict(req, timeout=30)
            return None
        except self._grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"

    @staticmethod
    def refused(bad: str, error: str | None) -> bool:
        """Whether the bad request `bad` got its code."""
        return error is not None and error.startswith(EXPECTED_CODES[bad] + ":")


def predict_request(model: str, user: bytes, k: int, bad: str | None, num_items: int):
    """The PredictRequest of a top-k request for `user` (or of the bad request `bad`)."""
    from tfrec.serving.tensors import to_proto  # imports TF the tfrec way first
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    users, k = bad_inputs(user, k, bad, num_items)
    if bad == "unknown signature":
        req.model_spec.signature_name = "nope"
    req.inputs["user_id"].CopyFrom(to_proto(users))
    req.inputs["k"].CopyFrom(to_proto(np.array(k, np.int32)))
    return req


class RestCaller:
    """One keep-alive HTTP session; columnar JSON."""

    def __init__(self, address: str, model: str, num_items: int):
        import requests

        self._session = requests.Session()
        self._url = f"http://{address}/v1/models/{model}:predict"
        self._num_items = num_items

    def call(self, user: bytes, k: int, bad: str | None) -> str | None:
        users, k = bad_inputs(user, k, bad, self._num_items)
        ids = users.tolist() if users.dtype.kind in "iu" else [u.decode() for u in users]
        body = {"inputs": {"user_id": ids, "k": int(k)}}
        if bad == "unknown signature":
            body["signature_name"] = "nope"
        answer = self._session.post(self._url, json=body, timeout=30)
        return None if answer.status_code == 200 else f"HTTP {answer.status_code}: {answer.text}"

    @staticmethod
    def refused(bad: str, error: str | None) -> bool:
        """Whether the bad request `bad` was refused (any HTTP error)."""
        return error is not None


def bad_inputs(user: bytes, k: int, bad: str | None, num_items: int):
    """(user ids, k) of a good request, or of the bad request `bad`."""
    if bad == "unknown user":
        return np.array([b"no-such-user"], dtype=object), k
    if bad == "k = 0":
        return np.array([user], dtype=object), 0
    if bad == "number as user id":
        return np.array([7]), k
    if bad == "answer above the limit":  # 1,024 rows x every item: tens of MB
        return np.array([user] * 1024, dtype=object), num_items
    return np.array([user], dtype=object), k


# === In-process floor ===


def run_in_process(loaded, users: list[bytes], args, tf) -> dict:
    fn = loaded.signatures["serving_default"]
    k = tf.constant(args.k, tf.int32)
    fn(user_id=tf.constant([users[0]]), k=k)  # warm up
    out, lock = {"lat": []}, threading.Lock()
    seconds = min(args.seconds, 20.0)
    deadline = time.perf_counter() + seconds

    def loop(seed):
        rng, lat = np.random.default_rng(seed), []
        while True:
            user = np.array([users[rng.integers(len(users))]], dtype=object)
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            fn(user_id=user, k=k)["item_ids"].numpy()
            lat.append(time.perf_counter() - t0)
        with lock:
            out["lat"].extend(lat)

    start = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(args.clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return summarize(out["lat"], 0, time.perf_counter() - start, "")


def signature_latencies(loaded, users: list[bytes], tf, calls: int = 300) -> dict:
    """{signature: (p50 ms, p99 ms)} of one caller on one row (k=10, a 20-item history, 100
    candidates), after checking each answer's shape."""
    items = [s.decode() for s in loaded.item_ids.numpy()[:100]] if hasattr(
        loaded, "item_ids") else []
    k = tf.constant(10)
    cases = {
        "serving_default": (dict(user_id=tf.constant(users[:1]), k=k), (1, 10)),
        "similar_items": (dict(item_id=tf.constant(items[:1]), k=k), (1, 10)),
        "history": (dict(history=tf.constant([items[:20]]), k=k), (1, 10)),
        "score": (dict(user_id=tf.constant(users[:1]), item_ids=tf.constant([items])),
                  (1, len(items))),
    }
    found = {}
    for name, (inputs, shape) in cases.items():
        if name not in loaded.signatures or (name != "serving_default" and not items):
            continue
        fn = loaded.signatures[name]
        out = fn(**inputs)
        first = out["scores"] if "scores" in out else next(iter(out.values()))
        if tuple(first.shape) != shape:
            sys.exit(f"signature {name} answered shape {tuple(first.shape)}, expected {shape}")
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn(**inputs)
            times.append((time.perf_counter() - t0) * 1e3)
        p50, p99 = np.percentile(times, [50, 99])
        found[name] = (float(p50), float(p99))
    return found


def summarize(latencies: list[float], errors: int, seconds: float, first_error: str) -> dict:
    ms = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"requests": len(latencies), "errors": errors, "seconds": round(seconds, 2),
            "qps": len(latencies) / seconds if seconds else 0.0, "p50_ms": float(p50),
            "p95_ms": float(p95), "p99_ms": float(p99), "first_error": first_error}


if __name__ == "__main__":
    sys.exit(main())
