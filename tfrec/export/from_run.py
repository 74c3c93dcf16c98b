"""A finished run -> ExportArtifacts: the best checkpoint's embeddings, scorer, text encoder,
and the item-item blend chosen on valid (blend/), if the run has one."""

import dataclasses

import numpy as np

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.export.artifacts import ExportArtifacts
from tfrec.train.run_dir import RunDir


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A finished run's model at its best epoch, with the data it was prepared from."""

    run: RunDir
    config: Config
    prepared: object  # tfrec.train.prepare.Prepared
    trained: object  # tfrec.train.fit.Trained

    def embeddings(self):
        """(user [U, D], item [I, D], item bias [I] or None) as the run scores: its recency
        prior (fresh/, tfrec.train.recency_prior) folded into the item bias."""
        from tfrec.train.fit import embeddings
        from tfrec.train.recency_prior import with_prior

        user, item, bias = embeddings(self.trained)
        return user, item, with_prior(bias, self.run.read_item_prior())


def restore_run(run_dir: str) -> RestoredRun:
    """Rebuilds the run's model from its run.json and restores the best checkpoint."""
    from tfrec.train.fit import build, restore_best
    from tfrec.train.prepare import prepare

    run = RunDir(run_dir)
    schema, config = run.schema_and_config()
    if config.model.kind == "popularity":
        raise TfrecError(f"run {run_dir} is a popularity baseline, which has no embeddings to "
                         "export; train model.kind \"gnn\" or \"mf\"")
    prepared = prepare(schema, config, progress=False)
    trained = build(prepared, config)
    restore_best(trained, run)
    return RestoredRun(run, config, prepared, trained)


def load_artifacts(run_dir: str) -> ExportArtifacts:
    """The run's best model reduced to what serving needs (`artifacts_of`)."""
    return artifacts_of(restore_run(run_dir))


def artifacts_of(restored: RestoredRun) -> ExportArtifacts:
    """A restored run -> ExportArtifacts. Seen items are all of a user's known interactions
    (every split)."""
    from tfrec.evaluate.metrics import csr_from_pairs

    run, config, prepared, trained = (restored.run, restored.config, restored.prepared,
                                      restored.trained)
    user_emb, item_emb, item_bias = restored.embeddings()  # the recency prior in the bias
    s = prepared.data.schema
    indptr, indices = csr_from_pairs(prepared.split.pair_user, prepared.split.pair_item,
                                     prepared.num_users)
    text_encoder = None
    projection = trained.model.encoders[s.item_set].text
    if projection is not None and config.text.mode != "off":
        from tfrec.model.item_text import ItemTextEncoder
        from tfrec.text import SentenceEncoder

        scale = float(np.linalg.norm(item_emb, axis=1).mean())
        # the fine-tuned backbone if it trained, else the pretrained one the run embedded with
        sentence = trained.model.sentence_encoder or SentenceEncoder(config.text.sequence_length)
        text_encoder = ItemTextEncoder(sentence, projection, scale)
    metrics = run.metrics_file.read_text() if run.metrics_file.is_file() else "{}"
    import json

    return ExportArtifacts(
        user_ids=np.array(prepared.data.node_ids[s.user_set], dtype=object).astype(str),
        item_ids=np.array(prepared.data.node_ids[s.item_set], dtype=object).astype(str),
        item_titles=prepared.data.titles(s.item_set),  # the schema's display feature
        user_embeddings=user_emb, item_embeddings=item_emb, item_bias=item_bias,
        seen_indptr=indptr.astype(np.int64), seen_indices=indices.astype(np.int64),
        scorer=trained.ranking.scorer if trained.ranking is not None else None,
        text_encoder=text_encoder, blend=run.read_blend(prepared.csr("train")),
        metadata={"schema": s.path.read_text(encoding="utf-8"), "schema_path": str(s.path),
                  "config": config.to_dict(), "metrics": json.loads(metrics),
                  "run_dir": str(run.path)})
