"""Training steps on several devices or hosts (tf.distribute), by `train.strategy`.

    "default"           one device: the Trainer's own tf.function step, no wrapper at all
    "mirrored"          MirroredStrategy: a replica per local GPU (none: per logical CPU device)
    "multi_worker"      MultiWorkerMirroredStrategy: the hosts of TF_CONFIG, in step
    "parameter_server"  ParameterServerStrategy: TF_CONFIG's workers compute the steps, its ps
                        tasks hold the variables, each cut along its rows into shards of at
                        least train.shard_bytes (MinSizePartitioner, one shard per ps at most)

The model and optimizers are made under `strategy.scope()` (the Trainer does it); this module
runs the steps:

Synchronous (`Replicated`: mirrored, multi_worker). A global batch of B rows is cut into R
shares of B / R rows (R = num_replicas_in_sync), a whole number of chunks each, so a replica's
in-batch negatives are the chunks one device would use. Each replica reads its shares from its
own tf.data pipeline (`distribute_datasets_from_function`; tf.distribute cannot split a
GraphTensor) and embeds the whole graph (full mode: copied to every replica's device once) or
the subgraph sampled around its share (sampled mode). Each replica minimises its loss / R and
the optimizer sums the replicas' gradients: the gradient of the mean loss over the global
batch, the step one device takes. The losses it reports are the replicas' mean.

Parameter servers (`Coordinated`). The coordinator schedules each step on whichever worker is
free (`ClusterCoordinator.schedule`). Full graph: the chief sends each step's rows, so an epoch
visits every batch once, as on one device; the graph a worker embeds comes from a per-worker
dataset, sent to it once. Sampled: every worker draws its subgraphs from a dataset of its own
(`create_per_worker_dataset`), in order with one worker, in an order of its own with several.
Workers update the variables on the ps asynchronously: with one worker the steps are one
device's; with more, a worker's gradient may come from variables a few steps old.

Sampled training (train.mode "sampled") works under every strategy: a replica's subgraph is
drawn in its own input pipeline, around its share of the batch, by TF ops (the in-memory
sampler of tfrec.data.sampling in Dataset.map, or the Beam sampler's examples read and parsed
with the examples sharded by input pipeline): no Python runs in the pipeline.
"""

import functools
import os

import tensorflow as tf

from tfrec.errors import TfrecError

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")


