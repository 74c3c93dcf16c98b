"""Where one gRPC Predict's server time goes, and what a failed in-graph call leaks.

Stages:
  1. export random MovieLens-100K-sized artifacts (943 users, 1682 items, D=64) and load them
     into a ModelStore, as `tfrec serve` does;
  2. CPU time (this process, TF's threads included) of N calls each, in one thread: the
     PredictionServicer's Predict handler on a request parsed from bytes and answered as bytes
     (what gRPC does around it), without batching; the flat `serving_default` call the server
     makes (numpy in, numpy out); the SavedModel's own signature call (the in-process floor of
     bench/serving_grpc.py);
  3. the leak of a failed call: RSS and Python objects after N `serving_default` calls on an
     unknown user that fail in the graph, against N such requests refused by the handler's
     checks before TF (tfrec/serving/contract_checks.py);
  4. cProfile N handler calls and print the functions taking the most time.

The handler minus the flat call is what the server adds in Python (proto parsing and
conversion, checks, metrics); the gRPC library's own threads and the GIL contention between
concurrent requests are what bench/serving_grpc.py measures on top. CPU times are inflated on a
loaded machine: compare the rows of one run.

Example: .venv/bin/python bench/serving_profile.py --calls 1000
"""

import argparse
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tfrec.tf_setup import import_tf

tf = import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--top", type=int, default=12, help="profile rows to print")
    args = parser.parse_args()

    from tfrec.export.synthetic import random_artifacts
    from tfrec.export.versions import export_model
    from tfrec.serving.errors import RequestError
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
        signature = store.get()._loaded.signatures["serving_default"]
        user, k = np.array([b"u1"], dtype=object), np.array(10, np.int32)

        def flat():
            return {name: t.numpy() for name, t in fn(user_id=user, k=k).items()}

        def savedmodel():
            return {name: t.numpy() for name, t in signature(user_id=user, k=k).items()}

        cpu = {name: _cpu_ms(f, args.calls) for name, f in (
            ("handler", handler), ("flat call", flat), ("signature call", savedmodel))}
        print(f"CPU per call, one thread, {args.calls} calls: Predict handler "
              f"{cpu['handler']:.3f} ms, the flat call it makes {cpu['flat call']:.3f} ms, the "
              f"SavedModel's signature call {cpu['signature call']:.3f} ms; the server's Python "
              f"adds {cpu['handler'] - cpu['flat call']:.3f} ms to the flat call")

        unknown = np.array([b"no-such-user"], dtype=object)

        def failed_call():
            try:
                fn(user_id=unknown, k=k)
            except tf.errors.InvalidArgumentError:
                pass

        bad = predict_pb2.PredictRequest()
        bad.CopyFrom(request)
        bad.inputs["user_id"].CopyFrom(to_proto(unknown))

        def refused():
            try:
                servicer.Predict(bad, _Context())
            except RequestError:
                pass

        for name, f in (("failed in-graph call", failed_call), ("refused request", refused)):
            kib, objects = _kept(f, args.calls)
            print(f"after {args.calls} x {name}: RSS {kib:+.2f} KiB and {objects:+.2f} Python "
                  "objects per call")
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
        from tfrec.serving.errors import RequestError

        raise RequestError(code, message)


def _cpu_ms(fn, calls: int) -> float:
    """CPU ms per call of this process (all its threads), after 50 warm-up calls."""
    for _ in range(50):
        fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1e3


def _kept(fn, calls: int) -> tuple[float, float]:
    """(RSS KiB, Python objects) left per call of `fn`, after 100 warm-up calls."""
    for _ in range(100):
        fn()
    gc.collect()
    rss, objects = _rss_kib(), len(gc.get_objects())
    for _ in range(calls):
        fn()
    gc.collect()
    return (_rss_kib() - rss) / calls, (len(gc.get_objects()) - objects) / calls


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
