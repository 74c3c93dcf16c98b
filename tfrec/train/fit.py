"""Fitting the GraphRecommender: full-graph steps with TFRS losses, early stopping on a
validation metric (`eval.early_stop`), a checkpoint every epoch (resumable), TensorBoard, and
a clean stop on a NaN loss."""

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.evaluate.baselines import embedding_score_fn
from tfrec.evaluate.harness import evaluate
from tfrec.heads.alignment import AlignmentHead
from tfrec.heads.ranking import RankingHead
from tfrec.heads.retrieval import RetrievalHead
from tfrec.model.recommender import GraphRecommender
from tfrec.train.prepare import Prepared
from tfrec.train.run_dir import RunDir
from tfrec.train.tensorboard import Board

class TrainingDiverged(TfrecError):
    exit_code = 3


@dataclasses.dataclass
class Trained:
    """A model with its heads, restored or freshly built (see `build`)."""

    model: GraphRecommender
    ranking: RankingHead | None
    checkpoint: tf.train.Checkpoint


@dataclasses.dataclass
class FitReport:
    best_epoch: int
    best_valid: float
    epochs_run: int
    epoch_seconds: float  # mean wall time of a training epoch (evaluation excluded)
    resumed_from: int  # epoch the run resumed after (0 = fresh)


def apply_precision(config: Config) -> None:
    """Mixed precision (float16 compute, float32 variables, losses and outputs) if configured."""
    tf.keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.train.mixed_precision else "float32")


def _optimizer(config: Config, steps_per_epoch: int):
    t = config.train
    total = max(1, t.epochs * steps_per_epoch)
    if t.schedule == "cosine":
        lr = tf.keras.optimizers.schedules.CosineDecay(t.learning_rate, total, alpha=0.05)
    elif t.schedule == "exponential":
        lr = tf.keras.optimizers.schedules.ExponentialDecay(t.learning_rate, steps_per_epoch, 0.95)
    else:
        lr = t.learning_rate
    if t.optimizer == "adamw":
        opt = tf.keras.optimizers.AdamW(lr, weight_decay=t.weight_decay)
    elif t.optimizer == "sgd":
        opt = tf.keras.optimizers.SGD(lr, momentum=0.9)
    else:
        opt = tf.keras.optimizers.Adam(lr)
    if t.mixed_precision:
        opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def build(prepared: Prepared, config: Config, optimizer=None) -> Trained:
    """The model, its ranking head and a checkpoint of them (and of `optimizer`), built eagerly."""
    apply_precision(config)
    tf.keras.utils.set_random_seed(config.train.seed)
    model = GraphRecommender(prepared.inputs, config.model)
    e = model.embed()
    ranking = None
    if prepared.ranking_labels() is not None and config.train.ranking_weight > 0:
        ranking = RankingHead(classification=prepared.data.schema.ranking_label[1] is not None)
        ranking.scorer((e.user[:1], e.item[:1]))
    state = dict(model=model, epoch=tf.Variable(0), best=tf.Variable(-1.0),
                 best_epoch=tf.Variable(0), bad_epochs=tf.Variable(0))
    if ranking is not None:
        state["ranking"] = ranking
    if optimizer is not None:
        state["optimizer"] = optimizer
    return Trained(model, ranking, tf.train.Checkpoint(**state))


