"""The versions of one served model: find them, load the newest, hot-swap when a newer one appears.

Layout (as TF Serving expects): `model_base/<N>/saved_model.pb` with N an integer. Folders whose
name is not an integer (temporary `.1.tmp-*` folders of an atomic export, `latest`, ...) and
version folders without a saved_model.pb yet are ignored.

Version policy: TF Serving's `latest` policy, by default with 1 version (its default): the
newest `num_versions` versions are served, a request without a version gets the newest. A poll
thread checks the base folder every `poll_seconds`; a newer version is loaded (and warmed up)
beside the current ones, then the served set is swapped in one assignment: requests in flight
finish on the old version, which is freed when the last of them drops it. A version that fails to
load is logged and not retried until its files change; the current versions keep serving.

As TF Serving's file-system source: a served version whose folder disappears is unloaded (status
END; with no version folder left nothing is served and requests get NOT_FOUND), and a folder that
reappears under a served number (another export reusing the number) is loaded again, replacing
the copy in memory once the new one is warmed up. A folder is told apart from its predecessor by
its identity on disk (the inodes of the folder and its saved_model.pb, and the file's size and
change time, which no copy preserves).
"""

import ctypes
import dataclasses
import functools
import gc
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from tfrec.errors import TfrecError
from tfrec.serving.contract_checks import ContractChecks
from tfrec.serving.errors import not_found
from tfrec.serving.model_base import ready_versions, servable_versions
from tfrec.tf_setup import import_tf

tf = import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import

from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import get_model_metadata_pb2  # noqa: E402

log = logging.getLogger("tfrec.serving")

# ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
LOADING, AVAILABLE, END = 20, 30, 50
MAX_ENDED = 100  # statuses of unloaded versions kept for GetModelStatus (newest first)
_INIT_OP = "__saved_model_init_op"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One signature input: its DataType enum and shape (-1 = any size; None = any rank)."""

    name: str
    dtype: int
    shape: tuple[int, ...] | None

    @property
    def dtype_name(self) -> str:
        return types_pb2.DataType.Name(self.dtype)

    @property
    def batched(self) -> bool:
        """Whether dimension 0 is the batch (rows of the request)."""
        return bool(self.shape) and self.shape[0] == -1


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable serving signature: `fn(**{input name: array})` -> {output name: tensor}."""

    name: str
    fn: Callable
    inputs: dict[str, InputSpec]
    outputs: tuple[str, ...]


from tensorflow.python.eager.context import context as _eager_context  # noqa: E402
from tensorflow.python.framework.constant_op import (  # noqa: E402
    convert_to_eager_tensor as _to_eager,
)


class FlatCall:
    """A restored signature function called with its flat tensors: `fn(**feeds)` -> {output
    name: tensor}, as `signature(**feeds)` answers, with less Python per call.

    A signature call binds the keywords to the function type, converts and casts each input,
    resolves the captured resources (tables, variables) and packs the outputs: ~0.2 ms of CPU
    of the ~0.6 ms of a one-row `serving_default` call (bench/serving_profile.py). Here the
    input and output orders and the captured handles are read once at load, and each call
    hands the inference function its inputs (converted to the signature's dtypes) followed by
    the captures. The handles stay valid while the loaded SavedModel lives (the Servable keeps
    it); no gradient tape ever watches a serving call.
    """

    def __init__(self, fn):
        self._function = fn.inference_fn  # the AtomicFunction a ConcreteFunction runs
        self._inputs = [(spec.name, spec.dtype)
                        for spec in tf.nest.flatten(fn.structured_input_signature)]
        self._outputs = tf.nest.flatten({name: name for name in fn.structured_outputs})
        self._captures = list(fn.captured_inputs)

    @classmethod
    def of(cls, fn) -> Callable:
        """FlatCall(fn), or `fn` itself for a function without the needed parts."""
        if getattr(fn, "inference_fn", None) is None or not hasattr(fn, "captured_inputs"):
            return fn
        return cls(fn)

    def __call__(self, **feeds) -> dict:
        if len(feeds) != len(self._inputs):
            raise TypeError(f"the signature takes {[name for name, _ in self._inputs]}, got "
                            f"{sorted(feeds)}")
        # convert_to_eager_tensor: what tf.convert_to_tensor ends in for a numpy array or list,
        # without its conversion-registry dispatch (~17 instead of ~61 us for a string input).
        context = _eager_context()
        tensors = [_to_eager(feeds[name], context, dtype) for name, dtype in self._inputs]
        flat = self._function.call_flat(*tensors, *self._captures)
        return dict(zip(self._outputs, flat))


