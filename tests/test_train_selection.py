"""Model selection looks at validation only: the early-stopping metric is a checked config key,
HParams records are ranked on valid (test is logged beside, never declared), each run's logs
are one TensorBoard run whose HParams shows its metrics, logq exists only where it applies, and
the projector shows item ids and display titles."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrec.cli import main
from tfrec.config import config_from_dict
from tfrec.errors import TfrecError
from tfrec.heads.retrieval import RetrievalHead
from tfrec.train import fit as fit_module
from tfrec.train.run import train

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")


def tiny_config(train=None, eval=None):
    return config_from_dict({
        "model": {"dim": 8, "layers": 2}, "text": {"mode": "off"},
        "train": {"epochs": 3, "batch_size": 4, "patience": 10, **(train or {})},
        "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]},
        **({"eval": eval} if eval else {})})


def events(logdir: Path) -> tuple[dict, dict]:
    """(scalars {tag: [(step, value)]}, hparams plugin contents {tag: bytes}) of the event
    files directly in `logdir`."""
    scalars, plugin = {}, {}
    for f in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    plugin[v.tag] = v.metadata.plugin_data.content
                elif v.metadata.plugin_data.plugin_name == "scalars":
                    value = float(tf.make_ndarray(v.tensor))
                    scalars.setdefault(v.tag, []).append((event.step, value))
    return scalars, plugin


def hparams_dashboard(logdir: Path) -> dict:
    """What TensorBoard's HParams dashboard lists for `logdir`, through its own backend:
    {session (run) name: ({hparam: value}, {metric tag: value})}."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, allowed_statuses=[api_pb2.STATUS_UNKNOWN,
                                                         api_pb2.STATUS_SUCCESS])
    groups = list_session_groups.Handler(context.RequestContext(), backend, "", request).run()
    out = {}
    for group in groups.session_groups:
        hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                   for k, v in group.hparams.items()}
        for s in group.sessions:
            out[s.name] = (hparams, {m.name.tag: m.value for m in s.metric_values})
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny runs side by side in one parent folder (learning rates 0.01 and 0.05)."""
    parent = tmp_path_factory.mktemp("runs")
    for name, lr in (("a", 0.01), ("b", 0.05)):
        train(TINY, tiny_config({"learning_rate": lr}), str(parent / name), progress=False,
              log=lambda s: None)
    return parent


def test_hparams_and_the_metrics_it_declares_are_in_one_run_folder(two_runs):
    from tensorboard.plugins.hparams import metadata

    run = two_runs / "a"
    saved = json.loads((run / "metrics.json").read_text())
    # one TensorBoard run: every event file directly in RUN_DIR/logs, none in a subfolder
    folders = {f.parent for f in run.rglob("events.out.tfevents.*")}
    assert folders == {run / "logs"}
    scalars, plugin = events(run / "logs")
    experiment = metadata.parse_experiment_plugin_data(plugin[metadata.EXPERIMENT_TAG])
    declared = [m.name.tag for m in experiment.metric_infos]
    # only validation metrics are declared (so ranked on), the early-stopping one first
    assert declared[0] == "final/valid/ndcg@20"
    assert sorted(declared) == sorted(f"final/valid/{m}@{k}" for k in (10, 20)
                                      for m in ("recall", "ndcg", "precision", "hit", "mrr"))
    assert {m.name.group for m in experiment.metric_infos} == {""}  # in the session's own run
    start = metadata.parse_session_start_info_plugin_data(
        plugin[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["train.learning_rate"].number_value == 0.01
    assert start.hparams["eval.early_stop"].string_value == "ndcg@20"
    assert start.hparams["model.use_kg"].bool_value is True
    # the declared metrics are scalars of the same run: the final (best-epoch) model's values
    best = saved["info"]["best_epoch"]
    for name in ("ndcg@20", "recall@10", "mrr@20"):
        assert scalars[f"final/valid/{name}"] == [(best, pytest.approx(saved["valid"][name]))]
        # test is logged beside, for the model chosen on valid, but never declared
        assert scalars[f"final/test/{name}"] == [(best, pytest.approx(saved["test"][name]))]
    # the per-epoch validation curve peaks at the kept epoch
    curve = [v for _, v in sorted(scalars["valid/ndcg@20"])]
    assert len(curve) == 3 and int(np.argmax(curve)) + 1 == best
    assert curve[best - 1] == pytest.approx(saved["valid"]["ndcg@20"])


def test_tensorboard_hparams_shows_each_runs_validation_metrics(two_runs):
    saved = {n: json.loads((two_runs / n / "metrics.json").read_text()) for n in "ab"}
    # pointed at one run's logs (what `tfrec train` prints): its metric columns are filled
    # (they were blank: TensorBoard looked for them in a run "./." that does not exist)
    one = hparams_dashboard(two_runs / "a" / "logs")
    assert list(one) == ["."]
    hparams, values = one["."]
    assert values["final/valid/ndcg@20"] == pytest.approx(saved["a"]["valid"]["ndcg@20"])
    assert len(values) == 10 and not any("test" in tag for tag in values)
    # pointed at the parent: the two runs side by side, each with its own config and metrics
    both = hparams_dashboard(two_runs)
    assert sorted(both) == ["a/logs", "b/logs"]
    for name, lr in (("a", 0.01), ("b", 0.05)):
        hparams, values = both[f"{name}/logs"]
        assert hparams["train.learning_rate"] == lr
        assert values["final/valid/recall@20"] == pytest.approx(
            saved[name]["valid"]["recall@20"])


def test_projector_metadata_has_item_id_and_title_columns(two_runs):
    lines = (two_runs / "a" / "logs" / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "item_id\ttitle" and len(lines) == 1 + 6
    assert lines[1] == "i1\tRed Wool Sweater" and lines[6] == "i6\tLes Misérables"


def test_early_stopping_follows_the_configured_metric_without_k_20(tmp_path):
    run = tmp_path / "run"
    lines = []
    result = train(TINY, tiny_config({"epochs": 4}, {"ks": [1, 5], "early_stop": "recall@5"}),
                   str(run), progress=False, log=lines.append)
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 4 and all(" valid recall@5 " in line for line in epochs)
    assert "ndcg@20" not in result.metrics["valid"]
    scalars, _ = events(run / "logs")
    curve = [v for _, v in sorted(scalars["valid/recall@5"])]
    # the first epoch with the best validation recall@5 is kept (a tie is no improvement)
    assert result.info["best_epoch"] == int(np.argmax(curve)) + 1
    assert result.metrics["valid"]["recall@5"] == pytest.approx(max(curve))


BAD_EARLY_STOP = [
    ({"ks": [10]}, "eval.early_stop is 'ndcg@20', but 20 is not one of eval.ks [10]"),
    ({"early_stop": "auc@20"}, "eval.early_stop is 'auc@20', but it must be <metric>@<k>"),
    ({"early_stop": "ndcg@020"}, "eval.early_stop is 'ndcg@020', but it must be <metric>@<k>"),
    ({"early_stop": "ndcg"}, "eval.early_stop is 'ndcg', but it must be <metric>@<k>"),
]


@pytest.mark.parametrize("values,message", BAD_EARLY_STOP)
def test_early_stop_metric_is_checked_against_ks_before_anything_runs(tmp_path, capsys,
                                                                      values, message):
    with pytest.raises(TfrecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"eval": values})
    path = tmp_path / "c.toml"
    path.write_text("[eval]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    run = tmp_path / "run"
    assert main(["train", "--schema", TINY, "--config", str(path), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert not run.exists()


def test_logq_is_refused_where_it_cannot_apply_and_auto_where_it_can():
    with pytest.raises(TfrecError, match=r'train.logq = true corrects sampled negatives, but '
                       r'train.negatives is "all"'):
        config_from_dict({"train": {"logq": True}})
    with pytest.raises(TfrecError, match=r'train.logq is \'sometimes\', but it must be true, '
                       r'false or "auto"'):
        config_from_dict({"train": {"logq": "sometimes", "negatives": "8"}})
    with pytest.raises(TfrecError, match="config key train.logq must be true or false, not 1"):
        config_from_dict({"train": {"logq": 1}})
    applies = {(logq, negatives): config_from_dict(
        {"train": {"negatives": negatives, **({} if logq is None else {"logq": logq})}}
    ).train.applies_logq for logq in (None, False, True, "auto") for negatives in ("all", "8")
        if not (logq is True and negatives == "all")}
    assert applies == {(None, "all"): False, (None, "8"): True, (False, "all"): False,
                       (False, "8"): False, (True, "8"): True, ("auto", "all"): False,
                       ("auto", "8"): True}
    assert config_from_dict({}).train.logq == "auto"


def test_logq_cannot_change_an_exact_softmax_but_corrects_sampled_negatives():
    rng = np.random.default_rng(3)
    user = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    items = tf.constant(rng.normal(size=(6, 3)), tf.float32)
    positives = tf.constant([0, 2, 2, 5])
    sampling = np.array([0.4, 0.1, 0.2, 0.1, 0.1, 0.1], np.float32)

    def loss(negatives, with_sampling):
        tf.random.set_seed(7)  # the same sampled negatives in both calls
        head = RetrievalHead(np.arange(6), 0.5, negatives, chunk=4,
                             sampling=sampling if with_sampling else None)
        return float(head(user, items, positives))

    assert loss(None, True) == loss(None, False)  # every candidate: masked, nothing to correct
    assert abs(loss(3, True) - loss(3, False)) > 1e-3


def test_fit_hands_the_item_frequencies_to_the_head_only_when_logq_applies(tmp_path,
                                                                           monkeypatch):
    seen = []

    class Spy(fit_module.RetrievalHead):
        def __init__(self, candidates, temperature, negatives, chunk, sampling=None, **kw):
            seen.append(sampling)
            super().__init__(candidates, temperature, negatives, chunk, sampling, **kw)

    monkeypatch.setattr(fit_module, "RetrievalHead", Spy)
    for i, over in enumerate(({}, {"negatives": "2"}, {"negatives": "2", "logq": False})):
        train(TINY, tiny_config({"epochs": 1, **over}), str(tmp_path / str(i)), progress=False,
              log=lambda s: None)
    # training pairs (temporal split): u1 i1 i2 i3, u2 i6 i3, u3 i4, u4 i1 i2: 8 pairs
    assert seen[0] is None and seen[2] is None
    np.testing.assert_allclose(seen[1], [2 / 8, 2 / 8, 2 / 8, 1 / 8, 0, 1 / 8])


def test_every_shipped_config_value_is_justified_on_validation():
    import tomllib

    for path in sorted((Path(__file__).parent.parent / "configs").glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert "VALIDATION split only" in comment and "valid NDCG@20" in comment, path
        values = tomllib.loads(text)
        config_from_dict(values)  # loads as it is
        for section in values.values():
            for key, value in section.items():
                assert f"{key} = {json.dumps(value)}" in comment, (path, key)


def test_a_run_folder_written_before_logq_auto_still_evaluates_and_exports(tmp_path):
    from tfrec.train.run_dir import RunDir

    old = {"schema": TINY, "config": {"train": {"logq": True, "negatives": "all"},
                                      "eval": {"ks": [10, 20]}}}
    (tmp_path / "run.json").write_text(json.dumps(old))
    assert RunDir(tmp_path).schema_and_config()[1].train.logq == "auto"
    old["config"]["train"]["negatives"] = "64"  # there logq = true did apply: kept
    (tmp_path / "run.json").write_text(json.dumps(old))
    assert RunDir(tmp_path).schema_and_config()[1].train.logq is True


def test_mf_picks_its_epoch_on_the_configured_validation_metric(tmp_path):
    """MF trains through the same Trainer: its best epoch is the one with the best valid
    MRR@5 when eval.early_stop says so."""
    config = config_from_dict({"model": {"kind": "mf", "dim": 4},
                               "train": {"epochs": 4, "batch_size": 4, "learning_rate": 0.05},
                               "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]},
                               "eval": {"ks": [1, 5], "early_stop": "mrr@5"}})
    run = tmp_path / "mf"
    result = train(TINY, config, str(run), progress=False, log=lambda s: None)
    per_epoch = {}
    for f in (run / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.tag == "valid/mrr@5":
                    per_epoch[event.step] = float(tf.make_ndarray(v.tensor))
    assert sorted(per_epoch) == [1, 2, 3, 4], per_epoch
    best = max(per_epoch.values())
    assert result.info["best_epoch"] == min(e for e, v in per_epoch.items() if v == best), per_epoch
    assert result.metrics["valid"]["mrr@5"] == pytest.approx(best, abs=1e-6)
