"""`tfrec train`."""

from tfrec.data.commands import add_split_arguments, split_config


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a recommender on a schema's graph",
        description="Train tfrec's text + knowledge-graph + GNN recommender (or a baseline: "
        "[model] kind = \"mf\" / \"popularity\") with TFRS retrieval and ranking losses, "
        "early-stopped on a validation metric ([eval] early_stop, default ndcg@20), then print "
        "the test metrics. An interrupted run resumes when started again with the same "
        "--run-dir. Watch it with `tensorboard --logdir RUN_DIR/logs`, or compare runs with "
        "`tensorboard --logdir` on their parent folder (HParams ranks them on validation).")
    p.add_argument("--schema", required=True, help="GraphSchema .pbtxt")
    p.add_argument("--config", help="TOML config file (see --print-config for every key and "
                   "its default)")
    p.add_argument("--run-dir", help="run folder: checkpoints, logs, metrics (default: "
                   "runs/<schema name>)")
    p.add_argument("--warm-start", metavar="OLD_RUN_DIR",
                   help="start from a finished run's best weights (same architecture): ids "
                   "it knew keep their learned rows, new ids start from their features, text "
                   "and knowledge-graph neighbours, removed ids are dropped, the other weights "
                   "are copied where their shape is unchanged; the optimizer restarts and the "
                   "old run is not modified (see README, 'Keeping a model fresh')")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config as TOML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_split_arguments(p)
    p.set_defaults(func=_train)


def effective_config(args):
    """The config file's values, with the split options of the command line on top."""
    import dataclasses

    from tfrec.config import load_config

    config = load_config(args.config)
    return dataclasses.replace(config, split=split_config(args, config.split))


def _train(args) -> int:
    from pathlib import Path

    from tfrec.config import to_toml
    from tfrec.evaluate.report import format_metrics
    from tfrec.train.run import train

    config = effective_config(args)
    if args.print_config:
        print(to_toml(config), end="")
        return 0
    from tfrec.train.distribute import serve_cluster_task

    if serve_cluster_task(config.train.strategy):  # a parameter-server cluster's worker or ps
        return 0
    run_dir = args.run_dir or str(Path("runs") / Path(args.schema).stem)
    result = train(args.schema, config, run_dir, progress=not args.no_progress,
                   warm_start=args.warm_start)
    info = result.info
    print()
    print(format_metrics(result.metrics, config.eval.ks))
    if "best_epoch" in info:
        print(f"\nbest epoch {info['best_epoch']} of {info['epochs_run']}, "
              f"{info['epoch_seconds']:.2f} s per epoch, {info['train_seconds']} s in all, "
              f"peak memory {info['peak_rss_mib']} MiB")
    print(f"run folder:  {run_dir}   (metrics.json, run.json)")
    if info["kind"] != "popularity":
        print(f"checkpoints: {run_dir}/checkpoints (best: {run_dir}/checkpoints/best)")
    print(f"TensorBoard: tensorboard --logdir {run_dir}/logs")
    return 0
