"""The run configuration: frozen dataclasses, one per section of a TOML config file.

A config file has up to nine sections, each optional, each key optional (defaults below):

    [model]  kind = "gnn", dim = 64, conv = "lightgcn", layers = 3, ...
    [text]   mode = "frozen", sequence_length = 32, batch_size = 128
    [train]  epochs = 40, batch_size = 8192, learning_rate = 0.01, ...
    [split]  method = "random", ratios = [0.8, 0.1, 0.1], seed = 0
    [eval]   ks = [10, 20], early_stop = "ndcg@20"
    [sample] fanouts = [10, 10, 5], auto_edges = 200000, inference = "auto", parallel = 1, ...
    [search] strategy = "evolution", trials = 20, conv = ["lightgcn", ...], ... (tfrec search)
    [blend]  item_item = "off", regs = [50.0, ...], alphas, betas, weights = [...], methods = [...], max_items
    [fresh]  prior = "auto", recency = [0.5, 1.0, ...], newness = [0.5, 1.0, ...] (warm runs)

An unknown section or key, a wrong type or an impossible value (NaN and infinities included)
fails before anything runs with one sentence naming the key: each section is a `Validated`
dataclass (tfrec.config_fields) that checks itself when constructed, from a file or in code.
`tfrec train --print-config` prints the full default config.
"""

import dataclasses
import json
import re
import tomllib
import typing
from pathlib import Path

from tfrec.config_fields import Validated
from tfrec.config_fields import bounded as _range
from tfrec.config_fields import choice as _choice
from tfrec.data.splits import SEED_MAX, SplitConfig
from tfrec.errors import TfrecError
from tfrec.paths import read_text
from tfrec.text.config import TextConfig


