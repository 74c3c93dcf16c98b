"""Request metrics (Prometheus) and the access log, shared by the gRPC and REST front ends.

Metrics, in a registry of their own per server (exposed at TF Serving's path
/monitoring/prometheus/metrics on the REST port):
  tfrec_requests_total{model, api, method, signature, code}   counter
  tfrec_request_latency_seconds{model, api, method, signature} histogram
  tfrec_served_versions{model}                                  gauge, versions being served
  tfrec_batch_size{model, signature}                            histogram, requests merged into
                                                                one TF call (server-side batching)
Label values come from a closed set (the served model's name and signatures, else "unknown"), so
hostile requests naming random models or signatures cannot grow the registry.
tfrec-native-serve (`tfrec serve --native`) counts the first three with the same names, labels
and buckets itself (serving/native/monitoring.h).

With several worker processes (supervisor), each worker counts in files under the folder
PROMETHEUS_MULTIPROC_DIR names (prometheus_client's multiprocess mode), and any worker's
exposition adds them up: counters and histograms are summed over the workers (those of workers
that died included), `tfrec_served_versions` is the fewest versions a live worker serves.
"""

import logging
import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the REST app)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # set (by the supervisor) before the import above

access_log = logging.getLogger("tfrec.access")

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128)
# Seconds: sub-millisecond to a few seconds, denser where a recommender's p99 lives.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
UNKNOWN = "unknown"


class Monitor:
    """Counts and times requests; one access log line each when `log_access`."""

    def __init__(self, store, log_access: bool = False):
        self._store, self.log_access = store, log_access
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model", "api", "method", "signature"]
        self._count = Counter("tfrec_requests", "Requests answered, by status code.",
                              labels + ["code"], registry=self.registry)
        self._latency = Histogram("tfrec_request_latency_seconds",
                                  "Time from receiving a request to its answer.", labels,
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        versions = Gauge("tfrec_served_versions", "Versions of the model being served.",
                         ["model"], registry=self.registry, multiprocess_mode="livemin")
        # Set at each swap, not before the first: a worker still loading counts no versions.
        store.on_swap.append(lambda: versions.labels(store.name).set(len(store.versions)))
        self._children: dict[tuple, tuple] = {}  # labels -> (count, latency): a closed set
        self._batch_size = Histogram("tfrec_batch_size",
                                     "Requests merged into one TF call by server-side batching.",
                                     ["model", "signature"], buckets=BATCH_BUCKETS,
                                     registry=self.registry)

    def record_batch(self, signature: str, requests: int) -> None:
        """Records one merged TF call of `requests` requests (a Batcher's on_batch)."""
        self._batch_size.labels(self._store.name, signature).observe(requests)

    def _series(self, model: str, api: str, method: str, signature: str, code: str) -> tuple:
        """The counter and histogram children of these labels (looked up once each)."""
        key = (model, api, method, signature, code)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (self._count.labels(*key),
                                           self._latency.labels(*key[:4]))
        return found

    def record(self, api: str, method: str, model: str, signature: str, code: str,
               started: float, peer: str = "") -> None:
        """Records one answered request; `started` is its time.perf_counter() at arrival."""
        seconds = time.perf_counter() - started
        model = model if model == self._store.name else UNKNOWN
        servable = self._store.latest
        if signature and (servable is None or signature not in servable.signatures):
            signature = UNKNOWN
        count, latency = self._series(model, api, method, signature, code)
        count.inc()
        latency.observe(seconds)
        if self.log_access:
            access_log.info("%s %s %s model=%s signature=%s %s %.2fms", peer or "-", api, method,
                            model, signature or "-", code, seconds * 1e3)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (of every worker, in multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
