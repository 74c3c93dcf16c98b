"""train.optimizer "lazy_adam" (tfrec.train.optimizers.LazyAdam): a sparse gradient moves only
its rows (weights and Adam's moments), by Adam's formula; the ID tables' gradients in a
training step are sparse, so the lazy update is what the Trainer applies."""

import numpy as np
import pytest
import tensorflow as tf
from test_model_planted import planted  # noqa: F401 (a fixture)

from tfrec.config import config_from_dict
from tfrec.train.fit import Trainer, _optimizer
from tfrec.train.optimizers import LazyAdam
from tfrec.train.prepare import prepare
from tfrec.train.run_dir import RunDir


def _table():
    """[4, 2] weights; row 3 has moments from earlier steps (m 0.5, v 0.25)."""
    w = tf.Variable([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    opt = LazyAdam(0.1)  # beta_1 0.9, beta_2 0.999, epsilon 1e-7
    opt.build([w])
    m, v = opt.variables[1:]
    m.assign([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.5, 0.5]])
    v.assign([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.25, 0.25]])
    return w, opt, m, v


def test_a_sparse_step_moves_only_its_rows_by_adams_formula():
    w, opt, m, v = _table()
    # rows 0 (twice: summed to [2, -2]) and 2; rows 1 and 3 are not in the batch
    grad = tf.IndexedSlices(tf.constant([[1.0, -2.0], [0.5, 0.0], [1.0, 0.0]]),
                            tf.constant([0, 2, 0]), tf.constant([4, 2]))
    opt.apply_gradients([(grad, w)])
    # step t = 1: alpha = 0.1 sqrt(1 - 0.999) / (1 - 0.9) = 0.0316228
    # row 0: g [2, -2]: m = 0.1 g = [0.2, -0.2], v = 0.001 g^2 = [0.004, 0.004],
    #        w -= alpha m / sqrt(v) = 0.0316228 * 0.2 / 0.0632456 = 0.1 (times sign g)
    # row 2: g [0.5, 0]: m = [0.05, 0], v = [0.00025, 0], w -= [0.1, 0 / (0 + eps) = 0]
    np.testing.assert_allclose(m.numpy()[[0, 2]], [[0.2, -0.2], [0.05, 0.0]], rtol=1e-6)
    # (1 - 0.999 is 0.00099998713 in float32: relative 1.3e-5)
    np.testing.assert_allclose(v.numpy()[[0, 2]], [[0.004, 0.004], [0.00025, 0.0]], rtol=2e-5)
    np.testing.assert_allclose(w.numpy()[[0, 2]], [[0.9, 1.1], [2.9, 3.0]], rtol=1e-5)
    # rows 1 and 3 keep weights AND moments exactly (Adam would decay row 3's m to 0.45, v to
    # 0.24975, and move its weight by alpha 0.45 / 0.4998 = 0.0285)
    np.testing.assert_array_equal(w.numpy()[[1, 3]], [[2.0, 2.0], [4.0, 4.0]])
    np.testing.assert_array_equal(m.numpy()[[1, 3]], [[0.0, 0.0], [0.5, 0.5]])
    np.testing.assert_array_equal(v.numpy()[[1, 3]], [[0.0, 0.0], [0.25, 0.25]])
    assert int(opt.iterations) == 1


def test_dense_and_all_row_gradients_take_adams_step():
    """A dense gradient, or a sparse one naming every row (a full-graph step), is Adam's."""
    g = np.array([[1.0, -2.0], [0.3, 0.1], [0.5, 0.0], [-1.0, 4.0]], np.float32)
    results = []
    for opt_class, grad in ((tf.keras.optimizers.Adam, tf.constant(g)), (LazyAdam, tf.constant(g)),
                            (LazyAdam, tf.IndexedSlices(tf.constant(g[::-1]),
                                                        tf.constant([3, 2, 1, 0])))):
        w = tf.Variable(np.arange(8, dtype=np.float32).reshape(4, 2))
        opt = opt_class(0.1)
        for _ in range(3):
            opt.apply_gradients([(grad, w)])
        results.append(np.concatenate([w.numpy(), opt.variables[1].numpy(),
                                       opt.variables[2].numpy()]))
    np.testing.assert_array_equal(results[1], results[0])  # the dense path is Adam's own
    # float32 rounding only: Adam decays by m - (1 - b1) m, LazyAdam by b1 m (measured 1.3e-5)
    np.testing.assert_allclose(results[2], results[0], rtol=5e-5, atol=1e-6)


def test_the_config_choice_builds_it():
    config = config_from_dict({"train": {"optimizer": "lazy_adam"}})
    assert isinstance(_optimizer(config, steps_per_epoch=10), LazyAdam)
    assert type(_optimizer(config_from_dict({"train": {"optimizer": "adam"}}), 10)) \
        is tf.keras.optimizers.Adam


@pytest.mark.parametrize("precision", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_sampled_steps_id_table_gradients_are_sparse(planted, tmp_path,  # noqa: F811
                                                       precision):
    """The step's gradients of the ID (and categorical) tables are IndexedSlices, with and
    without mixed precision (its loss scaling keeps them sparse): LazyAdam's row-wise path is
    the one taken. Every other variable's gradient is dense."""
    config = config_from_dict({
        "model": {"dim": 8, "layers": 2}, "text": {"mode": "off"},
        "train": {"batch_size": 10, "chunk": 10, "ranking_weight": 0.0, "mode": "sampled",
                  "optimizer": "lazy_adam", "mixed_precision": precision},
        "sample": {"fanouts": [2, 1]},
        "split": {"method": "files", "split_dir": str(planted / "splits")}})
    try:
        prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
        trainer = Trainer(prepared, config, RunDir(tmp_path / "run"), False, lambda s: None)
        view, labels, candidates = next(trainer.graphs.epoch(trainer.batches, 1,
                                                             trainer.objective))
        model, variables = trainer.trained.model, trainer.variables[0]
        with tf.GradientTape() as tape:
            e = model.embed(view.graph, training=True)
            loss = trainer.objective(e, view.users, view.items, labels, candidates,
                                     view.item_rows)["total"]
        grads = tape.gradient(loss, variables)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
        trainer.graphs.close()
    tables = {id(enc.ids.embeddings): name for name, enc in model.encoders.items()}
    sparse = {v.name for g, v in zip(grads, variables) if isinstance(g, tf.IndexedSlices)}
    assert {v.name for v in variables if id(v) in tables} <= sparse
    assert len(tables) == 3  # users, items, entities
    # the user table's gradient has the rows of the subgraph's users, not all 40
    table = model.encoders["user"].ids.embeddings
    rows = np.unique(grads[[id(v) for v in variables].index(id(table))].indices)
    np.testing.assert_array_equal(rows, np.unique(view.graph.node_sets["user"]["row"]))
    assert len(rows) < table.shape[0] == 40
