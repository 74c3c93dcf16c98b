"""Objectives, apart from the architecture: each head owns its loss (TFRS tasks)."""

import contextlib


@contextlib.contextmanager
def float32_layers():
    """Layers made inside compute in float32 whatever the global mixed-precision policy: the
    TFRS tasks take no dtype argument (and make a sub-layer when called), and under
    "mixed_float16" they would cast their query (their first input) to float16 but not their
    candidates. Losses stay float32."""
    import tensorflow as tf

    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)