@functools.cache  # a process joins its cluster once: `tfrec train` makes it before any op
def make_strategy(name: str, shard_bytes: int = 256 << 10) -> tf.distribute.Strategy:
    """The tf.distribute.Strategy `name` (one of STRATEGIES); the cluster ones read TF_CONFIG
    (multi_worker must be made before TensorFlow runs its first op)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    jobs = resolver.cluster_spec().jobs
    if name == "multi_worker":
        if "worker" not in jobs:
            raise TfrecError('train.strategy = "multi_worker" needs the environment variable '
                             'TF_CONFIG naming the cluster\'s workers and this host\'s task, '
                             'such as {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                             '"task": {"type": "worker", "index": 0}}')
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if "worker" not in jobs or "ps" not in jobs:
        raise TfrecError('train.strategy = "parameter_server" needs the environment variable '
                         'TF_CONFIG naming the cluster\'s chief, workers and ps tasks, with '
                         'this process as the chief, such as {"cluster": {"chief": ["c:2222"], '
                         '"worker": ["w0:2222"], "ps": ["p0:2222"]}, "task": {"type": '
                         '"chief", "index": 0}} (the workers and ps tasks run the same '
                         '`tfrec train` command: they serve the chief)')
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        shard_bytes, resolver.cluster_spec().num_tasks("ps"))
    return tf.distribute.ParameterServerStrategy(resolver, partitioner)


def serve_cluster_task(name: str) -> bool:
    """With `name` "parameter_server" and TF_CONFIG naming this process a worker or ps task:
    serves the chief's steps and variables until the process is stopped, then True. Else
    False at once (this process trains)."""
    if name != "parameter_server" or not os.environ.get("TF_CONFIG"):
        return False
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type not in ("worker", "ps"):
        return False
    tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                         task_index=resolver.task_id, protocol=resolver.rpc_layer or "grpc",
                         start=True).join()
    return True


def replica_rows(batch: int, chunk: int, rows: int, replicas: int) -> tuple[int, int]:
    """(global batch B, chunk) for `rows` training pairs over `replicas` replicas: B a multiple
    of replicas x chunk, chunk at most the requested one (and at most rows / replicas)."""
    wanted = min(batch, rows)
    chunk = max(1, min(chunk, wanted // replicas))
    return replicas * chunk * max(1, wanted // (replicas * chunk)), chunk


def _reduce_mean(strategy, per_replica: dict) -> dict:
    return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
            for k, v in per_replica.items()}


class Replicated:
    """The training steps of a synchronous strategy (mirrored, multi_worker).

    replica_step(graph, **inputs) -> {loss name: scalar}: one replica's step (gradients
    applied), minimising its total loss / R; signature: {input name: tf.TypeSpec} of a
    replica's inputs; graph: the full model graph every replica embeds (None: each input
    carries its own "graph", a sampled subgraph)."""

    def __init__(self, strategy, replica_step, signature: dict, graph=None):
        self.strategy, self.signature = strategy, signature
        self.replicas = strategy.num_replicas_in_sync
        self.graphs = None
        if graph is not None:
            devices = strategy.extended.worker_devices

            def copy(context):  # a replica's own copy of the graph, on its device
                with tf.device(devices[context.replica_id_in_sync_group % len(devices)]):
                    return tf.nest.map_structure(tf.identity, graph, expand_composites=True)

            self.graphs = strategy.experimental_distribute_values_from_function(copy)

        @tf.function
        def step(iterator, graphs):
            def on_replica(inputs, graph):
                # multi_worker datasets forget the static batch size (the heads need it)
                inputs = {k: tf.ensure_shape(v, signature[k].shape) if k != "graph" else v
                          for k, v in inputs.items()}
                return replica_step(inputs.pop("graph", graph), **inputs)

            return _reduce_mean(strategy, strategy.run(on_replica, args=(next(iterator), graphs)))

        self.step = step

    def epoch(self, shares, steps: int):
        """Yields the losses (replica means) of each of the `steps` steps of an epoch.

        shares(replicas) -> a tf.data.Dataset of the epoch's step inputs ({name: tensor or
        subgraph}) of `replicas` (a range of global replica ids), step by step: consecutive
        elements go to consecutive replicas. Each host's input pipeline (tf.distribute's
        InputContext) reads those of its own replicas."""
        local = len(self.strategy.extended.worker_devices)  # this host's replicas

        def dataset(context: tf.distribute.InputContext):
            first = context.input_pipeline_id * local
            # infinite (only `steps` are read): a finite one would make tf.distribute build
            # empty placeholder inputs for a short last batch, which a GraphTensor refuses
            return shares(range(first, first + local)).repeat()

        iterator = iter(self.strategy.distribute_datasets_from_function(dataset))
        for _ in range(steps):
            yield self.step(iterator, self.graphs)


class Coordinated:
    """The training steps of a ParameterServerStrategy, scheduled on its workers by a
    ClusterCoordinator (this process is the chief). replica_step and graph as for
    `Replicated`; a worker is one replica (one CPU or GPU).

    Full graph: the coordinator sends each step's rows to whichever worker is free, so an
    epoch visits every batch once, as on one device; the graph comes from a per-worker dataset,
    sent to each worker once. Sampled: a subgraph is drawn on the worker that trains it, so
    each worker reads the step inputs from a dataset of its own (`create_per_worker_dataset`,
    as TensorFlow's parameter-server training and TF-GNN's runner do): with one worker it reads
    the epoch's steps in order (one device's steps); with several, each in an order of its own
    (the `steps` steps of an epoch go to whichever worker is free, so a batch may be trained
    twice in an epoch and another not at all)."""

    def __init__(self, strategy, replica_step, signature: dict, graph=None):
        if strategy.num_replicas_in_sync != 1:
            raise TfrecError(f"train.strategy = \"parameter_server\" trains one replica per "
                             f"worker, but each worker has {strategy.num_replicas_in_sync} "
                             "devices: make one visible per worker (CUDA_VISIBLE_DEVICES)")
        self.strategy = strategy
        self.workers = tf.distribute.cluster_resolver.TFConfigClusterResolver() \
            .cluster_spec().num_tasks("worker")  # make_strategy's cluster
        self.coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
        self.graphs = None
        if graph is not None:  # every worker keeps the graph in a dataset of its own
            self.graphs = iter(self.coordinator.create_per_worker_dataset(
                lambda: tf.data.Dataset.from_tensors(graph).repeat()))

        def run(graph, inputs):
            per_replica = strategy.run(lambda g, x: replica_step(g, **x), args=(graph, inputs))
            return _reduce_mean(strategy, per_replica)

        @tf.function
        def full_step(graphs, inputs):  # the chief's rows, the worker's graph
            return run(next(graphs), inputs)

        @tf.function
        def sampled_step(iterator):  # the worker's own subgraph and rows
            inputs = {k: tf.ensure_shape(v, signature[k].shape) if k != "graph" else v
                      for k, v in next(iterator).items()}
            return run(inputs.pop("graph"), inputs)

        self.full_step, self.sampled_step = full_step, sampled_step

    def epoch(self, shares, steps: int):
        """Schedules the `steps` steps of an epoch (shares as for `Replicated.epoch`, for one
        replica: read on the chief for the full graph, made on every worker for subgraphs),
        waits for them all, then yields each one's losses."""
        if self.graphs is not None:
            done = [self.coordinator.schedule(self.full_step, args=(self.graphs, inputs))
                    for inputs in shares(range(1)).take(steps)]
        else:
            def dataset():
                data = shares(range(1))
                if self.workers > 1:  # a worker's own order (unseeded: each draws a seed)
                    data = data.shuffle(steps)
                return data.repeat()

            iterator = iter(self.coordinator.create_per_worker_dataset(dataset))
            done = [self.coordinator.schedule(self.sampled_step, args=(iterator,))
                    for _ in range(steps)]
        assert len(done) == steps, (len(done), steps)
        self.coordinator.join()
        for losses in done:
            yield losses.fetch()


def runner(strategy, replica_step, signature: dict, graph=None):
    """The step runner of `strategy` (not the default one): `Coordinated` for parameter
    servers, else `Replicated`."""
    kind = Coordinated if isinstance(strategy, tf.distribute.ParameterServerStrategy) \
        else Replicated
    return kind(strategy, replica_step, signature, graph)
