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
    members: tuple = ()  # an ensemble's members 1 .. K-1 (Trained each; tfrec.train.members)

    def embeddings(self):
        """(user [U, D], item [I, D], item bias [I] or None) as the run scores: an ensemble's
        members combined (D = K * the members' width), its recency prior (fresh/,
        tfrec.train.recency_prior) folded into the item bias."""
        from tfrec.train.fit import embeddings
        from tfrec.train.members import combine
        from tfrec.train.recency_prior import with_prior

        user, item, bias = combine([embeddings(t) for t in (self.trained, *self.members)])
        return user, item, with_prior(bias, self.run.read_item_prior())


def restore_run(run_dir: str) -> RestoredRun:
    """Rebuilds the run's model from its run.json and restores the best checkpoint."""
    from tfrec.train.fit import build, restore_best
    from tfrec.train.members import restore_members
    from tfrec.train.prepare import prepare

    run = RunDir(run_dir)
    schema, config = run.schema_and_config()
    if config.model.kind == "popularity":
        raise TfrecError(f"run {run_dir} is a popularity baseline, which has no embeddings to "
                         "export; train model.kind \"gnn\" or \"mf\"")
    prepared = prepare(schema, config, progress=False)
    trained = build(prepared, config)
    restore_best(trained, run)
    return RestoredRun(run, config, prepared, trained,
                       tuple(restore_members(prepared, config, run)))


def load_artifacts(run_dir: str) -> ExportArtifacts:
    """The run's best model reduced to what serving needs (`artifacts_of`)."""
    return artifacts_of(restore_run(run_dir))


def artifacts_of(restored: RestoredRun) -> ExportArtifacts:
    """A restored run -> ExportArtifacts. Seen items are all of a user's known interactions
    (every split). An ensemble exports its combined tables, a text encoder giving the
    concatenated members' text embeddings, and no ranking scorer (`score` then returns the
    retrieval score the ensemble ranks with)."""
    from tfrec.evaluate.metrics import csr_from_pairs

    run, config, prepared, trained = (restored.run, restored.config, restored.prepared,
                                      restored.trained)
    user_emb, item_emb, item_bias = restored.embeddings()  # the recency prior in the bias
    s = prepared.data.schema
    indptr, indices = csr_from_pairs(prepared.split.pair_user, prepared.split.pair_item,
                                     prepared.num_users)
    text_encoder = _text_encoder(restored)
    scorer = None if restored.members or trained.ranking is None else trained.ranking.scorer
    metrics = run.metrics_file.read_text() if run.metrics_file.is_file() else "{}"
    import json

    return ExportArtifacts(
        user_ids=np.array(prepared.data.node_ids[s.user_set], dtype=object).astype(str),
        item_ids=np.array(prepared.data.node_ids[s.item_set], dtype=object).astype(str),
        item_titles=prepared.data.titles(s.item_set),  # the schema's display feature
        user_embeddings=user_emb, item_embeddings=item_emb, item_bias=item_bias,
        seen_indptr=indptr.astype(np.int64), seen_indices=indices.astype(np.int64),
        scorer=scorer,
        text_encoder=text_encoder, blend=run.read_blend(prepared.csr("train")),
        history_scale=1.0 / (1 + len(restored.members)),
        metadata={"schema": s.path.read_text(encoding="utf-8"), "schema_path": str(s.path),
                  "config": config.to_dict(), "metrics": json.loads(metrics),
                  "run_dir": str(run.path)})


def _text_encoder(restored: RestoredRun):
    """The item-text encoder of the run's model (or of each member, concatenated), or None."""
    from tfrec.train.fit import embeddings

    config, s = restored.config, restored.prepared.data.schema
    models = (restored.trained, *restored.members)
    projections = [t.model.encoders[s.item_set].text for t in models]
    if projections[0] is None or config.text.mode == "off":
        return None
    from tfrec.model.item_text import EnsembleTextEncoder, ItemTextEncoder
    from tfrec.text import SentenceEncoder

    # each member's text lands at the mean norm of its own item embeddings
    scales = [float(np.linalg.norm(embeddings(t)[1], axis=1).mean()) for t in models]
    # the fine-tuned backbone if it trained, else the pretrained one the run embedded with
    sentence = restored.trained.model.sentence_encoder or SentenceEncoder(
        config.text.sequence_length)
    if not restored.members:
        return ItemTextEncoder(sentence, projections[0], scales[0])
    return EnsembleTextEncoder(sentence, projections, scales)
