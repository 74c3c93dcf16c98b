"""Load test of `tfrec serve`: N concurrent gRPC clients for T seconds, and the in-process floor.

Stages:
  1. the model base: `--model-base BASE`, or `--synthetic` (random artifacts sized like
     MovieLens-100K: 943 users, 1682 items, D=64, ~85k seen pairs, exported to a temp folder);
  2. the user ids to ask for: read from the SavedModel's user table (or `--users FILE`);
  3. start `tfrec serve` as its own process on a free loopback port;
  4. run the clients in separate processes (spawned, so they do not share the server's GIL), each
     with its share of N threads; every thread sends top-k `serving_default` requests for random
     users, back to back, for T seconds; gather latencies and errors;
  5. stop the server (SIGTERM, expect exit 0); run N threads calling the SavedModel's
     `serving_default` in this process for T seconds (the floor: no gRPC, no protos);
  6. print QPS, p50/p95/p99 latency and errors for both (and JSON with --json).

Example: .venv/bin/python bench/serving_grpc.py --synthetic --clients 8 --seconds 20
"""

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def main() -> int:
    args = parse_args()
    import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
    from tfrec.tf_setup import import_tf

    tf = import_tf()
    try:
        import tensorflow_text  # noqa: F401  (registers the text ops of item_text signatures)
    except ImportError:
        pass
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
        print(f"model '{name}' version {version}, {len(users)} users, k={args.k}, "
              f"{args.clients} clients in {args.client_processes} process(es), "
              f"{args.seconds:g} s", flush=True)

        server, address = start_server(base, args.server_workers)
        try:
            server_cpu = cpu_seconds(server.pid)
            grpc_stats = run_grpc_clients(address, name, users, args)
            requests = max(grpc_stats["requests"], 1)  # server CPU includes the clients' warm-up
            grpc_stats["server_cpu_ms_per_request"] = (
                (cpu_seconds(server.pid) - server_cpu) * 1e3 / requests)
            grpc_stats["client_cpu_ms_per_request"] = grpc_stats.pop("client_cpu") * 1e3 / requests
        finally:
            server.send_signal(signal.SIGTERM)
            server_exit = server.wait(timeout=60)
        floor_stats = run_in_process(loaded, users, args, tf)

    results = {
        "grpc": dict(grpc_stats, server_exit_code=server_exit),
        "in_process": floor_stats,
        "config": {"clients": args.clients, "seconds": args.seconds, "k": args.k,
                   "client_processes": args.client_processes, "model": name,
                   "version": version, "users": len(users)},
    }
    print(f"{'':12}{'QPS':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}")
    for label, stats in (("gRPC", grpc_stats), ("in-process", floor_stats)):
        print(f"{label:12}{stats['qps']:8.0f}{stats['p50_ms']:9.2f}{stats['p95_ms']:9.2f}"
              f"{stats['p99_ms']:9.2f}{stats['requests']:10d}{stats['errors']:8d}")
    print(f"CPU per gRPC request: server {grpc_stats['server_cpu_ms_per_request']:.2f} ms, "
          f"clients {grpc_stats['client_cpu_ms_per_request']:.2f} ms (2 cores shared)")
    print(f"server exit code after SIGTERM: {server_exit}")
    if grpc_stats["errors"]:
        print(f"first error: {grpc_stats['first_error']}")
    if args.json:
        print(json.dumps(results))
    return 0 if grpc_stats["errors"] == 0 and server_exit == 0 else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-base", type=Path, help="folder of numbered SavedModel versions")
    source.add_argument("--synthetic", action="store_true",
                        help="export random MovieLens-100K-sized artifacts and serve those")
    parser.add_argument("--model-name", help="default: the folder name of the model base")
    parser.add_argument("--users", type=Path, help="file of user ids, one per line (default: "
                        "read from the SavedModel)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (default 20)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the client threads are spread over (default 1)")
    parser.add_argument("--server-workers", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    return parser.parse_args()


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


def start_server(base: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """`tfrec serve --port 0` in its own process; returns it and its HOST:PORT once ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrec.cli", "serve", "--model-base", str(base), "--port", "0",
         "--poll-seconds", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = process.stdout.readline()
    if " on " not in line:
        process.kill()
        sys.exit(f"tfrec serve did not start (exit {process.wait()})")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # drain
    return process, line.split(" on ")[1].split()[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# === gRPC clients (in spawned processes) ===


def run_grpc_clients(address: str, model: str, users: list[bytes], args) -> dict:
    ctx = mp.get_context("spawn")
    processes = max(1, min(args.client_processes, args.clients))
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    shares = [args.clients // processes + (i < args.clients % processes)
              for i in range(processes)]
    workers = [
        ctx.Process(target=client_process, args=(
            address, model, users, args.k, threads, args.seconds, barrier, results, seed))
        for seed, threads in enumerate(shares)
    ]
    for w in workers:
        w.start()
    barrier.wait(timeout=120)  # every client connected and warmed up
    latencies, errors, first_error, elapsed, cpu = [], 0, "", 0.0, 0.0
    for _ in workers:
        lat, err, first, seconds, cpu_seconds_used = results.get(timeout=args.seconds + 120)
        cpu += cpu_seconds_used
        latencies.extend(lat)
        errors += err
        first_error = first_error or first
        elapsed = max(elapsed, seconds)
    for w in workers:
        w.join()
    return dict(summarize(latencies, errors, elapsed, first_error), client_cpu=cpu)


def client_process(address, model, users, k, threads, seconds, barrier, results, seed):
    """`threads` blocking clients on one channel each; puts (latencies, errors, first error,
    seconds, CPU seconds of this process while timed)."""
    import grpc

    from tfrec.serving.tensors import to_proto  # imports TF the tfrec way first
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    k_proto = to_proto(np.array(k, np.int32))

    def request(user: bytes):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        req.inputs["user_id"].CopyFrom(to_proto(np.array([user], dtype=object)))
        req.inputs["k"].CopyFrom(k_proto)
        return req

    stubs = []
    for _ in range(threads):
        channel = grpc.insecure_channel(address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(request(users[0]), timeout=30)  # connect + warm up
        stubs.append(stub)
    out, lock = {"lat": [], "err": 0, "first": ""}, threading.Lock()
    barrier.wait(timeout=120)
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + seconds

    def loop(stub, rng):
        lat, err, first = [], 0, ""
        while True:
            req = request(users[rng.integers(len(users))])
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            try:
                stub.Predict(req, timeout=10)
                lat.append(time.perf_counter() - t0)
            except grpc.RpcError as e:
                err += 1
                first = first or f"{e.code().name}: {e.details()}"
        with lock:
            out["lat"].extend(lat)
            out["err"] += err
            out["first"] = out["first"] or first

    pool = [threading.Thread(target=loop, args=(stub, np.random.default_rng([seed, i])))
            for i, stub in enumerate(stubs)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((out["lat"], out["err"], out["first"], time.perf_counter() - start,
                 time.process_time() - cpu_start))


# === In-process floor ===


def run_in_process(loaded, users: list[bytes], args, tf) -> dict:
    fn = loaded.signatures["serving_default"]
    k = tf.constant(args.k, tf.int32)
    fn(user_id=tf.constant([users[0]]), k=k)  # warm up
    out, lock = {"lat": []}, threading.Lock()
    deadline = time.perf_counter() + args.seconds

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


def summarize(latencies: list[float], errors: int, seconds: float, first_error: str) -> dict:
    ms = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"requests": len(latencies), "errors": errors, "seconds": round(seconds, 2),
            "qps": len(latencies) / seconds if seconds else 0.0, "p50_ms": float(p50),
            "p95_ms": float(p95), "p99_ms": float(p99), "first_error": first_error}


if __name__ == "__main__":
    sys.exit(main())
