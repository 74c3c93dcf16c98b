"""Row-wise ("lazy") Adam: a sparse gradient moves only the rows it has.

tf_keras's Adam, given a `tf.IndexedSlices` gradient (the gradient of a `tf.gather` /
embedding lookup: the rows a step read), still decays the moments m and v of EVERY row and
moves every row of the variable: a step costs O(rows of the table), i.e. O(users + items) for
the ID tables, however few of them the batch touched. `LazyAdam` applies Adam's update to the
gathered rows only; the other rows keep their weights and moments exactly. With a dense
gradient it is Adam. It differs from Adam only in the rows a step did not read: Adam keeps
moving them with their decaying momentum, lazy Adam leaves them until they are read again.

It is Adam's subclass with Adam's slots (m then v for each variable, in the order `build`
got them): checkpoints, warm starts (tfrec.train.warm_start maps the slots row-wise) and
tf.distribute (the update runs per variable, or per shard of a sharded variable, on the
device holding it) see the same optimizer state either way.
"""

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam whose update for an IndexedSlices gradient (values [n, ...], indices [n]) touches
    rows `indices` only. At step t (iterations + 1), for each row r of the gradient g_r:
        m_r <- b1 m_r + (1 - b1) g_r,   v_r <- b2 v_r + (1 - b2) g_r^2
        w_r <- w_r - lr sqrt(1 - b2^t) / (1 - b1^t) * m_r / (sqrt(v_r) + eps)
    (tf_keras's Adam, eps not bias-corrected); other rows are untouched. The indices are
    distinct: `apply_gradients` sums the values of repeated indices first."""

    def __init__(self, learning_rate=0.001, name="LazyAdam", **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdam has no amsgrad variant")
        super().__init__(learning_rate, name=name, **kwargs)

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        t = tf.cast(self.iterations + 1, dtype)
        b1, b2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - tf.pow(b2, t)) \
            / (1 - tf.pow(b1, t))
        eps = self.epsilon * tf.sqrt(1 - tf.pow(b2, t)) if self.adaptive_epsilon \
            else self.epsilon
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows, g = gradient.indices, gradient.values
        m_rows = b1 * tf.gather(m, rows) + (1 - b1) * g
        v_rows = b2 * tf.gather(v, rows) + (1 - b2) * tf.square(g)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + eps), rows))
