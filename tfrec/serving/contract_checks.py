"""The request checks of a tfrec serving graph (export/CONTRACT.md), made in Python first.

A request the graph would refuse (an unknown user or item id, k out of range or of the wrong
size, a history row without a known item) is refused here, in the graph's own words, before it
reaches TensorFlow, because:
  - a signature call that fails in-graph leaks in TF 2.21: a Python list and ~1-3 KiB of heap
    per failed call (bench/serving_profile.py measures it), so 10% bad requests grew the
    server's RSS by megabytes a minute;
  - a bad request merged into a batch would fail the whole merged call (see batching).
The checks read the model's id tables once at load: user and item ids as a frozenset of bytes
each (~100 bytes an id). A SavedModel without the contract's user_table, item_table and
item_ids is not checked here: its graph answers its own errors.
"""

import numpy as np

from tfrec.serving.errors import invalid
from tfrec.tf_setup import import_tf

tf = import_tf()  # Keras 2 and a quiet start-up, before any tensorflow import

K_INPUT = "k"
_USER_INPUTS = ("user_id",)
_ITEM_INPUTS = ("item_id", "item_ids")
_HISTORY_INPUT = "history"


class ContractChecks:
    """Refuses what a tfrec signature would refuse in-graph; `check` raises RequestError."""

    def __init__(self, users: frozenset, items: frozenset, num_items: int):
        self.users, self.items, self.num_items = users, items, num_items

    @classmethod
    def of(cls, loaded) -> "ContractChecks | None":
        """The checks of a loaded tfrec SavedModel, None for other models."""
        parts = [getattr(loaded, name, None) for name in ("user_table", "item_table",
                                                          "item_ids")]
        if any(part is None for part in parts):
            return None
        users, _ = tf.raw_ops.LookupTableExportV2(
            table_handle=parts[0].resource_handle, Tkeys=tf.string, Tvalues=tf.int64)
        items = parts[2].numpy().tolist()
        return cls(frozenset(users.numpy().tolist()), frozenset(items), len(items))

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        """INVALID_ARGUMENT for what the graph would refuse; `inputs` passed the signature's
        dtype and shape checks (strings as object arrays of bytes, k int32 [] or [B])."""
        rows = None
        for name, array in inputs.items():
            if name in _USER_INPUTS:
                _known(array, self.users, "user")
            elif name in _ITEM_INPUTS:
                _known(array, self.items, "item")
            elif name == _HISTORY_INPUT:
                self._check_history(array)
            if name != K_INPUT and array.ndim:
                rows = array.shape[0]
        k = inputs.get(K_INPUT)
        if k is not None:
            self._check_k(k.ravel(), rows)

    def _check_history(self, history: np.ndarray) -> None:
        """history [B, L]: every id known or "" (a pad), and a known id in every row."""
        present = history != b""
        _known(history[present], self.items, "item")
        empty = np.flatnonzero(~present.any(axis=1))
        if empty.size:
            raise invalid(f"history row {empty[0]} has no item id")

    def _check_k(self, k: np.ndarray, rows: int | None) -> None:
        if k.size != 1 and k.size != rows:
            raise invalid("k must be a scalar or hold one value per row")
        outside = k[(k < 1) | (k > self.num_items)]
        if outside.size:
            raise invalid(f"k must be between 1 and {self.num_items} (the number of items), "
                          f"got {outside[0]}")


def _known(ids: np.ndarray, known: frozenset, kind: str) -> None:
    for value in ids.ravel().tolist():
        if value not in known:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            raise invalid(f"unknown {kind} id '{text}'")