class Servable:
    """One loaded version of the model: its signatures, their SignatureDefs (for metadata) and
    the request checks of a tfrec model."""

    def __init__(self, path: Path, version: int):
        self.path, self.version = path, version
        self.identity = folder_identity(path)  # read before loading: a later change reloads
        meta_graph = _read_meta_graph(path)
        self.signature_defs = get_model_metadata_pb2.SignatureDefMap()
        self.signature_defs.signature_def.MergeFrom(meta_graph.signature_def)
        _register_text_ops()
        self._loaded = tf.saved_model.load(str(path))  # keeps the functions' resources alive
        self.signatures = {
            name: _signature(name, self._loaded.signatures[name], sig_def)
            for name, sig_def in meta_graph.signature_def.items()
            if name != _INIT_OP
        }
        self.num_items, self.bytes_per_result = _result_size(self._loaded)
        self.checks = ContractChecks.of(self._loaded)  # None: not a tfrec model

    def __repr__(self) -> str:
        return f"Servable(version={self.version}, path={str(self.path)!r})"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: int
    error: str = ""  # empty = OK


class ModelStore:
    """Serves the newest `num_versions` versions under `base`, swapped atomically by `poll_once`.

    The served set is a dict that is never changed in place: a poll builds a new one (old
    servables it keeps, new ones loaded and warmed up) and replaces the reference in one
    assignment, so a request sees either the old set or the new one.
    """

    def __init__(
        self,
        base: str | Path,
        name: str,
        poll_seconds: float = 1.0,
        warmup: Callable[[Servable], None] | None = None,
        num_versions: int = 1,
    ):
        self.base, self.name = Path(base), name
        self.poll_seconds, self.num_versions = poll_seconds, max(1, num_versions)
        self._warmup = warmup
        self._served: dict[int, Servable] = {}  # replaced, never mutated
        self._status: dict[int, VersionStatus] = {}
        self._failed: dict[int, tuple] = {}  # version -> files fingerprint at the failed load
        self._poll_changed = False
        self._lock = threading.Lock()  # guards _status
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_swap: list[Callable[[], None]] = []  # called after each change of the served set

    # === Lifecycle ===

    def load_initial(self) -> Servable:
        """Loads the newest version(s), or raises TfrecError saying why nothing can be served."""
        versions = servable_versions(self.base)
        newest = max(versions)
        try:
            servable = self._load(newest, versions[newest])
        except Exception as e:
            raise TfrecError(
                f"version {newest} of model base {self.base} failed to load: "
                f"{_first_line(str(e))}."
            ) from e
        self._swap({newest: servable})
        self.poll_once()  # the older versions kept by --num-versions, if any
        return servable

    def start_polling(self) -> None:
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # === Requests ===

    @property
    def latest(self) -> Servable | None:
        served = self._served
        return served[max(served)] if served else None

    @property
    def versions(self) -> list[int]:
        """The served version numbers, newest first."""
        return sorted(self._served, reverse=True)

    def get(self, version: int | None = None) -> Servable:
        """A served version (the newest when `version` is None) or NOT_FOUND."""
        served = self._served
        if not served:
            raise not_found(f"model '{self.name}' has no version to serve: no version folder "
                            f"is left under {self.base}")
        if version is None:
            return served[max(served)]
        servable = served.get(version)
        if servable is None:
            raise not_found(
                f"version {version} of model '{self.name}' is not available (serving "
                f"{', '.join(map(str, sorted(served, reverse=True)))})"
            )
        return servable

    def statuses(self, version: int | None = None) -> list[VersionStatus]:
        """Every version seen, newest first (only `version` if given; NOT_FOUND if unseen)."""
        with self._lock:
            found = sorted(self._status.values(), key=lambda s: -s.version)
        if version is not None:
            found = [s for s in found if s.version == version]
            if not found:
                raise not_found(f"version {version} of model '{self.name}' was never loaded")
        return found

    # === Polling ===

    def poll_once(self) -> bool:
        """Serves the newest `num_versions` ready versions; True if the served set changed.

        Versions that fail to load are skipped (until their files change); if none of the
        wanted versions can be served, the current set stays. After a change the unloaded
        versions are freed at once: a loaded SavedModel leaves reference cycles (traced
        functions and their graphs) that only the cyclic collector frees, and left to its own
        pace every swap kept ~10 MB more (the server's RSS grew with each version).
        """
        changed = self._poll()
        if changed:
            release_memory()
        return changed

    def _poll(self) -> bool:
        versions = ready_versions(self.base)
        wanted = sorted(versions, reverse=True)[: self.num_versions]
        served = self._served
        stale = {v for v in served  # folder gone, or replaced by another export
                 if v not in versions or served[v].identity != folder_identity(versions[v])}
        new = {v: served[v] for v in wanted if v in served and v not in stale}
        for version in wanted:
            if version in new:
                continue
            fingerprint = _fingerprint(versions[version])
            if self._failed.get(version) == fingerprint:
                continue
            if version in stale:
                log.info("version %d of model %s was replaced on disk: reloading it",
                         version, self.name)
            try:
                new[version] = self._load(version, versions[version])
            except Exception as e:  # a bad version must never stop the current ones serving
                self._failed[version] = fingerprint
                self._set_status(VersionStatus(version, END, _first_line(str(e)) or
                                               type(e).__name__))
                log.error("version %d of model %s failed to load, still serving %s: %s",
                          version, self.name, self.versions, e)
        for version in sorted(stale - new.keys()):
            log.warning("version %d of model %s: its folder is gone or replaced, unloading it",
                        version, self.name)
        if not new and not stale:  # nothing loadable, nothing removed: keep serving
            return False
        if new.keys() == served.keys() and all(new[v] is served[v] for v in new):
            return False
        self._swap(new)
        return True

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if self._poll_changed:  # versions unloaded by the last poll that requests in
                    release_memory()    # flight still held then are garbage now
                self._poll_changed = self.poll_once()
            except Exception:  # e.g. the base folder is briefly unreadable
                log.exception("polling %s failed", self.base)

    def _load(self, version: int, path: Path) -> Servable:
        """Loads and warms up one version (not served yet)."""
        self._set_status(VersionStatus(version, LOADING))
        start = time.perf_counter()
        servable = Servable(path, version)
        if self._warmup is not None:
            self._warmup(servable)
        self._failed.pop(version, None)
        log.info("model %s version %d loaded in %.1f s from %s", self.name, version,
                 time.perf_counter() - start, path)
        return servable

    def _swap(self, new: dict[int, Servable]) -> None:
        """Serves `new` from now on: one reference assignment; requests in flight keep theirs."""
        old, self._served = self._served, new
        for version, servable in new.items():
            if old.get(version) is not servable:
                self._set_status(VersionStatus(version, AVAILABLE))
        for version in old.keys() - new.keys():
            with self._lock:
                if self._status[version].state != END:  # keep a failed reload's error
                    self._status[version] = VersionStatus(version, END)
                    self._forget_oldest_ended()
        log.info("model %s now serves version(s) %s", self.name, self.versions or "none")
        for listener in self.on_swap:
            listener()

    def _set_status(self, status: VersionStatus) -> None:
        with self._lock:
            self._status[status.version] = status
            self._forget_oldest_ended()

    def _forget_oldest_ended(self) -> None:
        """Keeps the statuses of the newest MAX_ENDED unloaded versions only: a server swapping
        every minute for months would otherwise keep one per version ever seen."""
        ended = sorted(v for v, status in self._status.items() if status.state == END)
        for version in ended[:-MAX_ENDED]:
            del self._status[version]


