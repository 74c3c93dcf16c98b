"""`tfrec evaluate`."""


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="full-ranking metrics of a trained run",
        description="Recall, NDCG, Precision, Hit rate and MRR at each K (default 10 and 20) on "
        "the valid and test splits, ranking ALL items and excluding each user's training items "
        "(and validation items for test), plus test_cold: test targets that had no training "
        "interaction. A run with an item-item blend ([blend]) is scored blended, as it was "
        "chosen on valid.")
    p.add_argument("--run-dir", required=True, help="a folder written by tfrec train")
    p.add_argument("--json", action="store_true", help='print {"valid": {"recall@20": ...}, '
                   '"test": {...}, "test_cold": {...}}')
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from tfrec.evaluate.report import format_metrics, metrics_json
    from tfrec.train.run import evaluate_run
    from tfrec.train.run_dir import RunDir

    metrics = evaluate_run(args.run_dir)
    ks = RunDir(args.run_dir).schema_and_config()[1].eval.ks
    print(metrics_json(metrics) if args.json else format_metrics(metrics, ks))
    return 0
