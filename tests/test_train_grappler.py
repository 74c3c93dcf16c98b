"""The training step's lean Grappler options (tfrec.train.grappler): the passes named are off,
TensorFlow's other call options are kept, and the step computes what it computed before."""

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context
from test_model_planted import planted  # noqa: F401 (a fixture)

from tfrec.config import config_from_dict
from tfrec.train.fit import Trainer
from tfrec.train.grappler import Lean, lean_options
from tfrec.train.prepare import prepare
from tfrec.train.run_dir import RunDir

R = rewriter_config_pb2.RewriterConfig


def test_lean_options_turn_off_the_named_passes_and_keep_the_rest():
    default = config_pb2.ConfigProto.FromString(
        context.context().function_call_options.config_proto_serialized)
    config = config_pb2.ConfigProto.FromString(lean_options().config_proto_serialized)
    rewrite = config.graph_options.rewrite_options
    assert (rewrite.memory_optimization, rewrite.layout_optimizer,
            rewrite.meta_optimizer_iterations) == (R.NO_MEM_OPT, R.OFF, R.ONE)
    assert config.allow_soft_placement == default.allow_soft_placement
    for name in ("constant_folding", "arithmetic_optimization", "remapping"):
        assert getattr(rewrite, name) == getattr(default.graph_options.rewrite_options, name)


def test_a_lean_call_restores_the_threads_options_and_computes_the_same():
    w = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.matmul(x, w)))
        return loss, tape.gradient(loss, w)

    x = tf.constant([[1.0, -2.0, 0.5]])
    before = context.context().function_call_options.config_proto_serialized
    loss, grad = Lean(tf.function(step))(x)
    assert context.context().function_call_options.config_proto_serialized == before
    plain_loss, plain_grad = tf.function(step)(x)
    # x w = [[-2, -2.5]], the loss 4 + 6.25 = 10.25: exact both ways
    xw = np.array([[1.0, -2.0, 0.5]]) @ np.arange(6).reshape(3, 2)
    assert float(loss) == float(plain_loss) == float(np.sum(xw ** 2)) == 10.25
    np.testing.assert_array_equal(grad.numpy(), plain_grad.numpy())
    np.testing.assert_allclose(grad.numpy(), 2 * np.array([[1.0], [-2.0], [0.5]]) @ xw)


def test_the_trainers_step_is_lean_on_cpu_and_its_losses_are_the_default_passes(
        planted, tmp_path):  # noqa: F811
    config = config_from_dict({
        "model": {"dim": 8, "layers": 2}, "text": {"mode": "off"},
        "train": {"batch_size": 10, "chunk": 10, "ranking_weight": 0.0},
        "split": {"method": "files", "split_dir": str(planted / "splits")}})
    prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
    losses, weights = {}, {}
    for how in ("lean", "default"):
        trainer = Trainer(prepared, config, RunDir(tmp_path / how), False, lambda s: None)
        assert isinstance(trainer.step, Lean)
        step = trainer.step if how == "lean" else trainer.step.function
        rng = np.random.default_rng(0)
        losses[how] = []
        for _, (view, y, candidates) in zip(range(3), trainer.graphs.epoch(
                trainer.batches, 1, trainer.objective)):
            losses[how].append(float(step(
                view.graph, tf.convert_to_tensor(view.users), tf.convert_to_tensor(view.items),
                tf.convert_to_tensor(y), tf.constant(trainer._fresh(view.items, rng)),
                candidates, view.item_rows)["total"]))
        weights[how] = [v.numpy() for v in trainer.variables[0]]
    assert len(losses["lean"]) == 3 and losses["lean"] == losses["default"]  # bit for bit
    for a, b in zip(weights["lean"], weights["default"]):
        np.testing.assert_array_equal(a, b)
