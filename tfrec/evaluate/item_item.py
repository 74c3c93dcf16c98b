"""Item-item linear models in closed form, written with numpy: a user's scores are their
history row times an item x item matrix B [I, I] (x_u B [I]), B fitted on X [U, I], the binary
user x item matrix of the TRAINING interactions.

EASE (Steck 2019), with a ridge `reg`:

    P = (X^T X + reg * Id)^-1            [I, I]
    B = Id - P / diag(P)                 [I, I]: B[i, j] = -P[i, j] / P[j, j], B[j, j] = 0

B is the least-squares solution of min ||X - X B||^2 + reg ||B||^2 with a zero diagonal (an
item never predicts itself). 
RP3beta (Paudel et al. 2017; a three-step random walk item -> user -> item, the walk's end
damped by its popularity), with exponents `alpha` > 0 and `beta` >= 0, d_u = |items of u|,
n_i = |users of i|:

    W[i, j] = n_i^-alpha * sum_u X[u, i] X[u, j] d_u^-alpha * n_j^-beta,   W[j, j] = 0

i.e. the walk's transition probabilities (row-normalised X^T and X) raised to alpha, the
target's popularity dividing by n_j^beta; an item without users has a zero row.
The dense [I, I] matrices bound the catalogue (blend.max_items).
"""

import numpy as np

from tfrec.evaluate.metrics import Csr, _batch_entries

__all__ = ["gram", "ease_weights", "rp3beta_weights", "history_scores"]

_ROWS = 4096  # users densified at a time


def _dense_rows(history: Csr, rows: np.ndarray, num_items: int, dtype) -> np.ndarray:
    """[len(rows), I] 0/1 matrix of the history items of user `rows`."""
    out = np.zeros((len(rows), num_items), dtype)
    out[_batch_entries(*history, rows)] = 1
    return out


def gram(history: Csr, num_items: int, user_weights: np.ndarray | None = None) -> np.ndarray:
    """X^T diag(w) X [I, I] float64 of the binary history CSR (indptr [U + 1], indices [nnz])
    and per-user weights w [U] (default 1: entry (i, j) counts the users with both i and j,
    the diagonal each item's users)."""
    num_users = len(history[0]) - 1
    g = np.zeros((num_items, num_items), np.float64)
    for lo in range(0, num_users, _ROWS):
        rows = np.arange(lo, min(lo + _ROWS, num_users))
        x = _dense_rows(history, rows, num_items, np.float64)
        g += x.T @ (x if user_weights is None else x * user_weights[rows, np.newaxis])
    return g


def ease_weights(gram_matrix: np.ndarray, reg: float) -> np.ndarray:
    """B [I, I] float32 from X^T X [I, I] and the ridge reg > 0 (formula in the module doc)."""
    p = np.linalg.inv(gram_matrix + reg * np.eye(len(gram_matrix)))
    b = -p / np.diag(p)[np.newaxis, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def rp3beta_weights(history: Csr, num_items: int, alpha: float, beta: float) -> np.ndarray:
    """W [I, I] float32 of RP3beta (formula in the module doc) from the binary history CSR."""
    degrees = np.diff(history[0]).astype(np.float64)  # d_u [U]
    popularity = np.bincount(history[1], minlength=num_items).astype(np.float64)  # n_i [I]
    w = gram(history, num_items, np.power(np.maximum(degrees, 1.0), -alpha))
    seen = popularity > 0
    w[seen] *= np.power(popularity[seen], -alpha)[:, np.newaxis]
    w[:, seen] *= np.power(popularity[seen], -beta)[np.newaxis, :]
    np.fill_diagonal(w, 0.0)
    return w.astype(np.float32)


def history_scores(weights: np.ndarray, history: Csr, rows: np.ndarray) -> np.ndarray:
    """[len(rows), I] float32 scores x_u B of user `rows` (their history rows of the CSR)."""
    rows = np.asarray(rows, np.int64)
    return _dense_rows(history, rows, weights.shape[0], np.float32) @ weights
