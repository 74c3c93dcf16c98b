"""An item-item linear model in closed form (EASE, Steck 2019), written with numpy.

With X [U, I] the binary user x item matrix of the TRAINING interactions and a ridge `reg`:

    P = (X^T X + reg * Id)^-1            [I, I]
    B = Id - P / diag(P)                 [I, I]: B[i, j] = -P[i, j] / P[j, j], B[j, j] = 0

B is the least-squares solution of min ||X - X B||^2 + reg ||B||^2 with a zero diagonal (an
item never predicts itself). A user's scores are their history row times B: x_u B [I].
The dense [I, I] inverse bounds the catalogue (blend.max_items).
"""

import numpy as np

from tfrec.evaluate.metrics import Csr, _batch_entries

__all__ = ["gram", "ease_weights", "history_scores"]

_ROWS = 4096  # users densified at a time


def _dense_rows(history: Csr, rows: np.ndarray, num_items: int, dtype) -> np.ndarray:
    """[len(rows), I] 0/1 matrix of the history items of user `rows`."""
    out = np.zeros((len(rows), num_items), dtype)
    out[_batch_entries(*history, rows)] = 1
    return out


def gram(history: Csr, num_items: int) -> np.ndarray:
    """X^T X [I, I] float64 of the binary history CSR (indptr [U + 1], indices [nnz]):
    entry (i, j) counts the users with both i and j (the diagonal: each item's users)."""
    num_users = len(history[0]) - 1
    g = np.zeros((num_items, num_items), np.float64)
    for lo in range(0, num_users, _ROWS):
        x = _dense_rows(history, np.arange(lo, min(lo + _ROWS, num_users)), num_items,
                        np.float64)
        g += x.T @ x
    return g


def ease_weights(gram_matrix: np.ndarray, reg: float) -> np.ndarray:
    """B [I, I] float32 from X^T X [I, I] and the ridge reg > 0 (formula in the module doc)."""
    p = np.linalg.inv(gram_matrix + reg * np.eye(len(gram_matrix)))
    b = -p / np.diag(p)[np.newaxis, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def history_scores(weights: np.ndarray, history: Csr, rows: np.ndarray) -> np.ndarray:
    """[len(rows), I] float32 scores x_u B of user `rows` (their history rows of the CSR)."""
    rows = np.asarray(rows, np.int64)
    return _dense_rows(history, rows, weights.shape[0], np.float32) @ weights
