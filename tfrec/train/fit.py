"""Fitting the GraphRecommender (tfrec's GNN, or MF: the same model without message passing).

    Batches (shuffled training pairs) --Trainer.step--> losses (Objective: TFRS heads)
    per epoch: steps -> refresh fine-tuned text -> validate -> checkpoint + early stop -> log
Each step embeds a graph, then scores the batch's pairs: the whole model graph (`FullGraph`,
train.mode "full") or a subgraph sampled around the batch's users and items (`SampledGraph`,
"sampled": tfrec.data.sampling in a prefetched tf.data pipeline, or read from the Beam
sampler's examples with sample.examples, `SampledFiles`; one compiled step for every subgraph;
its items are the retrieval candidates). Validation, test and export embed the full
graph, or batches of sampled neighbourhoods (sample.inference, tfrec.train.inference).
Early stopping on a validation metric (`eval.early_stop`; test never chooses anything), a
checkpoint every epoch (resumable), the best one in checkpoints/best, TensorBoard, and a clean
stop (exit 3) on a non-finite loss.
"""

import dataclasses
import itertools
import math
import time

import numpy as np
import tensorflow as tf

from tfrec.config import Config
from tfrec.data.sampling import Subgraph, SubgraphSampler
from tfrec.errors import TfrecError
from tfrec.evaluate.harness import evaluate
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.heads.alignment import AlignmentHead
from tfrec.heads.ranking import RankingHead
from tfrec.heads.retrieval import RetrievalHead
from tfrec.model.inputs import edgeless
from tfrec.model.recommender import Embeddings, GraphRecommender, resolved
from tfrec.train import distribute
from tfrec.train.grappler import lean
from tfrec.train.inference import SampledEmbedder, by_size
from tfrec.train.optimizers import LazyAdam
from tfrec.train.prepare import Prepared
from tfrec.train.run_dir import RunDir
from tfrec.train.tensorboard import Board


class TrainingDiverged(TfrecError):
    exit_code = 3


@dataclasses.dataclass
class Trained:
    """A model with its heads and the graph it embeds, restored or freshly built (`build`)."""

    model: GraphRecommender
    ranking: RankingHead | None
    checkpoint: tf.train.Checkpoint
    graph: object  # the model graph (tfrec.model.inputs) of the full training graph
    sampler: SubgraphSampler | None = None  # of `graph`, if training or inference samples
    embedder: SampledEmbedder | None = None  # sample.inference "sampled": batched inference


@dataclasses.dataclass
class FitReport:
    best_epoch: int
    best_valid: float
    epochs_run: int
    epoch_seconds: float  # mean wall time of a training epoch (evaluation excluded)
    resumed_from: int  # epoch the run resumed after (0 = fresh)
    mode: str = "full"  # the graph each step embedded: "full" or "sampled"


def apply_precision(config: Config) -> None:
    """Mixed precision (float16 compute, float32 variables, losses and outputs) if configured."""
    tf.keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.train.mixed_precision else "float32")


