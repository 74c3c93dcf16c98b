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



def mean_retrieval_loss(task):
    """The mean loss of the TFRS Retrieval `task` as one tf.function: (queries [b, D],
    candidates [C, D], ids [C] int, probability [C] or None, mask [b, C] bool or None) ->
    scalar float32. Traced once per input shape, so a head calling it on several chunks of the
    same shape adds one copy of the loss to the training step's graph, and traced with
    AutoGraph, which TFRS needs (it calls len() on a tensor's shape, which AutoGraph reads
    statically) while the training step itself is traced without (tfrec.train.fit)."""
    import tensorflow as tf

    def loss(queries, candidates, ids, probability=None, mask=None):
        with float32_layers():  # TFRS makes its accidental-hit layer here
            return tf.reduce_mean(task(queries, candidates, candidate_ids=ids,
                                       candidate_sampling_probability=probability,
                                       score_mask=mask, compute_metrics=False,
                                       compute_batch_metrics=False))

    return tf.function(loss, reduce_retracing=True)
