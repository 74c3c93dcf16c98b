"""`tfrec export`: a training run -> a new SavedModel version under a TF Serving model base."""

import argparse


def register(sub) -> None:
    """Adds the `export` sub-command to the `tfrec` sub-parsers `sub`."""
    parser = sub.add_parser(
        "export",
        help="write a training run as a new TF Serving SavedModel version",
        description=(
            "Export the trained model of a run as the SavedModel MODEL_BASE/<version>/ for TF "
            "Serving, with the signatures serving_default, history, score, similar_items (and "
            "item_text when the model has a text encoder), warm-up requests and metadata. The "
            "version folder appears atomically and existing versions are never replaced."
        ),
        epilog="example: tfrec export --run-dir runs/latest --model-base models/tfrec "
        "--only-if-better. Exit codes: 0 exported, 2 bad input, 4 declined by "
        "--only-if-better (the served version ranks validation better).",
    )
    parser.add_argument(
        "--run-dir", required=True, metavar="DIR",
        help="the folder a `tfrec train` run wrote (its trained model and item/user tables)",
    )
    parser.add_argument(
        "--model-base", required=True, metavar="BASE",
        help="the folder TF Serving watches (base_path in serving/models.config, mounted at "
        "/models/tfrec); created if missing",
    )
    parser.add_argument(
        "--version", type=_positive_int, default=None, metavar="N",
        help="version number to write; must not exist yet (default: highest existing + 1)",
    )
    parser.add_argument(
        "--only-if-better", action="store_true",
        help="first rank the run's validation split with the newest version served under BASE "
        "(the retrieval score its serving_default ranks by) and with the run; print both "
        "ndcg@20 and export only if new >= served - MARGIN, else write nothing and exit 4",
    )
    parser.add_argument(
        "--margin", type=_non_negative_float, default=0.0, metavar="MARGIN",
        help="with --only-if-better: how much lower than the served model's ndcg@20 the new "
        "run may be and still be exported (default 0.0)",
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Stages: load the run's artifacts -> export_model -> print the version folder (with
    --only-if-better, the gate of tfrec.export.gate first)."""
    import sys

    from tfrec.export.versions import export_model
    from tfrec.export.from_run import load_artifacts

    if args.only_if_better:
        from tfrec.export.gate import GATE_DECLINED, gated_export

        result = gated_export(args.run_dir, args.model_base, args.margin, args.version)
        if not result.passed:
            print(f"tfrec: not exported: the new run's valid ndcg@20 {result.new:.4f} is below "
                  f"served version {result.served_version}'s {result.old:.4f} - margin "
                  f"{result.margin}", file=sys.stderr)
            return GATE_DECLINED
        print(result.path)
        return 0

    artifacts = load_artifacts(args.run_dir)
    path = export_model(artifacts, args.model_base, version=args.version)
    print(path)
    return 0


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value