def embeddings(model: GraphRecommender) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(user [U, D], item [I, D], item bias [I] or None) float32 numpy, in inference mode:
    the score of (u, i) is user[u] . item[i] + bias[i]."""
    e = model.embed(training=False)
    return e.user.numpy(), e.item.numpy(), None if e.item_bias is None else e.item_bias.numpy()


def fit(prepared: Prepared, config: Config, run: RunDir, progress: bool = True,
        log=lambda line: print(line, flush=True)) -> tuple[Trained, FitReport]:
    """Trains until `train.epochs` or early stopping; returns the best epoch's model."""
    t, metric = config.train, config.eval.early_stop
    users, items = prepared.split.pairs("train")
    labels = prepared.ranking_labels()
    if labels is None:
        labels = np.zeros(len(users), np.float32)
    n = len(users)
    chunk = min(t.chunk, t.batch_size, n)
    batch = chunk * (min(t.batch_size, n) // chunk)  # a fixed batch: one trace, whole chunks
    steps = math.ceil(n / batch)
    opt = _optimizer(config, steps)
    trained = build(prepared, config, opt)
    model, ranking, ckpt = trained.model, trained.ranking, trained.checkpoint
    negatives = None if t.negatives == "all" else int(t.negatives)
    sampling = None
    if t.applies_logq:  # how often an item is a positive: in-batch negatives are drawn that often
        sampling = (np.bincount(items, minlength=prepared.num_items) / n).astype(np.float32)
    seen = np.flatnonzero(prepared.inputs.nodes[prepared.inputs.item_set].id_mask)
    retrieval = RetrievalHead(seen, t.temperature, negatives, chunk, sampling)
    has_text = model.encoders[prepared.inputs.item_set].text is not None
    align = AlignmentHead(text_only=t.align_mode == "text") if t.align_weight > 0 and has_text \
        else None
    latest = tf.train.CheckpointManager(ckpt, str(run.checkpoints), max_to_keep=2)
    best = tf.train.CheckpointManager(ckpt, str(run.checkpoints / "best"), max_to_keep=1)
    resumed = 0
    if latest.latest_checkpoint:
        ckpt.restore(latest.latest_checkpoint).expect_partial()
        resumed = int(ckpt.epoch.numpy())
        log(f"resuming {run.path} after epoch {resumed} (best {metric} "
            f"{float(ckpt.best.numpy()):.4f} at epoch {int(ckpt.best_epoch.numpy())})")
    variables = model.trainable_variables + (ranking.trainable_variables if ranking else [])

    @tf.function(jit_compile=t.xla)
    def step(u_rows, i_rows, y):
        with tf.GradientTape() as tape:
            e = model.embed(training=True)  # float32 outputs, whatever the compute dtype
            user_table, item_table = e.scoring()  # dot products = scores (bias included)
            losses = {"retrieval": retrieval(tf.gather(user_table, u_rows), item_table, i_rows)}
            u, i = tf.gather(e.user, u_rows), tf.gather(e.item, i_rows)
            total = losses["retrieval"]
            if ranking is not None:
                losses["ranking"] = ranking(u, i, y)
                total += t.ranking_weight * losses["ranking"]
            if align is not None:
                # the first chunk of the (shuffled) batch: a [chunk, chunk] contrast, not [B, B]
                losses["alignment"] = align(e.item_text, e.item, i_rows[:chunk])
                total += t.align_weight * losses["alignment"]
            u0, i0 = tf.gather(e.user_h0, u_rows), tf.gather(e.item_h0, i_rows)
            losses["l2"] = t.weight_decay * tf.reduce_mean(
                tf.reduce_sum(u0 * u0, -1) + tf.reduce_sum(i0 * i0, -1))
            if t.optimizer != "adamw":
                total += losses["l2"]
            losses["total"] = total
            scaled = opt.get_scaled_loss(total) if t.mixed_precision else total
        grads = tape.gradient(scaled, variables)
        if t.mixed_precision:
            grads = opt.get_unscaled_gradients(grads)
        opt.apply_gradients(zip(grads, variables))
        return losses

    board = Board(run.logs)
    seconds = []
    stopped = int(ckpt.bad_epochs.numpy()) >= t.patience  # an early-stopped run is complete
    last = resumed if stopped else t.epochs
    bar = _progress(t.epochs, resumed, progress)
    epoch = resumed
    for epoch in range(resumed + 1, last + 1):
        start = time.perf_counter()
        order = np.random.default_rng([t.seed, epoch]).permutation(n)
        sums: dict[str, float] = {}
        for s in range(steps):
            rows = order[(s * batch + np.arange(batch)) % n]  # the last batch wraps around
            losses = step(tf.constant(users[rows], tf.int32), tf.constant(items[rows], tf.int32),
                          tf.constant(labels[rows]))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if not math.isfinite(sums["total"]):
                bar.close()
                raise TrainingDiverged(
                    f"the training loss became {sums['total']} at epoch {epoch}, step {s + 1}; "
                    f"training stopped and the last good checkpoint (epoch {epoch - 1}) is kept "
                    f"in {run.checkpoints}: lower train.learning_rate")
        seconds.append(time.perf_counter() - start)
        means = {k: v / steps for k, v in sums.items()}
        valid = evaluate(embedding_score_fn(*embeddings(model)), prepared, config.eval.ks,
                         splits=("valid",))["valid"]
        lr = opt.learning_rate
        lr = float(lr(opt.iterations) if callable(lr) else lr)
        board.epoch(epoch, means, lr, valid)
        score = valid[metric]
        ckpt.epoch.assign(epoch)
        improved = score > float(ckpt.best.numpy())
        if improved:
            ckpt.best.assign(score)
            ckpt.best_epoch.assign(epoch)
            ckpt.bad_epochs.assign(0)
        else:
            ckpt.bad_epochs.assign_add(1)
        if improved:
            best.save(checkpoint_number=epoch)
        latest.save(checkpoint_number=epoch)
        bar.update(1)
        bar.set_postfix(loss=f"{means['total']:.4f}", **{metric: f"{score:.4f}"})
        _write(bar, f"epoch {epoch:3d}  loss {means['total']:.4f}  valid {metric} {score:.4f}  "
               f"{seconds[-1]:.1f}s"
               + ("  *" if improved else ""), progress, log)
        if int(ckpt.bad_epochs.numpy()) >= t.patience:
            _write(bar, f"early stop: no better {metric} for {t.patience} epochs",
                   progress, log)
            break
    bar.close()
    restore_best(trained, run)
    report = FitReport(int(ckpt.best_epoch.numpy()), float(ckpt.best.numpy()), epoch,
                       float(np.mean(seconds)) if seconds else 0.0, resumed)
    return trained, report


def restore_best(trained: Trained, run: RunDir) -> None:
    path = tf.train.latest_checkpoint(str(run.checkpoints / "best"))
    if path is None:
        raise TfrecError(f"run folder {run.path} has no best checkpoint yet: train first")
    trained.checkpoint.restore(path).expect_partial()


def _progress(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="epoch",
                disable=None if enabled else True,
                leave=False, dynamic_ncols=True)


def _write(bar, line: str, progress: bool, log) -> None:
    if progress:
        bar.write(line)
    else:
        log(line)
