"""Bad config values get one sentence naming the key (exit 2), from a file, the command line or
code alike: every config dataclass validates itself (tfrec.config_fields.Validated)."""

import dataclasses
import math
import tomllib
import typing
from pathlib import Path

import pytest

from tfrec.cli import main
from tfrec.config import Config, EvalConfig, ModelConfig, TrainConfig, config_from_dict, to_toml
from tfrec.data.splits import SplitConfig
from tfrec.errors import TfrecError
from tfrec.text.config import TextConfig

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")

BAD_FILES = [
    ("[train]\nlearning_rate = nan\n", "train.learning_rate is nan, but it must be a finite"),
    ("[train]\ntemperature = nan\n", "train.temperature is nan"),
    ("[train]\nweight_decay = -nan\n", "train.weight_decay is nan"),
    ("[train]\nlearning_rate = inf\n", "train.learning_rate is inf, but it must be a finite"),
    ("[model]\ndropout = nan\n", "model.dropout is nan"),
    ("[split]\nratios = [nan, 0.1, 0.1]\n",
     "split.ratios is [nan, 0.1, 0.1], but each number must be a finite number"),
    ("[split]\nratios = [0.8, 0.2]\n", "split.ratios is [0.8, 0.2], but it must be a list of 3"),
    ("[split]\ncold_items = nan\n", "split.cold_items is nan"),
    ("[train]\nseed = -1\n", "train.seed is -1, but it must be between 0 and 4294967295"),
    ("[split]\nseed = -1\n", "split.seed is -1, but it must be between 0 and 4294967295"),
    ("[train]\nseed = 4294967296\n", "train.seed is 4294967296"),
    ('[train]\nnegatives = "²"\n', "train.negatives is '²', but it must be \"all\" or a number"),
    ("[train]\nnegatives = 0\n", "train.negatives is '0'"),
    ('[train]\nnegatives = "-5"\n', "train.negatives is '-5'"),
    ("[eval]\nks = [0, 20]\n", "eval.ks is [0, 20], but each number must be at least 1"),
    ("[eval]\nks = []\n", "eval.ks is [], but it must list cut-offs"),
    ("[text]\nsequence_length = 2\n", "text.sequence_length is 2, but it must be between 3"),
    ('[text]\nmode = "fine-tune"\n', "text.mode is 'fine-tune', but it must be one of"),
    ("[text]\ncolour = 1\n", "unknown config key text.colour"),
    ("model = 3\n", "config section [model] must be a table of keys"),
]


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("mode", ["--print-config", "--no-progress"])
@pytest.mark.parametrize("text,message", BAD_FILES)
def test_bad_config_file_is_refused_and_never_printed(tmp_path, capsys, text, message, mode):
    """Training and --print-config refuse the file alike (--print-config never prints a value
    that training would refuse), before a run folder exists."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "--schema", TINY, "--config", str(path), "--run-dir",
                              str(run), mode], capsys)
    assert code == 2 and out == "", out
    assert err.startswith(f"tfrec: error: {path}: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not run.exists()


def test_non_utf8_config_file_names_its_line(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[train]\nlearning_rate = 0.01  # café\n".encode("latin-1"))
    code, out, err = run_cli(["train", "--schema", TINY, "--config", str(path),
                              "--print-config"], capsys)
    assert code == 2 and out == ""
    assert err == (f"tfrec: error: config file {path}, line 2: not UTF-8 text (byte 0xe9); "
                   "save it as UTF-8\n")


def test_config_file_that_is_a_folder(tmp_path, capsys):
    code, _, err = run_cli(["train", "--schema", TINY, "--config", str(tmp_path),
                            "--print-config"], capsys)
    assert code == 2 and err == f"tfrec: error: config file {tmp_path} is a folder, not a file\n"


def test_config_file_with_a_byte_order_mark_is_read(tmp_path, capsys):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[train]\nlearning_rate = 0.002\n")
    code, out, _ = run_cli(["train", "--schema", TINY, "--config", str(path), "--print-config"],
                           capsys)
    assert code == 0 and "learning_rate = 0.002\n" in out


@pytest.mark.parametrize("options,message", [
    (["--seed", "-1"], "split.seed is -1, but it must be between 0 and 4294967295"),
    (["--ratios", "nan,0.1,0.1"], "split.ratios is [nan, 0.1, 0.1], but each number must be"),
    (["--ratios", "0.8,0.1,inf"], "split.ratios is [0.8, 0.1, inf]"),
    (["--cold-items", "nan"], "split.cold_items is nan, but it must be a finite number"),
])
@pytest.mark.parametrize("command", ["train", "data"])
def test_bad_split_options_are_refused_before_anything_is_written(tmp_path, capsys, options,
                                                                  message, command):
    run = tmp_path / "run"
    args = (["train", "--schema", TINY, "--run-dir", str(run)] if command == "train" else
            ["data", "build", "--schema", TINY, "--out", str(run)])
    code, out, err = run_cli(args + options, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not run.exists()


def _float_fields(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if hint is float or float in typing.get_args(hint):
            yield f.name, hint


SECTIONS = [ModelConfig, TrainConfig, TextConfig, SplitConfig, EvalConfig]


def test_every_float_key_of_every_section_refuses_nan_and_inf():
    checked = []
    for cls in SECTIONS:
        for name, hint in _float_fields(cls):
            for bad in (math.nan, math.inf, -math.inf):
                value = bad if hint is float else (bad,) * len(typing.get_args(hint))
                with pytest.raises(TfrecError, match=rf"{cls.SECTION}\.{name} is .*finite"):
                    cls(**{name: value})  # constructed in code: validated all the same
            checked.append(f"{cls.SECTION}.{name}")
    # the float keys today; a new one is checked by the loop above without editing this list
    assert {"model.dropout", "train.learning_rate", "train.weight_decay", "train.temperature",
            "train.ranking_weight", "train.align_weight", "split.ratios",
            "split.cold_items"} <= set(checked)


def test_sections_constructed_in_code_are_validated_like_files():
    with pytest.raises(TfrecError, match="config key train.seed is -1"):
        TrainConfig(seed=-1)
    with pytest.raises(TfrecError, match="config key model.conv is 'gcn'"):
        ModelConfig(conv="gcn")
    with pytest.raises(TfrecError, match="config key model.dim must be an integer, not '8'"):
        ModelConfig(dim="8")
    with pytest.raises(TfrecError, match="config key split.seed is -2"):
        SplitConfig(seed=-2)
    with pytest.raises(TfrecError, match=r"config section \[train\] must be TrainConfig"):
        Config(train={"epochs": 3})
    # what a file may write loosely is normalised: int -> float, list -> tuple
    config = TrainConfig(learning_rate=1)
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert EvalConfig(ks=[5, 10], early_stop="ndcg@10").ks == (5, 10)
    assert SplitConfig(ratios=[1, 0, 0]).ratios == (1.0, 0.0, 0.0)


def test_print_config_round_trips_every_value(tmp_path):
    """What --print-config prints parses back to the same config (no NaN, no None)."""
    config = config_from_dict({"train": {"learning_rate": 1e-7, "negatives": "256"},
                               "split": {"ratios": [0.7, 0.15, 0.15], "seed": 4294967295},
                               "eval": {"ks": [5], "early_stop": "recall@5"}})
    assert config_from_dict(tomllib.loads(to_toml(config))) == config


SERVE_CASES = [
    (["--port", "-1"], "--port is -1, but it must be between 0 and 65535"),
    (["--port", "70000"], "--port is 70000"),
    (["--threads", "0"], "--threads is 0, but it must be between 1 and 1024"),
    (["--workers", "0"], "--workers is 0, but it must be between 1 and 64"),
    (["--poll-seconds", "nan"], "--poll-seconds is nan, but it must be a finite number"),
    (["--grace-seconds", "-1"], "--grace-seconds is -1.0, but it must be at least 0.0"),
    (["--max-message-mb", "4096"], "--max-message-mb is 4096, but it must be between 1 and 2047"),
    (["--num-versions", "0"], "--num-versions is 0, but it must be at least 1"),
    (["--max-batch", "0"], "--max-batch is 0"),
    (["--model-name", " "], "--model-name is empty"),
]


@pytest.mark.parametrize("options,message", SERVE_CASES)
def test_bad_serve_options_name_the_option(tmp_path, capsys, options, message):
    """ServeConfig validates itself in the same style; the server never starts."""
    code, out, err = run_cli(["serve", "--model-base", str(tmp_path)] + options, capsys)
    assert code == 2 and err.startswith(f"tfrec: error: {message}") and err.count("\n") == 1, err
    assert "serving model" not in out + err


def test_serve_config_in_code():
    from tfrec.serving.server import ServeConfig

    config = ServeConfig(model_base="models/tfrec", poll_seconds=0)
    assert config.model_base == Path("models/tfrec") and config.poll_seconds == 0.0
    with pytest.raises(TfrecError, match="--workers is 0"):
        ServeConfig(model_base=Path("x"), workers=0)
