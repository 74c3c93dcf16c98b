"""The search space: [search] (tfrec.config.SearchConfig) as Keras Tuner HyperParameters, and
a trial's values as the tfrec Config it trains.

Each searched key is a hyperparameter of the same name ("conv", "layers", ..., "temperature"):
a Choice (numbers ordered, so the Bayesian oracle sees their order), a Boolean, or Fixed for a
one-value list. dropout, residual and normalization are conditional on conv (only the convs
that use them), so no trial differs from another in a value its model ignores.
"""

import dataclasses

import keras_tuner as kt

from tfrec.config import Config, SearchConfig
from tfrec.errors import TfrecError

USED_BY = {"dropout": ("sage", "gatv2", "mt_albis"),  # LightGCN has no weights to drop
           "residual": ("lightgcn", "gatv2", "mt_albis"),  # GraphSAGE here has no residual
           "normalization": ("mt_albis",)}  # only MtAlbis has a layer-norm option


def hyperparameters(search: SearchConfig) -> kt.HyperParameters:
    """The declared space, conv first (the parent of the conditional keys)."""
    hp = kt.HyperParameters()
    for key in SearchConfig.MODEL_KEYS + SearchConfig.TRAIN_KEYS:
        values = list(getattr(search, key))
        parents = [c for c in USED_BY.get(key, search.conv) if c in search.conv]
        if not parents:  # no searched conv uses it: the base config's value stands
            continue
        condition = dict(parent_name="conv", parent_values=parents) \
            if len(parents) < len(search.conv) else {}
        if len(values) == 1:
            hp.Fixed(key, values[0], **condition)
        elif isinstance(values[0], bool):
            hp.Boolean(key, default=values[0], **condition)
        else:
            hp.Choice(key, values, ordered=not isinstance(values[0], str), **condition)
    return hp


def options(hp) -> list:
    """The values a hyperparameter may take."""
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return [False, True]
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return [hp.value]
    return list(hp.values)


def trial_config(base: Config, values: dict) -> Config:
    """`base` with a trial's values (model and train keys) and the per-trial epochs and
    patience of base.search: the config a trial trains, and `tfrec train --config` repeats.
    A trial trains one model (model.members 1; best.toml gets the base's members back)."""
    s = base.search
    model = {k: v for k, v in values.items() if k in SearchConfig.MODEL_KEYS}
    train = {k: v for k, v in values.items() if k in SearchConfig.TRAIN_KEYS}
    return dataclasses.replace(
        base, model=dataclasses.replace(base.model, members=1, **model),
        train=dataclasses.replace(base.train, epochs=s.epochs, patience=s.patience, **train))


def check_base(base: Config, text_node_sets: int) -> None:
    """Refuses, in one sentence, a base config or schema the space cannot be searched on
    (`text_node_sets`: how many node sets of the schema carry text)."""
    s = base.search
    if base.model.kind != "gnn":
        raise TfrecError(f"tfrec search searches GNN designs, but model.kind is "
                         f"{base.model.kind!r}: set it to \"gnn\" in the --config file")
    if base.text.mode == "finetune":
        raise TfrecError("text.mode is \"finetune\", but search trials use the frozen text "
                         "embeddings prepared once per search: set text.mode to \"frozen\" "
                         "(fine-tune the winner afterwards)")
    if True in s.use_text and (base.text.mode == "off" or not text_node_sets):
        why = "text.mode is \"off\"" if base.text.mode == "off" else "the schema has no text"
        raise TfrecError(f"search.use_text lists true, but {why}: set search.use_text = "
                         "[false]")