@dataclasses.dataclass(frozen=True)
class ModelConfig(Validated):
    """kind: "gnn" (tfrec's model), "mf" (ID-only matrix factorisation) or "popularity".
    conv: the message-passing layer: "lightgcn" (normalised sum, no weights), "sage"
    (GraphSAGE), "gatv2" (GATv2 attention) or "mt_albis" (TF-GNN's MtAlbis template).
    combine: how layer outputs (the input state included) form the embedding: mean/last/sum.
    normalize: L2-normalise user and item embeddings, so scores are cosine similarities.
    use_text / use_kg / use_features: ablations (drop text, the knowledge graph, other features).
    text_input: "all": every item's initial state includes its projected text (text is evidence
    for all items); "cold": only users/items without training interactions get it (warm ones
    rely on ID, features and graph; the alignment head still trains the projection).
    edge_gates: KG relation types and interaction features gate each edge's message.
    item_bias: a learned per-item offset added to every user's score of the item (popularity;
    with normalised embeddings the cosine alone cannot express it).
    members: K trainings of the model (train.seed, seed + 1, ..., seed + K - 1: other inits and
    batch orders, the same data) scored as one: the mean of their dot products, i.e. one dot
    product of the members' concatenated [U, K*D] / K and [I, K*D] tables (tfrec.train.members)."""

    kind: str = _choice("gnn", "mf", "popularity")
    dim: int = _range(64, 4, 4096)
    conv: str = _choice("lightgcn", "sage", "gatv2", "mt_albis")
    layers: int = _range(3, 0, 8)
    hidden: int = _range(64, 4, 4096)
    heads: int = _range(4, 1, 32)
    activation: str = _choice("relu", "gelu", "tanh", "linear")
    dropout: float = _range(0.0, 0.0, 0.9)
    normalization: str = _choice("none", "layer")
    residual: bool = False
    combine: str = _choice("mean", "last", "sum")
    normalize: bool = True
    use_text: bool = True
    use_kg: bool = True
    use_features: bool = True
    text_input: str = _choice("all", "cold")
    edge_gates: bool = True
    item_bias: bool = True
    members: int = dataclasses.field(default=1, metadata={
        "range": (1, 64, None), "note": "trainings averaged (seeds train.seed + 0 ... K - 1)"})

    SECTION = "model"

    def check(self):
        if self.members > 1 and self.kind == "popularity":
            raise TfrecError(f"config key model.members is {self.members}, but model.kind "
                             "\"popularity\" has nothing to train: set members = 1")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Validated):
    """Retrieval loss: TFRS Retrieval with in-batch negatives (the other rows of a `chunk` of
    the batch) plus `negatives` sampled items ("all" = every item: a full softmax for small
    catalogues), accidental hits removed,
    scores divided by `temperature`. Loss = retrieval + ranking_weight * ranking (rating
    regression, or purchase classification for implicit data) + align_weight * text/graph
    alignment. align_mode "both": text and graph embeddings pull towards each other (the text is
    a prior on the graph; good when it describes what users choose); "text": only the text
    projection moves towards the graph embedding (the cold-start path, warm items untouched).
    logq applies to sampled negatives only (`negatives` a number): each in-batch candidate's
    logit is corrected by the log of how often it is a positive (its chance of being drawn as
    a negative). With negatives = "all" every item is a candidate, the in-batch ones are masked
    and the loss is an exact softmax: there is nothing to correct. "auto" (the default) is on
    for sampled negatives and off for "all"; true together with "all" is refused.
    weight_decay is L2 on the layer-0 states of the batch's users and items.
    optimizer "lazy_adam": Adam that moves only the rows of the ID (and categorical) tables a
    step read (tfrec.train.optimizers): a step costs O(batch), not O(users + items).
    mode: "full" embeds the whole training graph every step; "sampled" embeds a subgraph
    sampled around the batch's users and items ([sample], tfrec.data.sampling); "auto" samples
    when the training interactions exceed sample.auto_edges.
    warm_learning_rate, warm_patience: learning_rate and patience of a run that starts from an
    old run's weights (`tfrec train --warm-start`), 0 meaning the same as from scratch: such a
    run starts near its best and usually wants smaller steps and less waiting.
    strategy: the tf.distribute strategy of the training steps (tfrec.train.distribute):
    "default" (one device), "mirrored" (this host's GPUs, else its logical CPU devices),
    "multi_worker" (synchronous over the hosts of TF_CONFIG) or "parameter_server" (TF_CONFIG's
    workers train, its ps tasks hold the variables, cut along their rows into shards of at
    least shard_bytes, one per ps task at most)."""

    epochs: int = _range(40, 1, 100000)
    batch_size: int = _range(8192, 1, 1 << 20)
    learning_rate: float = _range(0.01, 1e-7, 10.0)
    schedule: str = _choice("cosine", "constant", "exponential")
    # lazy_adam, chosen on VALIDATION: MovieLens-100K, configs/movielens.toml with [train]
    # mode = "sampled", epochs = 15, [blend] off, split seed 0: valid NDCG@20 0.27441 against
    # Adam's 0.27439 (per epoch within 0.0007 all along); a full-graph step gathers every row,
    # so there it is Adam (float rounding only): same valid NDCG@20 for configs/movielens.toml
    # and the e-commerce default. Its step costs O(batch) rows, Adam's O(users + items).
    optimizer: str = _choice("lazy_adam", "adam", "adamw", "sgd")
    weight_decay: float = _range(0.05, 0.0, 1.0)
    temperature: float = _range(0.3, 1e-3, 100.0)
    negatives: str = "all"
    chunk: int = _range(1024, 1, 1 << 20)
    logq: bool | str = dataclasses.field(default="auto", metadata={
        "note": 'true, false or "auto"; applies to sampled negatives only, not "all"'})
    ranking_weight: float = _range(0.1, 0.0, 100.0)
    align_weight: float = _range(0.1, 0.0, 100.0)
    align_mode: str = _choice("both", "text")
    patience: int = _range(5, 1, 10000)
    warm_learning_rate: float = dataclasses.field(default=0.0, metadata={
        "range": (0.0, 10.0, None), "note": "of a --warm-start run; 0: learning_rate"})
    warm_patience: int = dataclasses.field(default=0, metadata={
        "range": (0, 10000, None), "note": "of a --warm-start run; 0: patience"})
    seed: int = _range(0, 0, SEED_MAX)
    mixed_precision: bool = False
    xla: bool = False
    mode: str = dataclasses.field(default="auto", metadata={
        "choices": ("auto", "full", "sampled"),
        "note": '"full" graph, "sampled" subgraphs, or "auto" (by sample.auto_edges)'})
    strategy: str = dataclasses.field(default="default", metadata={
        "choices": ("default", "mirrored", "multi_worker", "parameter_server"),
        "note": '"default" (one device), "mirrored", "multi_worker" or "parameter_server" '
                '(the last two read TF_CONFIG)'})
    shard_bytes: int = dataclasses.field(default=256 << 10, metadata={
        "range": (1, None, None),
        "note": "parameter_server: smallest shard of a variable, cut along its rows"})

    SECTION = "train"

    def check(self):
        if self.xla and self.strategy != "default":
            raise TfrecError(f"train.xla = true compiles the one-device step, but train.strategy "
                             f"is {self.strategy!r}: set xla = false to train distributed")
        if self.negatives != "all" and not (re.fullmatch(r"[0-9]+", self.negatives)
                                            and int(self.negatives) > 0):
            raise TfrecError(f"config key train.negatives is {self.negatives!r}, but it must be "
                             "\"all\" or a number of sampled items such as \"256\"")
        if self.logq not in (True, False, "auto"):
            raise TfrecError(f"config key train.logq is {self.logq!r}, but it must be true, "
                             "false or \"auto\"")
        if self.logq is True and self.negatives == "all":
            raise TfrecError("train.logq = true corrects sampled negatives, but train.negatives is "
                             "\"all\" (an exact softmax over every item, nothing to correct): "
                             "set negatives to a number such as \"256\", or logq to \"auto\"")

    @property
    def applies_logq(self) -> bool:
        """Whether the logQ correction is on: sampled negatives, and logq true or "auto"."""
        return self.negatives != "all" and self.logq is not False


