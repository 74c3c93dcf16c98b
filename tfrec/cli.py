"""The `tfrec` command line: one sub-command group per stage of the pipeline.

Exit codes: 0 success, 1 an unexpected internal error (with traceback), 2 bad input or usage
(one sentence, no traceback), 3 training stopped on a non-finite loss, 4 `tfrec export --only-if-better` declined (the
served version is better), 130 interrupted.
"""

import argparse
import importlib
import sys

import tfrec
from tfrec.errors import TfrecError
from tfrec.tf_setup import import_tf

# Modules that each add their sub-commands with `register(subparsers)`, in pipeline order.
COMMAND_MODULES = [
    "tfrec.schema.commands",
    "tfrec.data.commands",
    "tfrec.text.commands",
    "tfrec.train.commands",
    "tfrec.evaluate.commands",
    "tfrec.search.commands",
    "tfrec.export.commands",
    "tfrec.serving.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrec",
        description="Graph + language-model recommender: schema -> graph data -> text + GNN "
        "model -> evaluation -> SavedModel -> gRPC serving.",
    )
    parser.add_argument("--version", action="version", version=f"tfrec {tfrec.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name == e.name or name.startswith(f"{e.name}."):  # that stage is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not getattr(args, "light", False):  # a command that imports TF only where needed
            import_tf()
        return int(args.func(args) or 0)
    except TfrecError as e:
        print(f"tfrec: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tfrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
