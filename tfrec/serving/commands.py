"""CLI: `tfrec serve` (a TF-Serving-compatible gRPC server) and `tfrec query` (its client)."""

import argparse
import json
import logging
import unicodedata
from pathlib import Path

INT32_MAX = 2**31 - 1


def register(sub) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a model base folder with TF Serving's gRPC (and REST) API",
        description="Serve the newest numbered version of a model base folder (BASE/1, BASE/2, "
        "... each a SavedModel from `tfrec export`) with TF Serving's gRPC API: "
        "PredictionService Predict and GetModelMetadata, ModelService GetModelStatus; with "
        "--rest-port also its REST API, Prometheus metrics and /healthz. A newer version "
        "folder is picked up while running without failing requests in flight; a removed one "
        "is unloaded. SIGTERM or Ctrl-C stops it cleanly (exit 0).",
        epilog="Bad requests get INVALID_ARGUMENT (unknown signature or id, missing, extra or "
        "mistyped input, empty or oversized batch, k out of range), NOT_FOUND (unknown model "
        "or version) or RESOURCE_EXHAUSTED (request or answer above --max-message-mb); over "
        "REST, HTTP 400, 404 or 429 with {\"error\": ...}. Example: tfrec serve --model-base "
        "models/tfrec --num-versions 2 --rest-port 8501",
    )
    serve.add_argument("--model-base", required=True, type=Path, metavar="BASE",
                       help="folder holding integer-named SavedModel version folders")
    serve.add_argument("--model-name", metavar="NAME",
                       help="name clients ask for (default: the folder name of BASE)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: %(default)s; 0.0.0.0 for all interfaces)")
    serve.add_argument("--port", type=int, default=8500,
                       help="gRPC port (default: %(default)s, as TF Serving; 0 = any free port)")
    serve.add_argument("--rest-port", type=int, metavar="PORT",
                       help="also serve TF Serving's REST API (POST /v1/models/NAME:predict, "
                       "GET /v1/models/NAME[/metadata]), Prometheus metrics at "
                       "/monitoring/prometheus/metrics and /healthz on this port (TF Serving "
                       "uses 8501; default: no REST; 0 = any free port)")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per request (peer, API, method, model, signature, "
                       "status, milliseconds) to the 'tfrec.access' logger (with --native: "
                       "on stderr, written by tfrec-native-serve)")
    serve.add_argument("--poll-seconds", type=float, default=1.0, metavar="S",
                       help="look for a new version every S seconds (default: %(default)s; "
                       "0 = never)")
    serve.add_argument("--num-versions", type=int, default=1, metavar="N",
                       help="serve the newest N versions; a request without a version gets the "
                       "newest (default: %(default)s, as TF Serving's `latest` policy)")
    serve.add_argument("--max-batch", type=int, default=1024, metavar="N",
                       help="most rows per request (default: %(default)s)")
    serve.add_argument("--max-message-mb", type=int, default=16, metavar="MB",
                       help="gRPC message size limit (default: %(default)s)")
    serve.add_argument("--batch-threads", type=int, default=1, metavar="N",
                       help="merge concurrent requests of a signature into one TF call, with "
                       "up to N such calls at once (default: %(default)s, the fastest on 2 "
                       "cores; 0 = no batching)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="server processes sharing the ports (SO_REUSEPORT), each with its "
                       "own copy of the model and its own poll for versions; one that dies is "
                       "replaced (default: %(default)s; on 2 cores shared with other jobs, 2 "
                       "gave a lower p99, on a quiet machine no gain; twice the memory)")
    serve.add_argument("--threads", type=int, default=16, metavar="N",
                       help="request-handling threads per worker (default: %(default)s)")
    serve.add_argument("--grace-seconds", type=float, default=5.0, metavar="S",
                       help="at shutdown, wait up to S s for requests in flight "
                       "(default: %(default)s)")
    serve.add_argument("--native", action="store_true",
                       help="run the C++ front end instead (serving/native, built by `make "
                       "native`): Predict, GetModelMetadata, GetModelStatus, hot swap, "
                       "metrics and --access-log as this server; with --rest-port a Python "
                       "gateway in front of it serves REST, metrics and /healthz; no batching "
                       "or workers (see tfrec/serving/native.py); ~2-3x the gRPC QPS of this "
                       "server on 2 cores")
    serve.set_defaults(func=run_serve, light=True)  # the supervisor of --workers needs no TF

    query = sub.add_parser(
        "query",
        help="ask a model server (tfrec serve or TF Serving) for recommendations",
        description="Top-k recommendations for a user (signature serving_default) or for a "
        "history of item ids (signature history) from a model server over gRPC (or REST with "
        "--rest), printed as a table or as JSON. Uses only TF Serving's standard API.",
        epilog="Examples: tfrec query --model tfrec --user 196 --k 5; tfrec query --model "
        "tfrec --history 50,172,181 --json; tfrec query --rest --model tfrec --user 196",
    )
    query.add_argument("--server", metavar="HOST:PORT",
                       help="model server address (default: 127.0.0.1:8500, or "
                       "127.0.0.1:8501 with --rest)")
    query.add_argument("--rest", action="store_true",
                       help="ask over TF Serving's REST API (tfrec serve --rest-port) instead "
                       "of gRPC")
    query.add_argument("--model", required=True, metavar="NAME", help="served model name")
    who = query.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="a user id known to the model")
    who.add_argument("--history", metavar="ID,ID,...",
                     help="comma-separated item ids the user interacted with")
    query.add_argument("--k", type=int, default=10, help="how many items (default: %(default)s)")
    query.add_argument("--json", action="store_true",
                       help='print {"items": [{"item_id", "score", "title"}, ...]}, best first')
    query.add_argument("--timeout", type=float, default=10.0, metavar="S",
                       help="seconds to wait for the answer (default: %(default)s)")
    query.set_defaults(func=run_query)


