"""Server-side batching: concurrent calls of one signature become one TF call.

A signature call costs ~1 ms on 2 cores whether it holds 1 row or 8 (graph dispatch dominates),
so merging the requests that arrive while a call runs multiplies throughput. No timer: a request
that finds fewer than `parallel` calls of its signature running runs at once (no added latency
when idle); otherwise it queues, and the thread finishing a call takes the queue (up to
`max_rows` rows) as its next batch and hands it to the first queued request's thread to run.

Merging (tfrec's contract, export/CONTRACT.md): inputs with a batch dimension are concatenated
along it when their other dimensions agree; `k` (a scalar or one value per row) becomes one value
per row, and each request gets back its rows and its first max(k) columns (exact top-k: the top
of a longer list is the shorter list). Any other input must be equal across the merged requests.
The requests of a tfrec model are checked before they queue (unknown ids, k range: see
contract_checks), so a merged call does not fail on them; one that fails all the same (another
model's graph refusing a request) is rerun request by request, so a bad request never fails the
good ones beside it.
"""

import dataclasses
import threading
from typing import Callable

import numpy as np

from tfrec.serving.contract_checks import K_INPUT
from tfrec.serving.model_store import Signature


@dataclasses.dataclass(eq=False)
class _Task:
    feeds: dict
    rows: int
    k_max: int  # 0: the signature has no k
    done: threading.Event | None = None  # set when it queues (a running task needs none)
    result: dict | None = None
    error: BaseException | None = None
    batch: list | None = None  # set when this task's thread is to run `batch`


class Batcher:
    """Runs signature calls, merging concurrent ones (`parallel` merged calls per signature);
    `on_batch(signature name, requests)` is told the size of every call it makes."""

    def __init__(self, max_rows: int, parallel: int,
                 on_batch: Callable[[str, int], None] | None = None):
        self.max_rows, self.parallel = max_rows, max(1, parallel)
        self._on_batch = on_batch
        self._lock = threading.Lock()
        self._queues: dict[tuple, list[_Task]] = {}
        self._running: dict[tuple, int] = {}

    def run(self, signature: Signature, feeds: dict) -> dict[str, np.ndarray]:
        """signature.fn(**feeds) as numpy arrays, possibly computed within a larger batch."""
        plan = _merge_key(signature, feeds)
        if plan is None:
            return call(signature, feeds)
        key, rows, k_max = plan
        task = _Task(feeds, rows, k_max)
        key = (id(signature), key)
        with self._lock:
            queue = self._queues.setdefault(key, [])
            if self._running.get(key, 0) < self.parallel:
                self._running[key] = self._running.get(key, 0) + 1
                task.batch = [task] + self._take(queue, self.max_rows - rows)
            else:
                task.done = threading.Event()
                queue.append(task)
        if task.batch is None:
            task.done.wait()
        while task.batch is not None:  # this thread runs a batch (its own task is its first)
            batch, task.batch = task.batch, None
            self._execute(signature, batch)
            with self._lock:
                queue = self._queues[key]
                if queue:
                    leader = queue.pop(0)
                    leader.batch = [leader] + self._take(queue, self.max_rows - leader.rows)
                    leader.done.set()
                else:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key], self._queues[key]
        if task.error is not None:
            raise task.error
        return task.result

    @staticmethod
    def _take(queue: list[_Task], room: int) -> list[_Task]:
        taken = []
        while queue and queue[0].rows <= room:
            task = queue.pop(0)
            taken.append(task)
            room -= task.rows
        return taken

    def _execute(self, signature: Signature, batch: list[_Task]) -> None:
        if self._on_batch is not None:
            self._on_batch(signature.name, len(batch))
        try:
            if len(batch) == 1:
                batch[0].result = call(signature, batch[0].feeds)
            else:
                _split(call(signature, _merged(signature, batch)), batch)
        except Exception:
            for task in batch:  # alone, each gets its own answer or error
                try:
                    task.result = call(signature, task.feeds)
                except Exception as e:  # noqa: BLE001  (handed to the request's thread)
                    task.error = e
        finally:
            for task in batch:
                if task.result is None and task.error is None:
                    task.error = RuntimeError("batch did not complete")
                if task.done is not None:
                    task.done.set()


def call(signature: Signature, feeds: dict) -> dict[str, np.ndarray]:
    """One signature call, outputs as numpy arrays."""
    return {name: tensor.numpy() for name, tensor in signature.fn(**feeds).items()}


def _merge_key(signature: Signature, feeds: dict):
    """(what merged requests must share, rows, max k) or None when this call cannot merge."""
    parts, rows, k_max = [], None, 0
    for name, spec in sorted(signature.inputs.items()):
        array = feeds[name]
        if spec.batched:
            parts.append((name, array.shape[1:], array.dtype.str))
            rows = array.shape[0]
        elif name != K_INPUT:
            parts.append((name, array.shape, array.dtype.str, array.tobytes()
                          if array.dtype != object else tuple(array.ravel().tolist())))
    if rows is None:
        return None
    k = feeds.get(K_INPUT)
    if K_INPUT in signature.inputs:
        if k.ndim > 1 or (k.ndim == 1 and k.shape[0] != rows) or k.size == 0:
            return None  # the graph words this error
        k_max = int(k.max())
    return tuple(parts), rows, k_max


def _merged(signature: Signature, batch: list[_Task]) -> dict:
    feeds = {}
    for name, spec in signature.inputs.items():
        if spec.batched:
            feeds[name] = np.concatenate([task.feeds[name] for task in batch])
        elif name == K_INPUT:
            feeds[name] = np.concatenate([
                np.broadcast_to(task.feeds[name], (task.rows,)) for task in batch
            ]).astype(batch[0].feeds[name].dtype)
        else:
            feeds[name] = batch[0].feeds[name]
    return feeds


def _split(outputs: dict[str, np.ndarray], batch: list[_Task]) -> None:
    """Each task's rows (and first k_max columns of the [B, max k] outputs)."""
    total = sum(task.rows for task in batch)
    if any(np.ndim(out) == 0 or out.shape[0] != total for out in outputs.values()):
        raise ValueError("an output has no batch dimension")  # _execute reruns one by one
    k_all = max(task.k_max for task in batch)
    start = 0
    for task in batch:
        mine = {}
        for name, out in outputs.items():
            part = out[start:start + task.rows]
            if task.k_max and part.ndim >= 2 and part.shape[1] == k_all:
                part = part[:, :task.k_max]
            mine[name] = part
        task.result = mine
        start += task.rows