def release_memory() -> None:
    """Collects reference cycles, then hands the freed heap pages back to the system (glibc's
    malloc_trim: the request threads' malloc arenas otherwise keep them, and the RSS grows)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def folder_identity(path: Path) -> tuple:
    """What tells a version folder from another one later written under the same number."""
    try:
        folder, graph = path.stat(), (path / "saved_model.pb").stat()
    except OSError:  # removed meanwhile
        return ()
    return folder.st_ino, graph.st_dev, graph.st_ino, graph.st_size, graph.st_ctime_ns


def _result_size(loaded) -> tuple[int, int]:
    """(items, an upper bound on the bytes of one top-k result in a PredictResponse) for a tfrec
    model (its item_ids and item_titles tables, see export/CONTRACT.md); (0, 0) for others.

    A result is an item id and a title (string_val: tag, length varint, bytes) and a float
    score (4 bytes of tensor_content).
    """
    ids, titles = getattr(loaded, "item_ids", None), getattr(loaded, "item_titles", None)
    if ids is None or titles is None:
        return 0, 0
    longest = [int(tf.reduce_max(tf.strings.length(t))) if tf.size(t) else 0
               for t in (ids, titles)]
    return int(tf.size(ids)), sum(n + 1 + _varint_size(n) for n in longest) + 4


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _read_meta_graph(path: Path) -> meta_graph_pb2.MetaGraphDef:
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path} has no MetaGraph tagged 'serve'")


def _signature(name: str, fn, sig_def) -> Signature:
    inputs = {}
    for key, info in sig_def.inputs.items():
        shape = None
        if not info.tensor_shape.unknown_rank:
            shape = tuple(d.size for d in info.tensor_shape.dim)
        inputs[key] = InputSpec(key, info.dtype, shape)
    return Signature(name, FlatCall.of(fn), inputs, tuple(sorted(sig_def.outputs)))


def _fingerprint(path: Path) -> tuple:
    return tuple(sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in path.rglob("*") if p.is_file()
    ))


def _first_line(text: str) -> str:
    """The first sentence of the first line, without its final period."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.split(". ", 1)[0].rstrip(".")


@functools.cache
def _register_text_ops() -> None:
    """Registers the TF Text ops (item_text signatures tokenise in-graph), as the stock model
    server links them in; without tensorflow_text installed such a version fails to load."""
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        log.warning("tensorflow_text is not installed: versions with text ops will not load")
