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
        epilog="example: tfrec export --run-dir runs/latest --model-base models/tfrec",
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
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Stages: load the run's artifacts -> export_model -> print the version folder."""
    from tfrec.export.versions import export_model
    from tfrec.export.from_run import load_artifacts

    artifacts = load_artifacts(args.run_dir)
    path = export_model(artifacts, args.model_base, version=args.version)
    print(path)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value
