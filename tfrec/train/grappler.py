"""The graph optimisation (Grappler) of the training step on CPU: the passes that cost seconds
of a run's first step and change nothing a step computes or how fast it runs are off.

TensorFlow optimises a tf.function's graph at its first call with every default pass, twice
over. On a CPU-only host, for tfrec's step (bench/step_tracing.py, `--grappler`): the memory
optimiser (a GPU memory planner; seconds of the first call) and the layout optimiser (NHWC/NCHW
for GPU convolutions) are off, and the passes run once: the steps' losses are bit-identical,
the later steps as fast. With a GPU visible, TensorFlow's defaults stay.
"""

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

_REWRITER = rewriter_config_pb2.RewriterConfig


def lean_options() -> context.FunctionCallOptions:
    """The current thread's function call options (TensorFlow's defaults: soft placement, the
    session config) with the lean Grappler passes of the module docstring."""
    config = config_pb2.ConfigProto.FromString(
        context.context().function_call_options.config_proto_serialized)
    rewrite = config.graph_options.rewrite_options
    rewrite.memory_optimization = _REWRITER.NO_MEM_OPT
    rewrite.layout_optimizer = _REWRITER.OFF
    rewrite.meta_optimizer_iterations = _REWRITER.ONE
    return context.FunctionCallOptions(config_proto=config)


class Lean:
    """A tf.function called with `lean_options()` (which a function's first call optimises
    with, and every call must repeat: other options would optimise it again); its other
    attributes (get_concrete_function, python_function, ...) are the function's."""

    def __init__(self, function):
        self.function = function
        self.options = None

    def __call__(self, *args):
        ctx = context.context()
        if self.options is None:
            self.options = lean_options()
        saved = ctx.function_call_options
        ctx.function_call_options = self.options
        try:
            return self.function(*args)
        finally:
            ctx.function_call_options = saved

    def __getattr__(self, name):
        return getattr(self.function, name)


def lean(function):
    """`function` (a tf.function) as `Lean` on a CPU-only host, else itself."""
    return function if tf.config.list_logical_devices("GPU") else Lean(function)