class Shifted(tf.keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` counted from step `start`: lr(step) = schedule(max(step - start, 0)). A warm
    start continues the old run's optimizer (its step count included, which Adam's bias
    correction needs) while its own schedule starts from the beginning."""

    def __init__(self, schedule, start: int):
        self.schedule, self.start = schedule, start

    def __call__(self, step):
        return self.schedule(tf.maximum(tf.cast(step, tf.int64) - self.start, 0))

    def get_config(self):
        return {"schedule": tf.keras.optimizers.schedules.serialize(self.schedule),
                "start": self.start}


def _optimizer(config: Config, steps_per_epoch: int, start_step: int = 0):
    """The optimizer of train.optimizer with train.learning_rate on train.schedule, the
    schedule counted from `start_step` (the step count a warm start's optimizer resumes at)."""
    t = config.train
    total = max(1, t.epochs * steps_per_epoch)
    if t.schedule == "cosine":
        lr = tf.keras.optimizers.schedules.CosineDecay(t.learning_rate, total, alpha=0.05)
    elif t.schedule == "exponential":
        lr = tf.keras.optimizers.schedules.ExponentialDecay(t.learning_rate, steps_per_epoch, 0.95)
    else:
        lr = t.learning_rate
    if start_step and not isinstance(lr, float):
        lr = Shifted(lr, start_step)
    if t.optimizer == "adamw":
        return tf.keras.optimizers.AdamW(lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return tf.keras.optimizers.SGD(lr, momentum=0.9)
    if t.optimizer == "lazy_adam":
        return LazyAdam(lr)
    return tf.keras.optimizers.Adam(lr)


def build(prepared: Prepared, config: Config, optimizers: dict | None = None) -> Trained:
    """The model, its ranking head and a checkpoint of them (and of `optimizers`: name ->
    optimizer), built eagerly; fine-tuned text tables start from the frozen embeddings."""
    apply_precision(config)
    tf.keras.utils.set_random_seed(config.train.seed)
    model = GraphRecommender(prepared.spec, resolved(config.model), prepared.sentence_encoder)
    graph = prepared.model_graph
    e = model.embed(edgeless(graph))  # the weights (as from the graph: same shapes and order)
    for name, encoder in model.encoders.items():
        if encoder.text_table is not None:
            encoder.text_table.assign(graph.node_sets[name]["text"])
    ranking = None
    if prepared.ranking_labels() is not None and config.train.ranking_weight > 0:
        ranking = RankingHead(classification=prepared.data.schema.ranking_label[1] is not None)
        ranking.scorer((e.user[:1], e.item[:1]))
    state = dict(model=model, epoch=tf.Variable(0), best=tf.Variable(-1.0, dtype=tf.float64),
                 best_epoch=tf.Variable(0), bad_epochs=tf.Variable(0))
    if ranking is not None:
        state["ranking"] = ranking
    state.update(optimizers or {})
    trained = Trained(model, ranking, tf.train.Checkpoint(**state), graph)
    sampled_inference = by_size(prepared, config, config.sample.inference) == "sampled"
    samples_training = training_mode(prepared, config) == "sampled" \
        and not config.sample.examples  # else its subgraphs are read from files (SampledFiles)
    if sampled_inference or samples_training:
        trained.sampler = SubgraphSampler(
            graph, prepared.data.schema, config.sample.fanouts, seed=config.train.seed,
            rescale_norm=config.model.conv == "lightgcn")
    if sampled_inference:
        trained.embedder = SampledEmbedder(model, trained.sampler, config.sample.inference_batch)
    return trained


def embeddings(trained: Trained) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(user [U, D], item [I, D], item bias [I] or None) float32 numpy, in inference mode:
    the score of (u, i) is user[u] . item[i] + bias[i]. From the full graph in one pass, or
    from sampled neighbourhoods in batches (sample.inference, tfrec.train.inference)."""
    if trained.embedder is not None:
        return trained.embedder()
    e = trained.model.embed(trained.graph, training=False)
    return e.user.numpy(), e.item.numpy(), None if e.item_bias is None else e.item_bias.numpy()


@dataclasses.dataclass
class Batches:
    """Training pairs in fixed-size shuffled batches (one trace; the last batch wraps around).

    users, items [P] int32 rows; labels [P] float32 ranking labels; batch: B, a multiple of
    chunk (the in-batch negatives of a row are the other rows of its chunk)."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    batch: int
    chunk: int
    seed: int

    @classmethod
    def of(cls, prepared: Prepared, config: Config, replicas: int = 1) -> "Batches":
        """The training pairs of `prepared`; B a multiple of replicas x chunk."""
        t = config.train
        users, items = prepared.split.pairs("train")
        labels = prepared.ranking_labels()
        n = len(users)
        batch, chunk = distribute.replica_rows(t.batch_size, t.chunk, n, replicas)
        return cls(users.astype(np.int32), items.astype(np.int32),
                   np.zeros(n, np.float32) if labels is None else labels, batch, chunk, t.seed)

    @property
    def steps(self) -> int:
        return math.ceil(len(self.users) / self.batch)

    def rows(self, epoch: int) -> np.ndarray:
        """[steps, B] indices of the training pairs of each step of `epoch` (a seeded
        shuffle; the last step wraps around)."""
        n = len(self.users)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        return order[np.arange(self.steps * self.batch).reshape(self.steps, self.batch) % n]

    def epoch(self, epoch: int):
        """Yields (user rows [B], item rows [B], labels [B]) for each step of `epoch`."""
        for rows in self.rows(epoch):
            yield self.users[rows], self.items[rows], self.labels[rows]


def training_mode(prepared: Prepared, config: Config) -> str:
    """"full" or "sampled": train.mode, "auto" resolved by the number of training interaction
    edges against sample.auto_edges."""
    return by_size(prepared, config, config.train.mode)


class FullGraph:
    """Every step embeds the whole model graph: a batch's positions are its global rows and
    the retrieval candidates are the Objective's own (every item seen in training)."""

    def __init__(self, graph):
        self.graph = graph

    def batch(self, users: np.ndarray, items: np.ndarray) -> Subgraph:
        return Subgraph(self.graph, users, items)

    def epoch(self, batches: "Batches", epoch: int, objective: "Objective"):
        """Yields (Subgraph, labels [B], candidates None) for each step of `epoch`."""
        for users, items, labels in batches.epoch(epoch):
            yield self.batch(users, items), labels, None


class SampledGraph:
    """Every step embeds a subgraph sampled around the batch's users and items (TF-GNN's
    in-memory sampler, `sample.fanouts`; the batch's own edges removed), drawn in ONE tf.data
    pipeline for the whole fit (traced and optimised once), which samples the next batches,
    across epoch ends too, while the current step runs."""

    def __init__(self, sampler: SubgraphSampler, parallel: int = 1):
        self.sampler, self.parallel = sampler, parallel  # sample.parallel: map calls in flight
        self._next = None  # (epoch the pipeline is at, its iterator)

    def batch(self, users: np.ndarray, items: np.ndarray) -> Subgraph:
        return self.sampler.sample(users, items)

    def subgraphs(self, pairs: tf.data.Dataset, objective: "Objective") -> tf.data.Dataset:
        """Step inputs on sampled subgraphs, in TF ops (Dataset.map, prefetched): each element
        {"u_rows", "i_rows": [b] global rows of the pairs, "labels": [b], optionally "fresh":
        [F] global item rows} becomes {"graph": the subgraph sampled around the pairs,
        "u_rows", "i_rows" (and "fresh"): positions in it, "labels", "item_rows": [I_g] global
        row of each of its items, "candidates": [C] positions of those seen in training}."""
        def sample(pair):
            graph, u, i, item_rows = self.sampler.pairs(pair["u_rows"], pair["i_rows"])
            out = {"graph": graph, "u_rows": u, "i_rows": i, "labels": pair["labels"],
                   "item_rows": item_rows, "candidates": objective.candidates(item_rows)}
            if "fresh" in pair:  # the batch's items: all of them are in the subgraph
                out["fresh"] = tf.searchsorted(item_rows, pair["fresh"])
            return out

        return pairs.map(sample, num_parallel_calls=self.parallel, deterministic=True
                         ).prefetch(tf.data.AUTOTUNE)

    def dataset(self, batches: "Batches", first_epoch: int, objective: "Objective"):
        """The steps of epochs first_epoch, first_epoch + 1, ... as a tf.data.Dataset of
        `subgraphs` step inputs (no "fresh") of the whole batch B."""
        b = batches.batch

        def pairs():
            for epoch in itertools.count(first_epoch):
                for users, items, labels in batches.epoch(epoch):
                    yield {"u_rows": users, "i_rows": items, "labels": labels}

        rows = tf.TensorSpec([b], tf.int32)
        signature = {"u_rows": rows, "i_rows": rows, "labels": tf.TensorSpec([b], tf.float32)}
        return self.subgraphs(tf.data.Dataset.from_generator(pairs, output_signature=signature),
                              objective)

    def epoch(self, batches: "Batches", epoch: int, objective: "Objective"):
        """Yields (Subgraph, labels [B], candidates [C]) for each step of `epoch`; the
        pipeline carries on from the previous epoch when `epoch` follows it."""
        if self._next is None or self._next[0] != epoch:
            self._next = (epoch, iter(self.dataset(batches, epoch, objective)))
        steps = self._next[1]
        for _ in range(batches.steps):
            x = next(steps)
            yield Subgraph(x["graph"], x["u_rows"], x["i_rows"], x["item_rows"]), x["labels"], \
                x["candidates"]
        self._next = (epoch + 1, steps)

    def close(self) -> None:
        """Stops the pipeline (its Python generator ends while the interpreter is alive)."""
        self._next = None


class SampledFiles:
    """Every step embeds link subgraphs read from a `tfrec data sample` folder (sample.examples:
    TF-GNN's Beam sampler, one subgraph per training pair; tfrec.data.beam_reader): an epoch is
    one pass over its examples, shuffled with (train.seed, epoch), in batches of B; the labels
    are the files' (the same ranking labels as Batches'), the candidates the Objective's of
    each batch's items, as SampledGraph's."""

    SHUFFLE = 1 << 16  # examples in the shuffle buffer (a full shuffle up to that many)

    def __init__(self, folder: str, prepared: Prepared, config: Config, batches: "Batches"):
        from tfrec.data.beam_reader import check_sampled

        graph, schema = prepared.model_graph, prepared.data.schema
        self.info = check_sampled(
            folder, schema=schema.path, fanouts=config.sample.fanouts,
            split=dataclasses.asdict(config.split), pairs=len(batches.users), batch=batches.batch,
            nodes={n: int(s.total_size) for n, s in graph.node_sets.items()})
        self.folder, self.spec, self.schema = folder, graph.spec, schema
        self.batch, self.seed = batches.batch, config.train.seed
        self.steps = self.info["examples"] // self.batch  # the last partial batch is dropped

    def _read(self, epoch: int, batch: int, shard=(1, 0)):
        """The batches of `batch` examples of `epoch` (shuffled with (train.seed, epoch)), of
        shard `shard` = (count, index) of the shuffled examples: beam_reader.read_sampled."""
        from tfrec.data.beam_reader import read_sampled

        return read_sampled(self.folder, self.spec, self.schema.user_set, self.schema.item_set,
                            batch_size=batch, shuffle=min(self.info["examples"], self.SHUFFLE),
                            seed=self.seed * 100_003 + epoch, shard=shard)

    def epoch(self, batches: "Batches", epoch: int, objective: "Objective"):
        """Yields (Subgraph, labels [B], candidates [C]) for each step of `epoch`."""
        for graph, u, i, item_rows, labels in self._read(epoch, self.batch):
            yield Subgraph(graph, u, i, item_rows), labels, objective.candidates(item_rows)

    def shares(self, epoch: int, objective: "Objective", replicas: range, total: int,
               fresh: int) -> tf.data.Dataset:
        """The step inputs (as SampledGraph.subgraphs') of `replicas`, consecutive ids of
        `total` replicas, for the steps of `epoch`: the epoch's shuffled examples are sharded by
        input pipeline (total / len(replicas) of them, this one index replicas.start /
        len(replicas)), each pipeline's in batches of B / total, consecutive batches for
        consecutive replicas; "fresh": `fresh` distinct items of each batch (in-graph)."""
        pipelines = total // len(replicas)

        def inputs(graph, u, i, item_rows, labels):
            return {"graph": graph, "u_rows": u, "i_rows": i, "labels": labels,
                    "fresh": _fresh_in_graph(i, fresh), "item_rows": item_rows,
                    "candidates": objective.candidates(item_rows)}

        data = self._read(epoch, self.batch // total, (pipelines, replicas.start // len(replicas)))
        return data.map(inputs)

    def close(self) -> None:
        pass


def sampled_files(prepared: Prepared, config: Config,
                  batches: "Batches | None" = None) -> "SampledFiles | None":
    """The checked sample.examples folder the sampled steps read (None: not set); a TfrecError
    naming what does not match this run. tfrec.train.run checks it before claiming the run."""
    examples = config.sample.examples
    if not examples:
        return None
    if training_mode(prepared, config) != "sampled":
        raise TfrecError(f"sample.examples is set ({examples}), but training runs on the "
                         "full graph: set train.mode = \"sampled\" to train from it")
    return SampledFiles(examples, prepared, config, batches or Batches.of(prepared, config))


class Objective:
    """The losses of a batch from the model's embeddings, each a head of its own: TFRS
    retrieval, TFRS ranking (optional), text/graph alignment (optional), L2 on layer-0 states."""

    def __init__(self, prepared: Prepared, config: Config, trained: Trained, batches: Batches):
        t = config.train
        self.config = t
        items = batches.items
        sampling = None
        if t.applies_logq:  # how often an item is a positive (drawn as an in-batch negative)
            sampling = (np.bincount(items, minlength=prepared.num_items) / len(items)
                        ).astype(np.float32)
        seen = np.flatnonzero(np.bincount(items, minlength=prepared.num_items))
        self.seen = tf.constant(np.bincount(items, minlength=prepared.num_items) > 0)
        negatives = None if t.negatives == "all" else int(t.negatives)
        self.retrieval = RetrievalHead(seen, t.temperature, negatives, batches.chunk, sampling)
        self.ranking = trained.ranking
        has_text = trained.model.encoders[prepared.spec.item_set].text is not None
        self.align = AlignmentHead(text_only=t.align_mode == "text") \
            if t.align_weight > 0 and has_text else None
        self.chunk = batches.chunk

    def candidates(self, item_rows: tf.Tensor) -> tf.Tensor:
        """item_rows: [I_g] global rows of the items of a sampled graph -> [C] int32 positions
        of those that may be negatives (seen in training). TF ops: runs in the tf.data map."""
        return tf.cast(tf.where(tf.gather(self.seen, item_rows))[:, 0], tf.int32)

    def __call__(self, e: Embeddings, u_rows, i_rows, labels, candidates=None,
                 item_rows=None) -> dict:
        """e: embeddings of the graph the step embedded; u_rows, i_rows [B] int32 positions of
        the batch's users and items in it; labels [B] float32; candidates: [C] item positions
        of the negatives (None: every item seen in training); item_rows: [I_g] global row of
        each item of e (None: positions are rows).
        Returns {component: scalar}, "total" the weighted sum that is minimised."""
        t = self.config
        user_table, item_table = e.scoring()  # dot products = scores (bias included)
        losses = {"retrieval": self.retrieval(tf.gather(user_table, u_rows), item_table, i_rows,
                                              candidates, item_rows)}
        total = losses["retrieval"]
        if self.ranking is not None:
            losses["ranking"] = self.ranking(tf.gather(e.user, u_rows), tf.gather(e.item, i_rows),
                                             labels)
            total += t.ranking_weight * losses["ranking"]
        if self.align is not None:
            # the first chunk of the (shuffled) batch: a [chunk, chunk] contrast, not [B, B]
            losses["alignment"] = self.align(e.item_text, e.item, i_rows[:self.chunk])
            total += t.align_weight * losses["alignment"]
        u0, i0 = tf.gather(e.user_h0, u_rows), tf.gather(e.item_h0, i_rows)
        losses["l2"] = t.weight_decay * tf.reduce_mean(
            tf.reduce_sum(u0 * u0, -1) + tf.reduce_sum(i0 * i0, -1))
        if t.optimizer != "adamw":  # AdamW decays the weights itself
            total += losses["l2"]
        losses["total"] = total
        return losses


def _fresh_items(items: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count] int32: distinct items of the batch drawn at random (repeated if fewer), the
    ones whose text is re-encoded with gradients this step."""
    distinct = rng.permutation(np.unique(items))
    return np.resize(distinct, count).astype(np.int32)


def _fresh_in_graph(items: tf.Tensor, count: int) -> tf.Tensor:
    """_fresh_items in TF ops (a tf.data map): [count] int32 distinct `items` in random order,
    repeated if fewer."""
    distinct = tf.random.shuffle(tf.unique(items).y)
    return tf.gather(distinct, tf.range(count) % tf.maximum(tf.size(distinct), 1))


class Trainer:
    """One run's training loop: `fit()` = restore -> (epoch: steps -> refresh text ->
    validate -> checkpoint/early stop -> log) -> the best epoch's model.
    The steps run on one device, or on the replicas of `train.strategy`
    (tfrec.train.distribute), whose scope holds the model and optimizers."""

    def __init__(self, prepared: Prepared, config: Config, run: RunDir, progress: bool, log,
                 init=None, start_step: int = 0):
        self.prepared, self.config, self.run = prepared, config, run
        self.progress, self.log = progress, log
        self.strategy = distribute.make_strategy(config.train.strategy, config.train.shard_bytes)
        self.replicas = self.strategy.num_replicas_in_sync
        self.batches = Batches.of(prepared, config, self.replicas)
        self.mode = training_mode(prepared, config)
        files = sampled_files(prepared, config, self.batches)  # checked before building
        self.steps_per_epoch = steps = files.steps if files else self.batches.steps
        with self.strategy.scope():
            self.optimizers = {"optimizer": _optimizer(config, steps, start_step)}
            if prepared.sentence_encoder is not None:
                self.optimizers["text_optimizer"] = tf.keras.optimizers.Adam(
                    config.text.learning_rate)
            self.trained = build(prepared, config, self.optimizers)
            self.variables = trainable_variables(self.trained)
            # its slots now, not in the first step: the step is traced once, not twice (a
            # tf.function creating variables is traced again), and a warm start can fill them
            for name, variables in zip(("optimizer", "text_optimizer"), self.variables):
                if name in self.optimizers:
                    self.optimizers[name].build(variables)
            self.starts_trained = init is not None  # validated before its first step
            if init is not None:  # e.g. a warm start's weights (a resumed run restores over them)
                init(self.trained, self.optimizers["optimizer"], self.variables[0])
            self.objective = Objective(prepared, config, self.trained, self.batches)
        self.graphs = files or (
            SampledGraph(self.trained.sampler, config.sample.parallel) if self.mode == "sampled"
            else FullGraph(self.trained.graph))
        self.metric = config.eval.early_stop
        ckpt = self.trained.checkpoint
        self.resume_from = run.latest_checkpoint()  # checked: TfrecError naming a damaged file
        self.latest = tf.train.CheckpointManager(ckpt, str(run.checkpoints), max_to_keep=2)
        self.best = tf.train.CheckpointManager(ckpt, str(run.checkpoints / "best"),
                                               max_to_keep=1)
        self.step = self._step_function()
        self.runner = None if config.train.strategy == "default" else distribute.runner(
            self.strategy, self.step, self._signature(self.batches.batch // self.replicas),
            None if self.mode == "sampled" else self.trained.graph)

    def _signature(self, rows: int) -> dict:
        """{input name: tf.TypeSpec} of a step's inputs for `rows` pairs (`_shares`)."""
        f = self.config.text.finetune_items if self.prepared.sentence_encoder is not None else 0
        pairs = tf.TensorSpec([rows], tf.int32)
        signature = {"u_rows": pairs, "i_rows": pairs, "labels": tf.TensorSpec([rows], tf.float32),
                     "fresh": tf.TensorSpec([f], tf.int32)}
        if self.mode == "sampled":  # subgraphs change size every step: one trace for all
            signature.update(graph=self.trained.graph.spec.relax(num_nodes=True, num_edges=True),
                             candidates=tf.TensorSpec([None], tf.int32),
                             item_rows=tf.TensorSpec([None], tf.int32))
        return signature

    def _step_function(self):
        """One optimisation step: on one device a tf.function (XLA-compiled with train.xla);
        under a strategy the step of one replica, minimising its share of the mean loss."""
        t, model = self.config.train, self.trained.model
        other, text_vars = self.variables
        optimizer, text_optimizer = self.optimizers["optimizer"], \
            self.optimizers.get("text_optimizer")
        scale = t.mixed_precision
        if scale:
            optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
        replicas = self.replicas

        def step(graph, u_rows, i_rows, labels, fresh, candidates=None, item_rows=None):
            with tf.GradientTape() as tape:
                e = model.embed(graph, training=True, fresh_items=fresh)
                losses = self.objective(e, u_rows, i_rows, labels, candidates, item_rows)
                loss = losses["total"] / replicas if replicas > 1 else losses["total"]
                loss = optimizer.get_scaled_loss(loss) if scale else loss
            grads = tape.gradient(loss, other + text_vars)
            if scale:
                grads = optimizer.get_unscaled_gradients(grads)
            optimizer.apply_gradients(zip(grads[:len(other)], other))
            if text_vars:
                text_optimizer.apply_gradients(zip(grads[len(other):], text_vars))
            return losses

        # traced without AutoGraph: the step's Python control flow depends on shapes and the
        # config, never on tensor values, and converting the GNN's and heads' code was most of
        # the trace (bench/step_tracing.py); TFRS's Retrieval, which needs it, converts itself
        # (tfrec.heads.retrieval)
        if t.strategy != "default":
            return tf.autograph.experimental.do_not_convert(step)
        signature = None
        if self.mode == "sampled":
            s = self._signature(self.batches.batch)
            signature = [s[k] for k in ("graph", "u_rows", "i_rows", "labels", "fresh",
                                        "candidates", "item_rows")]
        # optimised without the Grappler passes that cost the first call seconds on CPU
        # and buy nothing there (tfrec.train.grappler)
        return lean(tf.function(step, jit_compile=t.xla, input_signature=signature,
                                autograph=False))

    def fit(self) -> tuple[Trained, FitReport]:
        """Trains until train.epochs or early stopping; returns the best epoch's model."""
        t, ckpt = self.config.train, self.trained.checkpoint
        resumed = self._restore()
        stopped = int(ckpt.bad_epochs.numpy()) >= t.patience  # an early-stopped run is complete
        board = Board(self.run.logs)
        bar = _progress(t.epochs, resumed, self.progress)
        seconds, epoch = [], resumed
        if self.starts_trained and not resumed and not stopped:
            # "epoch 0": the warm-started model as it comes, before any step, so the best
            # checkpoint is never worse than the starting point (and may be it)
            valid = self._validate()
            board.epoch(0, {}, self._learning_rate(), valid)
            self._checkpoint(0, valid[self.metric])
            self._write(bar, f"epoch   0  (before any step)  valid {self.metric} "
                        f"{valid[self.metric]:.4f}  *")
        for epoch in range(resumed + 1, (resumed if stopped else t.epochs) + 1):
            start = time.perf_counter()
            means = self._train_epoch(epoch, bar)
            self.trained.model.refresh_text(self.trained.graph)
            seconds.append(time.perf_counter() - start)
            valid = self._validate()
            board.epoch(epoch, means, self._learning_rate(), valid)
            improved = self._checkpoint(epoch, valid[self.metric])
            bar.update(1)
            bar.set_postfix(loss=f"{means['total']:.4f}", valid=f"{valid[self.metric]:.4f}")
            self._write(bar, f"epoch {epoch:3d}  loss {means['total']:.4f}  valid {self.metric} "
                        f"{valid[self.metric]:.4f}  {seconds[-1]:.1f}s"
                        + ("  *" if improved else ""))
            if int(ckpt.bad_epochs.numpy()) >= t.patience:
                self._write(bar, f"early stop: no better {self.metric} for {t.patience} epochs")
                break
        bar.close()
        if self.mode == "sampled":
            self.graphs.close()
        restore_best(self.trained, self.run)
        report = FitReport(int(ckpt.best_epoch.numpy()), float(ckpt.best.numpy()), epoch,
                           float(np.mean(seconds)) if seconds else 0.0, resumed, self.mode)
        return self.trained, report

    def _restore(self) -> int:
        """Resumes from the latest checkpoint; returns the epoch it holds (0 = fresh)."""
        ckpt = self.trained.checkpoint
        if not self.resume_from:
            return 0
        ckpt.restore(self.resume_from).expect_partial()
        resumed = int(ckpt.epoch.numpy())
        self.log(f"resuming {self.run.path} after epoch {resumed} (best {self.metric} "
                 f"{float(ckpt.best.numpy()):.4f} at epoch {int(ckpt.best_epoch.numpy())})")
        return resumed

    def _fresh(self, items, rng: np.random.Generator) -> np.ndarray:
        """[text.finetune_items] int32 distinct items of `items` whose text a step re-encodes
        with gradients ([0] without fine-tuning)."""
        if self.prepared.sentence_encoder is None:
            return np.zeros([0], np.int32)
        return _fresh_items(np.asarray(items), self.config.text.finetune_items, rng)

    def _shares(self, epoch: int, replicas: range) -> tf.data.Dataset:
        """The step inputs of `replicas` (a range of global replica ids) for each step of
        `epoch`, step by step, for tf.distribute's runners: replica r's share is rows
        [r b, (r + 1) b) of the batch, b = B / R (R = num_replicas_in_sync), {"u_rows",
        "i_rows", "labels", "fresh"}, on the full graph; sampled, on the subgraph drawn around
        the share (SampledGraph.subgraphs), or the examples of sample.examples, sharded by
        input pipeline (SampledFiles.shares)."""
        if isinstance(self.graphs, SampledFiles):
            return self.graphs.shares(epoch, self.objective, replicas, self.replicas,
                                      self._signature(1)["fresh"].shape[0])
        rng = np.random.default_rng([self.config.train.seed, epoch, 1])
        b = self.batches.batch // self.replicas
        shares = []
        for u, i, y in self.batches.epoch(epoch):
            for rows in (slice(r * b, (r + 1) * b) for r in replicas):
                shares.append({"u_rows": u[rows], "i_rows": i[rows], "labels": y[rows],
                               "fresh": self._fresh(i[rows], rng)})
        data = tf.data.Dataset.from_tensor_slices(
            {k: np.stack([s[k] for s in shares]) for k in shares[0]})
        return self.graphs.subgraphs(data, self.objective) if self.mode == "sampled" else data

    def _steps(self, epoch: int):
        """Runs the steps of `epoch`, yielding each one's losses {name: scalar}: on the
        strategy's replicas, or on one device from `self.graphs` (the full graph, or the
        sampled subgraphs of its tf.data pipeline or of sample.examples)."""
        if self.runner is not None:
            yield from self.runner.epoch(lambda replicas: self._shares(epoch, replicas),
                                         self.steps_per_epoch)
            return
        rng = np.random.default_rng([self.config.train.seed, epoch, 1])
        for view, y, candidates in self.graphs.epoch(self.batches, epoch, self.objective):
            yield self.step(view.graph, tf.convert_to_tensor(view.users),
                            tf.convert_to_tensor(view.items), tf.convert_to_tensor(y),
                            tf.constant(self._fresh(view.items, rng)), candidates,
                            view.item_rows)

    def _train_epoch(self, epoch: int, bar) -> dict[str, float]:
        """Runs the steps of `epoch`; returns the mean of each loss component."""
        sums: dict[str, float] = {}
        s = -1
        for s, losses in enumerate(self._steps(epoch)):
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if not math.isfinite(sums["total"]):
                bar.close()
                raise TrainingDiverged(
                    f"the training loss became {sums['total']} at epoch {epoch}, step {s + 1}; "
                    f"training stopped and {self.run.kept_checkpoint_note()}: lower "
                    "train.learning_rate and train into a new --run-dir")
        return {k: v / (s + 1) for k, v in sums.items()}

    def _validate(self) -> dict[str, float]:
        scores = embedding_score_fn(*embeddings(self.trained))
        return evaluate(scores, self.prepared, self.config.eval.ks, splits=("valid",))["valid"]

    def _learning_rate(self) -> float:
        opt = self.optimizers["optimizer"]
        lr = opt.learning_rate
        return float(lr(opt.iterations) if callable(lr) else lr)

    def _checkpoint(self, epoch: int, score: float) -> bool:
        """Saves the epoch (and the best one); returns whether `score` improved on the best."""
        ckpt = self.trained.checkpoint
        ckpt.epoch.assign(epoch)
        improved = score > float(ckpt.best.numpy())
        if improved:
            ckpt.best.assign(score)
            ckpt.best_epoch.assign(epoch)
            ckpt.bad_epochs.assign(0)
            self.best.save(checkpoint_number=epoch)
        else:
            ckpt.bad_epochs.assign_add(1)
        self.latest.save(checkpoint_number=epoch)
        return improved

    def _write(self, bar, line: str) -> None:
        if self.progress:
            bar.write(line)
        else:
            self.log(line)


def fit(prepared: Prepared, config: Config, run: RunDir, progress: bool = True,
        log=lambda line: print(line, flush=True), init=None,
        start_step: int = 0) -> tuple[Trained, FitReport]:
    """Trains until `train.epochs` or early stopping; returns the best epoch's model.
    init: optional callable (Trained, optimizer, its variables) on the freshly built model and
    optimizer (slots built) before the first step, whose result is validated and checkpointed
    as epoch 0 (a warm start: the best epoch may be 0, the model it began with); start_step: the step the optimizer's
    learning-rate schedule counts from (a warm start's old step count)."""
    return Trainer(prepared, config, run, progress, log, init, start_step).fit()


def trainable_variables(trained: Trained) -> tuple[list, list]:
    """(the variables train.optimizer updates: the model's and the ranking head's, in a fixed
    order; the fine-tuned sentence encoder's, updated by the text optimizer)."""
    backbone = trained.model.sentence_encoder
    text_vars = backbone.trainable_variables if backbone is not None else []
    text_ids = {id(v) for v in text_vars}
    other = [v for v in trained.model.trainable_variables if id(v) not in text_ids]
    other += trained.ranking.trainable_variables if trained.ranking is not None else []
    return other, text_vars


def restore_best(trained: Trained, run: RunDir) -> None:
    trained.checkpoint.restore(run.best_checkpoint()).expect_partial()


def _progress(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="epoch",
                disable=None if enabled else True, leave=False, dynamic_ncols=True)
