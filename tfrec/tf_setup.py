"""Imports TensorFlow in the Keras 2 world that TF-GNN and TFRS need, or fails in one sentence.

TensorFlow's start-up noise (C++ INFO/WARNING logs, the cuInit error of a host without a GPU,
Python deprecation warnings) is hidden unless TFREC_DEBUG=1: TF_CPP_MIN_LOG_LEVEL=2 is set when
tfrec is imported (before TensorFlow), and the import plus the device-platform start-up run
with fd 2 pointed at /dev/null.
"""

import contextlib
import os

from tfrec.errors import TfrecError


@contextlib.contextmanager
def _stderr_silenced():
    """Hides the C++ start-up chatter TensorFlow prints to fd 2 before its logging is set up."""
    if debug():
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tf():
    """Returns the `tensorflow` module after checking that `tf.keras` is Keras 2 (tf-keras)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    with _stderr_silenced():
        import tensorflow as tf

        module = tf.keras.Model.__module__  # "tf_keras.src..." for Keras 2, "keras.src..." for 3
        # Device platforms initialise at the first op, not at import: on a host without a GPU,
        # CUDA's "E0000 ... failed call to cuInit" would be printed then, after stderr is back.
        tf.config.list_physical_devices()
    if not module.startswith("tf_keras"):
        raise TfrecError(
            f"tf.keras is {module.split('.')[0]} (Keras 3), but tfrec needs Keras 2: install "
            "tf-keras and set TF_USE_LEGACY_KERAS=1 before TensorFlow is first imported."
        )
    if not debug():
        tf.get_logger().setLevel("ERROR")
    return tf


def debug() -> bool:
    """TFREC_DEBUG=1 (any value but "", "0"): show TensorFlow's start-up and C++ logs."""
    return os.environ.get("TFREC_DEBUG", "") not in ("", "0")