@dataclasses.dataclass(frozen=True)
class SampleConfig(Validated):
    """Subgraph sampling (train.mode "sampled", or "auto" above auto_edges training
    interactions): TF-GNN's in-memory sampler draws, uniformly at random, up to fanouts[h] edges
    of every edge set out of each node reached at hop h, from the batch's users and items.
    Fewer hops than model.layers leave the outer layers only the sampled neighbourhood.
    inference: how validation, test and export embed users and items: "full" (one pass over
    the whole graph), "sampled" (batches of inference_batch users or items, each from its
    sampled neighbourhood with these fanouts; tfrec.train.inference) or "auto" ("sampled"
    above auto_edges training interactions). examples: "" = sampled training draws its
    subgraphs in memory; else a folder written by `tfrec data sample` (TF-GNN's Beam sampler,
    same schema, split and fanouts) whose examples it reads instead, one pass an epoch.
    parallel: how many batches' subgraphs the training pipeline samples at once (tf.data map
    calls in flight, ahead of the step; in batch order either way). 1 draws the same subgraphs
    run after run; more use more cores, but the sampler's random stream is then shared in
    thread order, so the draws are no longer reproducible."""

    fanouts: tuple[int, ...] = dataclasses.field(default=(10, 10, 5), metadata={
        "range": (1, 10000, None), "note": "edges per node and edge set, one number per hop"})
    auto_edges: int = _range(200_000, 1)
    inference: str = dataclasses.field(default="auto", metadata={
        "choices": ("auto", "full", "sampled"),
        "note": '"full" graph, "sampled" neighbourhoods, or "auto" (by auto_edges)'})
    inference_batch: int = _range(4096, 1, 1 << 20)
    parallel: int = dataclasses.field(default=1, metadata={
        "range": (1, 64, None), "note": "subgraphs sampled at once (1: reproducible draws)"})
    examples: str = dataclasses.field(default="", metadata={
        "note": '"" (sample in memory) or a `tfrec data sample --out` folder to train from'})

    SECTION = "sample"

    def check(self):
        if not 1 <= len(self.fanouts) <= 8:
            raise TfrecError(f"config key sample.fanouts is {list(self.fanouts)}, but it must "
                             "list 1 to 8 hops, such as [10, 10, 5]")