def run_serve(args: argparse.Namespace) -> int:
    from tfrec.serving.serve_config import ServeConfig

    if args.native:
        _check_native_flags(args)
    config = ServeConfig(
        model_base=args.model_base, model_name=args.model_name, host=args.host,
        port=args.port, rest_port=args.rest_port, access_log=args.access_log,
        batch_threads=args.batch_threads,
        poll_seconds=args.poll_seconds, num_versions=args.num_versions,
        max_batch=args.max_batch,
        max_message_mb=args.max_message_mb, workers=args.workers, threads=args.threads,
        grace_seconds=args.grace_seconds,
    )
    if args.native:
        return serve_native(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if config.workers > 1:
        from tfrec.serving.supervisor import supervise

        return supervise(config)
    from tfrec.serving.server import serve

    return serve(config)


# Flags of `tfrec serve` that tfrec-native-serve does not have, with their defaults.
# (--grace-seconds and --batch-threads are ignored: it serves with gRPC's threads, a 5 s
# grace, without merging requests; --threads sizes only the REST gateway's pool.)
NATIVE_UNSUPPORTED = {"workers": 1}


def _check_native_flags(args: argparse.Namespace) -> None:
    from tfrec.errors import TfrecError

    changed = [f"--{name.replace('_', '-')}" for name, default in NATIVE_UNSUPPORTED.items()
               if getattr(args, name) != default]
    if changed:
        raise TfrecError(f"tfrec serve --native does not support {', '.join(changed)}; leave "
                         "them out or serve without --native.")


def serve_native(config) -> int:
    """tfrec-native-serve in place of this process (signals and exit code are its own), or,
    with --rest-port, as the child of the REST gateway (gateway)."""
    import os

    from tfrec.serving import native
    from tfrec.serving.model_base import servable_versions

    servable_versions(config.model_base)  # the native server's check, without TF's log lines
    if config.rest_port is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        from tfrec.serving.gateway import run

        return run(config)
    line = native.serve_command(config)
    os.execv(line[0], line)
    return 1  # not reached


def run_query(args: argparse.Namespace) -> int:
    from tfrec.errors import TfrecError
    from tfrec.serving.client import RestClient, ServingClient

    if not 1 <= args.k <= INT32_MAX:
        raise TfrecError(f"--k must be between 1 and {INT32_MAX} (k is an int32), got {args.k}.")
    history = None
    if args.history is not None:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
        if not history:
            raise TfrecError("--history needs at least one item id.")
    client_class = RestClient if args.rest else ServingClient
    server = args.server or ("127.0.0.1:8501" if args.rest else "127.0.0.1:8500")
    with client_class(server, timeout=args.timeout) as client:
        items = client.recommend(args.model, user=args.user, history=history, k=args.k)
    if args.json:
        print(json.dumps({"items": [
            {"item_id": r.item_id, "score": round(r.score, 6), "title": r.title} for r in items
        ]}, ensure_ascii=False))
    else:
        print(format_table(items))
    return 0


def format_table(items) -> str:
    """Rank, item id, title, score; columns padded by display width (wide characters count 2)."""
    rows = [("rank", "item id", "title", "score")] + [
        (str(i), r.item_id, r.title, f"{r.score:.4f}") for i, r in enumerate(items, 1)
    ]
    widths = [max(_width(row[c]) for row in rows) for c in range(4)]
    lines = []
    for rank, item, title, score in rows:
        lines.append("  ".join([
            _pad(rank, widths[0], right=True), _pad(item, widths[1]), _pad(title, widths[2]),
            _pad(score, widths[3], right=True),
        ]).rstrip())
    return "\n".join(lines)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill
