"""`tfrec export`: arguments, help, and the handler end to end with a stand-in artifact loader."""

import argparse
import sys
import types

import pytest
from test_export_fixtures import make_artifacts

from tfrec import cli
from tfrec.export import commands


def _parser():
    parser = argparse.ArgumentParser(prog="tfrec")
    commands.register(parser.add_subparsers(dest="command"))
    return parser


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        _parser().parse_args(["export", "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    assert all(option in text for option in ("--run-dir", "--model-base", "--version"))


@pytest.mark.parametrize("argv", [
    ["export", "--model-base", "b"],
    ["export", "--run-dir", "r", "--model-base", "b", "--version", "0"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        _parser().parse_args(argv)
    assert done.value.code == 2


def test_export_command_with_a_stand_in_loader(tmp_path, monkeypatch, capsys):
    calls = []

    def load_artifacts(run_dir):
        calls.append(run_dir)
        return make_artifacts()

    fake = types.ModuleType("tfrec.export.from_run")
    fake.load_artifacts = load_artifacts
    monkeypatch.setitem(sys.modules, "tfrec.export.from_run", fake)
    base = tmp_path / "models"
    argv = ["export", "--run-dir", "runs/x", "--model-base", str(base)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(base / "1") and calls == ["runs/x"]
    assert cli.main(argv + ["--version", "1"]) == 2  # never replaces a version
    assert "version 1 already exists" in capsys.readouterr().err