@dataclasses.dataclass(frozen=True)
class SearchConfig(Validated):
    """`tfrec search`: the designs it tries and how. The space is one list of values per model
    or train key it searches (conv, layers, dim, combine, dropout, residual, normalization,
    use_text, use_kg: [model]; temperature, learning_rate: [train]); a one-value list fixes
    the key. Keys a conv does not use are searched only with the convs that use them: dropout
    with sage/gatv2/mt_albis, residual with lightgcn/gatv2/mt_albis, normalization with
    mt_albis. strategy: "evolution" (regularised evolution: the last `population` finished
    trials; a child mutates one choice of the best of `sample` of them drawn at random),
    "random" or "bayesian" (Keras Tuner's oracles). Each trial trains at most `epochs` with
    `patience`, scored on the VALIDATION split (eval.early_stop); from epoch median_stop + 1
    on, a trial whose best so far is below the median of the finished trials' at the same
    epoch stops (0 = never). trials and budget_minutes (0 = none) bound the search; no trial
    starts after the budget."""

    strategy: str = dataclasses.field(default="evolution", metadata={
        "choices": ("evolution", "random", "bayesian"),
        "note": "regularised evolution, or Keras Tuner's random / Bayesian oracle"})
    trials: int = _range(20, 1, 100000)
    budget_minutes: float = dataclasses.field(default=0.0, metadata={
        "range": (0.0, 1e6, None), "note": "no trial starts after this (0 = no limit)"})
    epochs: int = dataclasses.field(default=20, metadata={
        "range": (1, 100000, None), "note": "per trial (its train.epochs; patience likewise)"})
    patience: int = _range(3, 1, 10000)
    median_stop: int = dataclasses.field(default=2, metadata={
        "range": (0, 10000, None),
        "note": "after this epoch, stop a trial below the median of finished ones (0 = never)"})
    population: int = dataclasses.field(default=8, metadata={
        "range": (2, 10000, None), "note": "evolution: the last finished trials that breed"})
    sample: int = dataclasses.field(default=3, metadata={
        "range": (1, 10000, None), "note": "evolution: tournament size (the best one breeds)"})
    seed: int = _range(0, 0, SEED_MAX)
    conv: tuple[str, ...] = dataclasses.field(default=("lightgcn", "sage", "gatv2", "mt_albis"),
                                              metadata={"note": "the space: values tried per key"})
    layers: tuple[int, ...] = (1, 2, 3)
    dim: tuple[int, ...] = (32, 64, 128)
    combine: tuple[str, ...] = ("mean", "last", "sum")
    dropout: tuple[float, ...] = dataclasses.field(default=(0.0, 0.2), metadata={
        "note": "with sage, gatv2, mt_albis"})
    residual: tuple[bool, ...] = dataclasses.field(default=(False, True), metadata={
        "note": "with lightgcn, gatv2, mt_albis"})
    normalization: tuple[str, ...] = dataclasses.field(default=("none", "layer"), metadata={
        "note": "with mt_albis"})
    use_text: tuple[bool, ...] = (True, False)
    use_kg: tuple[bool, ...] = (True, False)
    temperature: tuple[float, ...] = (0.1, 0.3, 1.0)
    learning_rate: tuple[float, ...] = (0.001, 0.005, 0.01)

    SECTION = "search"
    MODEL_KEYS: typing.ClassVar = ("conv", "layers", "dim", "combine", "dropout", "residual",
                                   "normalization", "use_text", "use_kg")
    TRAIN_KEYS: typing.ClassVar = ("temperature", "learning_rate")

    def check(self):
        for key in self.MODEL_KEYS + self.TRAIN_KEYS:
            values = getattr(self, key)
            if not values or len(set(values)) != len(values):
                raise TfrecError(f"config key search.{key} is {list(values)}, but it must list "
                                 "one or more different values")
            section = ModelConfig if key in self.MODEL_KEYS else TrainConfig
            for v in values:
                try:
                    section(**{key: v})
                except TfrecError as e:
                    reason = str(e).split(", but ", 1)[-1]
                    raise TfrecError(f"config key search.{key} lists {v!r}, but {reason}"
                                     ) from None
        if self.sample > self.population:
            raise TfrecError(f"config key search.sample is {self.sample}, but the tournament "
                             f"draws it from a population of search.population = "
                             f"{self.population}: make it at most that")


METRICS = ("recall", "ndcg", "precision", "hit", "mrr")


