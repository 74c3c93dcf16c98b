"""Where one gRPC Predict's server time goes: the handler against the bare SavedModel call.

Stages:
  1. export random MovieLens-100K-sized artifacts (943 users, 1682 items, D=64) and load them
     into a ModelStore, as `tfrec serve` does;
  2. time N calls of the PredictionServicer's Predict handler in one thread, each on a request
     parsed from bytes and answered as bytes (what gRPC does around it), without batching;
  3. time N bare `serving_default` calls (numpy in, numpy out): the TF floor;
  4. cProfile N handler calls and print the functions taking the most time.

The difference between 2 and 3 is what the server adds in Python (proto parsing and conversion,
checks, metrics); the gRPC library's own threads and the GIL contention between concurrent
requests are what bench/serving_grpc.py measures on top.

Example: .venv/bin/python bench/serving_profile.py --calls 500
"""

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--top", type=int, default=12, help="profile rows to print")
    args = parser.parse_args()

    from tfrec.export.synthetic import random_artifacts
    from tfrec.export.versions import export_model
    from tfrec.serving.model_store import ModelStore
    from tfrec.serving.monitoring import Monitor
    from tfrec.serving.predict_service import PredictionServicer, warm_up
    from tfrec.serving.tensors import to_proto
    from tensorflow_serving.apis import predict_pb2

    with tempfile.TemporaryDirectory(prefix="tfrec-profile-") as tmp:
        base = Path(tmp) / "m"
        export_model(random_artifacts(943, 1682, 64, seen_per_user=90, seed=0), base)
        store = ModelStore(base, "m", poll_seconds=0, warmup=lambda s: warm_up(s, 1024))
        store.load_initial()
        servicer = PredictionServicer(store, 1024, 16 << 20, Monitor(store))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["user_id"].CopyFrom(to_proto(np.array([b"u1"], dtype=object)))
        request.inputs["k"].CopyFrom(to_proto(np.array(10, np.int32)))
        wire = request.SerializeToString()
        context = _Context()

        def handler():
            answer = servicer.Predict(predict_pb2.PredictRequest.FromString(wire), context)
            return answer.SerializeToString()

        fn = store.get().signatures["serving_default"].fn
        user, k = np.array([b"u1"], dtype=object), np.array(10, np.int32)

        def bare():
            return {name: t.numpy() for name, t in fn(user_id=user, k=k).items()}

        for _ in range(50):
            handler(), bare()
        handler_ms, bare_ms = _timed(handler, args.calls), _timed(bare, args.calls)
        print(f"per call, one thread, {args.calls} calls: handler {handler_ms:.3f} ms, bare "
              f"SavedModel call {bare_ms:.3f} ms, the server's Python adds "
              f"{handler_ms - bare_ms:.3f} ms ({(handler_ms - bare_ms) / handler_ms:.0%})")
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            handler()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


class _Context:
    """The two grpc.ServicerContext methods the handler uses."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def abort(self, code, message):
        raise RuntimeError(f"{code}: {message}")


def _timed(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


if __name__ == "__main__":
    sys.exit(main())
