"""Reference recommenders a real model must beat: item popularity and ID-only matrix factorisation.

Popularity gives a score function for `tfrec.evaluate.metrics.full_ranking_metrics` directly;
MF gives embeddings, scored by `tfrec.evaluate.scoring.embedding_score_fn`.
"""

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from tfrec.errors import TfrecError
from tfrec.evaluate.metrics import ScoreFn

__all__ = [
    "MFConfig",
    "popularity_score_fn",
    "popularity_scores",
    "train_mf",
]

# eval_fn(epoch, user_emb [U, D], item_emb [I, D]) -> validation metric, higher is better.
EvalFn = Callable[[int, np.ndarray, np.ndarray], float]


def popularity_scores(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Returns [I] float32: the number of training interactions of each item."""
    train_items = np.asarray(train_items, dtype=np.int64).reshape(-1)
    if train_items.size and (train_items.min() < 0 or train_items.max() >= num_items):
        raise TfrecError(f"a training item row is outside [0, {num_items}).")
    return np.bincount(train_items, minlength=num_items).astype(np.float32)


def popularity_score_fn(popularity: np.ndarray) -> ScoreFn:
    """Returns a score_fn: user_rows [B] -> [B, I] float32, the same popularity row for everyone."""
    popularity = np.asarray(popularity, dtype=np.float32).reshape(-1)
    return lambda rows: np.broadcast_to(popularity, (len(rows), popularity.size))


@dataclasses.dataclass(frozen=True)
class MFConfig:
    """Matrix factorisation trained with in-batch softmax (the batch's items are the negatives).

    The defaults are the best of a small grid on a random 80/10/10 split of MovieLens-100K
    (bench/baselines_movielens.py); use them with an eval_fn for early stopping.

    Attributes:
      dim: D, embedding size.
      epochs: passes over the training pairs (the most; early stopping may end sooner).
      batch_size: pairs per step; also the number of candidates each positive competes with.
      learning_rate: Adam learning rate.
      l2: weight of the squared L2 norm of the batch's user and item embeddings (per pair).
      seed: seeds the initial embeddings and the shuffling; same seed, same result.
      temperature: logits = dot(user, item) / temperature.
      logq_correction: subtract log(sampling probability) of each in-batch candidate from its
        logit, so the model learns p(item | user) rather than p(item | user) / popularity.
      init_stddev: standard deviation of the normal initial embeddings.
      patience: with an eval_fn, stop after this many evaluations without improvement.
    """

    dim: int = 64
    epochs: int = 50
    batch_size: int = 1024
    learning_rate: float = 5e-3
    l2: float = 0.1
    seed: int = 0
    temperature: float = 0.5
    logq_correction: bool = True
    init_stddev: float = 0.1
    patience: int = 4

    def __post_init__(self):
        for name in ("dim", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise TfrecError(f"MFConfig.{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("learning_rate", "temperature", "init_stddev"):
            if not getattr(self, name) > 0:
                raise TfrecError(f"MFConfig.{name} must be > 0, got {getattr(self, name)}.")
        if self.l2 < 0:
            raise TfrecError(f"MFConfig.l2 must be >= 0, got {self.l2}.")


def train_mf(
    train_users: np.ndarray,
    train_items: np.ndarray,
    num_users: int,
    num_items: int,
    config: MFConfig = MFConfig(),
    eval_fn: EvalFn | None = None,
    verbose: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Trains ID-only user and item embeddings on (user, item) pairs with in-batch softmax.

    For a batch of B pairs (u_b, i_b) the loss is the mean over b of the cross-entropy of
    softmax_j(logit[b, j]) against j = b, where logit[b, j] = dot(U[u_b], V[i_j]) / temperature
    - log q(i_j) (q = training frequency, with logq_correction), and j ranges over the batch's
    items; columns j != b holding the same item as b (accidental hits) are masked out. Plus
    l2 * mean_b(|U[u_b]|^2 + |V[i_b]|^2). Adam, pairs reshuffled each epoch.

    Args:
      train_users: [N] int, user rows in [0, num_users).
      train_items: [N] int, item rows in [0, num_items).
      num_users: U.
      num_items: I.
      config: hyper-parameters.
      eval_fn: optional eval_fn(epoch, user_emb [U, D], item_emb [I, D]) -> metric (higher is
        better), called after each epoch; training stops after `config.patience` epochs without
        improvement and the best epoch's embeddings are returned.
      verbose: print the loss (and metric) per epoch.

    Returns:
      (user_emb [U, D] float32, item_emb [I, D] float32) numpy arrays.
    """
    from tfrec.tf_setup import import_tf

    tf = import_tf()
    train_users = np.asarray(train_users, dtype=np.int64).reshape(-1)
    train_items = np.asarray(train_items, dtype=np.int64).reshape(-1)
    if train_users.shape != train_items.shape or train_users.size < 2:
        raise TfrecError("train_users and train_items must be of equal length, at least 2.")
    if train_users.min() < 0 or train_users.max() >= num_users:
        raise TfrecError(f"a training user row is outside [0, {num_users}).")
    popularity = popularity_scores(train_items, num_items)  # also checks the item rows

    rng = np.random.default_rng(config.seed)
    user_var = tf.Variable(
        rng.normal(0.0, config.init_stddev, (num_users, config.dim)).astype(np.float32)
    )
    item_var = tf.Variable(
        rng.normal(0.0, config.init_stddev, (num_items, config.dim)).astype(np.float32)
    )
    log_q = np.log(np.maximum(popularity, 1.0) / train_items.size).astype(np.float32)
    if not config.logq_correction:
        log_q[:] = 0.0
    log_q = tf.constant(log_q)
    optimizer = tf.keras.optimizers.Adam(learning_rate=config.learning_rate)
    inv_temperature = 1.0 / config.temperature

    @tf.function(reduce_retracing=True)
    def train_step(users, items):
        with tf.GradientTape() as tape:
            u = tf.gather(user_var, users)  # [B, D]
            v = tf.gather(item_var, items)  # [B, D]
            logits = tf.matmul(u, v, transpose_b=True) * inv_temperature  # [B, B]
            logits -= tf.gather(log_q, items)[tf.newaxis, :]
            same_item = tf.equal(items[:, tf.newaxis], items[tf.newaxis, :])
            accidental = tf.logical_and(same_item, ~tf.eye(tf.size(items), dtype=tf.bool))
            logits = tf.where(accidental, tf.constant(-1e9, logits.dtype), logits)
            labels = tf.range(tf.size(items))
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
            reg = config.l2 * tf.reduce_mean(
                tf.reduce_sum(tf.square(u), axis=1) + tf.reduce_sum(tf.square(v), axis=1)
            )
            total = loss + reg
        grads = tape.gradient(total, [user_var, item_var])
        optimizer.apply_gradients(zip(grads, [user_var, item_var]))
        return loss

    best = (-np.inf, None, None)
    stale = 0
    n = train_users.size
    for epoch in range(config.epochs):
        start = time.time()
        order = rng.permutation(n)
        losses = []
        for lo in range(0, n, config.batch_size):
            batch = order[lo : lo + config.batch_size]
            if batch.size < 2:  # a softmax over one candidate teaches nothing
                continue
            losses.append(float(train_step(train_users[batch], train_items[batch])))
        message = f"epoch {epoch + 1}: loss {np.mean(losses):.4f} ({time.time() - start:.1f}s)"
        if eval_fn is not None:
            user_emb, item_emb = user_var.numpy(), item_var.numpy()
            metric = float(eval_fn(epoch, user_emb, item_emb))
            message += f", metric {metric:.4f}"
            if metric > best[0]:
                best, stale = (metric, user_emb, item_emb), 0
            else:
                stale += 1
        if verbose:
            print(message, flush=True)
        if eval_fn is not None and stale >= config.patience:
            break
    if eval_fn is not None and best[1] is not None:
        return best[1], best[2]
    return user_var.numpy(), item_var.numpy()