@dataclasses.dataclass(frozen=True)
class EvalConfig(Validated):
    """ks: the cut-offs every metric is computed at (on valid, test and the cold slice).
    early_stop: "<metric>@<k>", the validation metric that picks the best epoch and stops
    training (`train.patience` epochs without a gain); metric is one of recall, ndcg,
    precision, hit, mrr and k one of `ks`. Test metrics never choose anything."""

    ks: tuple[int, ...] = _range((10, 20), 1)
    early_stop: str = dataclasses.field(default="ndcg@20", metadata={
        "note": "<metric>@<k> on valid: picks the best epoch and stops training"})

    SECTION = "eval"

    def check(self):
        if not self.ks:
            raise TfrecError("config key eval.ks is [], but it must list cut-offs such as [10, 20]")
        match = re.fullmatch(r"([a-z]+)@([1-9][0-9]*)", self.early_stop)
        metric, k = match.groups() if match else ("", "0")
        if metric not in METRICS:
            raise TfrecError(f"eval.early_stop is {self.early_stop!r}, but it must be "
                             f"<metric>@<k> with a metric among {', '.join(METRICS)}, such as "
                             "\"ndcg@20\"")
        if int(k) not in self.ks:
            raise TfrecError(f"eval.early_stop is {self.early_stop!r}, but {int(k)} is not one of "
                             f"eval.ks {list(self.ks)}: add it to eval.ks or stop on a metric at "
                             f"one of them, such as \"{metric}@{max(self.ks)}\"")


@dataclasses.dataclass(frozen=True)
class BlendConfig(Validated):
    """An item-item component blended with the trained model (tfrec.evaluate.blend), fitted at
    the end of `tfrec train` on the TRAINING interactions. item_item "ease": B = Id - P /
    diag(P), P = (X^T X + reg Id)^-1, for each reg of regs; "rp3beta": the random walk
    item -> user -> item, its steps raised to alpha, the target's popularity dividing by
    n_j^beta, for each (alpha, beta) of alphas x betas (tfrec.evaluate.item_item); a user's
    item-item scores are their training history times B. Both models' scores are put on one per-user scale (method
    "zscore": standardised; "rank": rank position over I - 1; "max": divided by the largest
    |score|) and mixed as (1 - weight) * model + weight * item-item. Every (reg, method, weight) of the lists is tried on the VALIDATION
    split (eval.early_stop); the best one is what `tfrec evaluate` and the exported SavedModel
    rank with, or the model alone if none beats it. The dense [I, I] matrix is refused above
    max_items items. Changing only this section on a finished run and training it again
    refits the blend, the model's training is kept."""

    item_item: str = dataclasses.field(default="off", metadata={
        "choices": ("off", "ease", "rp3beta"),
        "note": '"off" (the model alone), "ease" or "rp3beta" (a closed-form item-item model '
                'blended in)'})
    regs: tuple[float, ...] = dataclasses.field(
        default=(50.0, 100.0, 250.0, 500.0, 1000.0),
        metadata={"range": (1e-6, 1e9, None), "note": "EASE ridge values tried on valid"})
    alphas: tuple[float, ...] = dataclasses.field(
        default=(0.6, 0.8, 1.0),
        metadata={"range": (1e-3, 10.0, None), "note": "RP3beta walk exponents tried on valid"})
    betas: tuple[float, ...] = dataclasses.field(
        default=(0.5, 0.6, 0.7, 0.8),
        metadata={"range": (0.0, 10.0, None),
                  "note": "RP3beta popularity exponents tried on valid"})
    weights: tuple[float, ...] = dataclasses.field(
        default=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0),
        metadata={"range": (0.0, 1.0, None),
                  "note": "item-item weights tried on valid (the model alone is always tried)"})
    methods: tuple[str, ...] = dataclasses.field(default=("zscore", "rank", "max"), metadata={
        "note": 'per-user scales tried on valid: "zscore", "rank", "max"'})
    max_items: int = dataclasses.field(default=10000, metadata={
        "range": (1, 100000, None), "note": "refuse a dense items x items matrix above this"})

    SECTION = "blend"

    def check(self):
        for key in ("regs", "alphas", "betas", "weights", "methods"):
            values = getattr(self, key)
            if not values or len(set(values)) != len(values):
                raise TfrecError(f"config key blend.{key} is {list(values)}, but it must list "
                                 "one or more different values")
        bad = [m for m in self.methods if m not in ("zscore", "rank", "max")]
        if bad:
            raise TfrecError(f"config key blend.methods lists {bad[0]!r}, but each must be "
                             "\"zscore\", \"rank\" or \"max\"")


