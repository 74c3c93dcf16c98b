"""`tfrec search`."""

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="search the GNN design for a schema's graph (Keras Tuner)",
        description="Search the [search] space (conv type, layers, width, layer combination, "
        "dropout, residual, normalisation, text and knowledge graph on/off, temperature, "
        "learning rate) with regularised evolution, random search or Bayesian optimisation. "
        "Each trial trains a config early-stopped on the VALIDATION split; the test split is "
        "read once, for the winner, at the end. Writes RUN_DIR/leaderboard.csv and "
        "RUN_DIR/best.toml (train it with `tfrec train --config`); `tensorboard --logdir "
        "RUN_DIR/trials` compares the trials in HParams. Started again with the same --run-dir, "
        "a search resumes. Several processes or machines search together: start one with "
        "KERASTUNER_TUNER_ID=chief and the workers with KERASTUNER_TUNER_ID=worker0, worker1, "
        "..., all with KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT of the chief.")
    p.add_argument("--schema", required=True, help="GraphSchema .pbtxt")
    p.add_argument("--config", help="TOML base config; its [search] section is the space "
                   "(see --print-config)")
    p.add_argument("--strategy", choices=("evolution", "random", "bayesian"),
                   help="search.strategy")
    p.add_argument("--trials", type=int, help="search.trials: at most this many trials")
    p.add_argument("--budget-minutes", type=float,
                   help="search.budget_minutes: no trial starts after this many minutes")
    p.add_argument("--seed", type=int, help="search.seed: the strategy's random draws")
    p.add_argument("--run-dir", help="search folder (default: runs/search-<schema name>)")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective config (with [search]) as TOML and exit")
    p.set_defaults(func=_search)


def effective_config(args: argparse.Namespace):
    """The config file's values, with the search options of the command line on top."""
    import dataclasses

    from tfrec.config import load_config

    config = load_config(args.config)
    flags = {"strategy": args.strategy, "trials": args.trials,
             "budget_minutes": args.budget_minutes, "seed": args.seed}
    values = {k: v for k, v in flags.items() if v is not None}
    return dataclasses.replace(config, search=dataclasses.replace(config.search, **values))


def _search(args) -> int:
    from pathlib import Path

    from tfrec.config import to_toml
    from tfrec.evaluate.report import format_metrics
    from tfrec.search.run import search

    config = effective_config(args)
    if args.print_config:
        print(to_toml(config), end="")
        return 0
    run_dir = args.run_dir or str(Path("runs") / f"search-{Path(args.schema).stem}")
    result = search(args.schema, config, run_dir)
    if result is None:  # a worker
        return 0
    print(f"\nsearch: {len(result.leaderboard)} trials in {result.seconds / 60:.1f} min; "
          f"leaderboard {run_dir}/leaderboard.csv")
    if result.metrics is None:
        return 0
    print(f"best: trial {result.best_trial}, valid {config.eval.early_stop} "
          f"{result.best_valid:.4f} -> {run_dir}/best.toml "
          f"(tfrec train --schema {args.schema} --config {run_dir}/best.toml)")
    print("\nthe winner, on valid and (once) on test:")
    print(format_metrics(result.metrics, config.eval.ks))
    print(f"TensorBoard (trials side by side): tensorboard --logdir {run_dir}/trials")
    return 0