@dataclasses.dataclass(frozen=True)
class FreshConfig(Validated):
    """The recency prior of a warm run (`tfrec train --warm-start`; tfrec.train.recency_prior):
    a per-item term w * log(1 + n_i) + v * new_i added to the retrieval score (folded into the
    item bias), n_i the item's training pairs the update added to the old run's, new_i 1 for
    the items first trained in it. Every (w, v) of recency x newness, and (0, 0), no prior, is
    tried on the VALIDATION split (eval.early_stop) before the blend is chosen; the best is
    what the run evaluates and exports. prior "off" never adds one (nor does a run without
    --warm-start). Changing only this section on a finished run and training it again refits
    the prior, the model's training is kept."""

    prior: str = dataclasses.field(default="auto", metadata={
        "choices": ("auto", "off"),
        "note": '"auto" (warm runs: chosen on valid, none if it does not help) or "off"'})
    recency: tuple[float, ...] = dataclasses.field(
        default=(0.5, 1.0, 2.0, 3.0, 4.0, 6.0),
        metadata={"range": (0.0, 100.0, None),
                  "note": "weights w of log(1 + the item's added training pairs) tried on valid"})
    newness: tuple[float, ...] = dataclasses.field(
        default=(0.5, 1.0, 2.0, 3.0, 4.0),
        metadata={"range": (0.0, 100.0, None),
                  "note": "weights v of the items first trained in the update tried on valid "
                          "(w = v = 0 is always tried)"})

    SECTION = "fresh"

    def check(self):
        for key in ("recency", "newness"):
            values = getattr(self, key)
            if not values or len(set(values)) != len(values):
                raise TfrecError(f"config key fresh.{key} is {list(values)}, but it must list "
                                 "one or more different values")


@dataclasses.dataclass(frozen=True)
class Config(Validated):
    model: ModelConfig = ModelConfig()
    text: TextConfig = TextConfig()
    train: TrainConfig = TrainConfig()
    split: SplitConfig = SplitConfig()
    eval: EvalConfig = EvalConfig()
    sample: SampleConfig = SampleConfig()  # after the others: positional construction keeps
    search: SearchConfig = SearchConfig()  # their order
    blend: BlendConfig = BlendConfig()
    fresh: FreshConfig = FreshConfig()

    @classmethod
    def key(cls, name: str) -> str:
        return f"config section [{name}]"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def config_from_dict(values: dict) -> Config:
    """The Config of a mapping {section: {key: value}} (a parsed TOML file)."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(sections))
    if unknown:
        raise TfrecError(f"unknown config section [{unknown[0]}] (known: {', '.join(sections)})")
    return Config(**{name: sections[name].type.from_mapping(section)
                     for name, section in values.items()})


def load_config(path: str | Path | None) -> Config:
    """The Config in the TOML file at `path` (defaults for what it leaves out; None = defaults)."""
    if path is None:
        return Config()
    path = Path(path)
    text = read_text(path, "config file")
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TfrecError(f"config file {path} is not valid TOML: {e}") from None
    try:
        return config_from_dict(values)
    except TfrecError as e:
        raise TfrecError(f"{path}: {e}") from None


def to_toml(config: Config) -> str:
    """The config as TOML text (what `--print-config` prints)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if v is None:
            return '""'
        return json.dumps(v)

    notes = {(s.name, f.name): f"  # {f.metadata['note']}" for s in dataclasses.fields(config)
             for f in dataclasses.fields(getattr(config, s.name)) if "note" in f.metadata}
    out = []
    for section, values in config.to_dict().items():
        out.append(f"[{section}]")
        out += [f"{k} = {value(v)}{notes.get((section, k), '')}" for k, v in values.items()
                if v is not None]
        out.append("")
    return "\n".join(out)
