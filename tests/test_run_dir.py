"""Run folders under hostile conditions: damaged checkpoints, partial checkpoint writes, two
trainers at once, a failed first attempt, a run that diverges before its first checkpoint."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from tfrec.cli import main
from tfrec.errors import TfrecError
from tfrec.train import fit as fit_module
from tfrec.train.run_dir import LOCK_NAME, RunDir

TINY = Path(__file__).parent / "data" / "tiny"
TINY_TOML = """[model]\ndim = 8\nlayers = 2\n[text]\nmode = "off"\n
[train]\nepochs = 1\nbatch_size = 4\npatience = 10\n
[split]\nmethod = "temporal"\nratios = [0.6, 0.2, 0.2]\n"""


@pytest.fixture
def fake_run(tmp_path) -> RunDir:
    """A run folder with checkpoints ckpt-1, ckpt-2 (latest) and best/ckpt-1 of two variables
    (written by TensorFlow's CheckpointManager, as training does)."""
    ckpt = tf.train.Checkpoint(w=tf.Variable(tf.ones([64, 8])), epoch=tf.Variable(0))
    run = RunDir(tmp_path / "run")
    latest = tf.train.CheckpointManager(ckpt, str(run.checkpoints), max_to_keep=2)
    best = tf.train.CheckpointManager(ckpt, str(run.best_checkpoints), max_to_keep=1)
    for epoch in (1, 2):
        ckpt.epoch.assign(epoch)
        if epoch == 1:
            best.save(checkpoint_number=epoch)
        latest.save(checkpoint_number=epoch)
    return run


def test_whole_checkpoints_are_returned(fake_run, tmp_path):
    assert fake_run.latest_checkpoint() == str(fake_run.checkpoints / "ckpt-2")
    assert fake_run.best_checkpoint() == str(fake_run.best_checkpoints / "ckpt-1")
    assert fake_run.kept_checkpoint_note() == ("the last good checkpoint (epoch 2) is kept in "
                                               f"{fake_run.checkpoints}")
    empty = RunDir(tmp_path / "empty")
    assert empty.latest_checkpoint() is None
    assert empty.kept_checkpoint_note() == "no epoch finished, so no checkpoint was written"
    with pytest.raises(TfrecError, match="has no best checkpoint yet: train first"):
        empty.best_checkpoint()


def _garbage(path: Path, size: int = 300):
    path.write_bytes(bytes(range(256)) * (size // 256) + bytes(range(size % 256)))


DAMAGE = {  # how -> (which method finds it, the file the message must name)
    "random bytes in the state file": (
        lambda c: _garbage(c / "checkpoint"), "latest", "checkpoint state file {c}/checkpoint "
        "is damaged"),
    "text that is no state": (
        lambda c: (c / "checkpoint").write_text("hello\n"), "latest",
        "checkpoint state file {c}/checkpoint is damaged (it names no checkpoint)"),
    "state naming missing files": (
        lambda c: [p.unlink() for p in c.glob("ckpt-*")], "latest",
        'checkpoint state file {c}/checkpoint names "ckpt-2", whose files are missing'),
    "corrupt index": (
        lambda c: _garbage(c / "ckpt-2.index", 2000), "latest",
        "checkpoint file {c}/ckpt-2.index is damaged (not an sstable"),
    "truncated data": (
        lambda c: os.truncate(c / "ckpt-2.data-00000-of-00001", 100), "latest",
        "checkpoint file {c}/ckpt-2.data-00000-of-00001 is damaged or cut short"),
    "missing data": (
        lambda c: (c / "ckpt-2.data-00000-of-00001").unlink(), "latest",
        "checkpoint file {c}/ckpt-2.data-* is missing"),
    "corrupt best index": (
        lambda c: _garbage(c / "best" / "ckpt-1.index", 2000), "best",
        "checkpoint file {c}/best/ckpt-1.index is damaged"),
    "truncated best data": (
        lambda c: os.truncate(c / "best" / "ckpt-1.data-00000-of-00001", 10), "best",
        "checkpoint file {c}/best/ckpt-1.data-00000-of-00001 is damaged or cut short"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_checkpoint_names_the_file_and_what_to_do(fake_run, case):
    damage, method, message = DAMAGE[case]
    damage(fake_run.checkpoints)
    check = fake_run.latest_checkpoint if method == "latest" else fake_run.best_checkpoint
    with pytest.raises(TfrecError) as e:
        check()
    text = str(e.value)
    assert text.startswith(message.format(c=fake_run.checkpoints)), text
    assert text.endswith(f"delete {fake_run.checkpoints} to train again from scratch, or choose "
                         "a new --run-dir") and "\n" not in text


def test_partial_checkpoint_writes_are_removed(fake_run):
    """A kill during a save leaves TensorFlow's `<prefix>_temp/` folder behind."""
    temps = [fake_run.best_checkpoints / "ckpt-2_temp", fake_run.checkpoints / "ckpt-3_temp"]
    for t in temps:
        t.mkdir()
        (t / "part-00000-of-00001.index").write_bytes(b"\0" * 10)
    keep = fake_run.checkpoints / "notes_temp"  # a file, not TensorFlow's folder: kept
    keep.write_text("mine")
    assert sorted(fake_run.remove_partial_checkpoints()) == sorted(temps)
    assert not any(t.exists() for t in temps) and keep.exists()
    assert fake_run.latest_checkpoint().endswith("ckpt-2")  # the real checkpoints are kept


def test_a_second_lock_is_refused_and_the_lock_goes_with_its_holder(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        assert run.lock_file.read_text() == f"{os.getpid()}\n"
        with pytest.raises(TfrecError, match=rf"run folder {run.path} is in use by another "
                           rf"tfrec train \(pid {os.getpid()}\); wait for it to end or choose "
                           "another --run-dir"):
            with RunDir(tmp_path / "run").lock():
                pass
    assert not run.lock_file.exists()
    with run.lock():  # free again
        pass


HOLDER = """
import sys, time
from tfrec.train.run_dir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(600)
"""


def _hold_lock(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                              env=env, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_second_train_on_a_run_folder_is_refused_and_a_crashed_holder_frees_it(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    holder = _hold_lock(run)
    try:
        code = main(["train", "--schema", str(TINY / "schema.pbtxt"), "--config", str(config),
                     "--run-dir", str(run), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err == (f"tfrec: error: run folder {run} is in use by another tfrec "
                                     f"train (pid {holder.pid}); wait for it to end or choose "
                                     "another --run-dir\n")
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: no clean-up code runs
        holder.wait()
    assert (run / LOCK_NAME).exists()  # left behind by the crash, but no longer held
    with RunDir(run).lock():
        pass
    assert RunDir(run).check(str(TINY / "schema.pbtxt"), _config(config)) is False


def _config(path):
    from tfrec.config import load_config

    return load_config(path)


def test_failed_first_attempt_leaves_no_run_folder(tmp_path, capsys):
    """Bad data found while preparing: the folder the attempt created is gone, so a corrected
    re-run (even with another schema or config) starts afresh instead of being refused."""
    data = tmp_path / "tiny"
    shutil.copytree(TINY, data)
    (data / "users.tsv").write_text((data / "users.tsv").read_text() + "u5\n")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    run = tmp_path / "run"
    code = main(["train", "--schema", str(data / "schema.pbtxt"), "--config", str(config),
                 "--run-dir", str(run), "--no-progress"])
    assert code == 2 and "users.tsv, line 6: 1 fields" in capsys.readouterr().err
    assert not run.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, config file) of one epoch on the tiny graph."""
    tmp = tmp_path_factory.mktemp("trained")
    config = tmp / "tiny.toml"
    config.write_text(TINY_TOML)
    run = tmp / "run"
    assert main(["train", "--schema", str(TINY / "schema.pbtxt"), "--config", str(config),
                 "--run-dir", str(run), "--no-progress"]) == 0
    return run, config


@pytest.fixture
def trained_copy(trained, tmp_path) -> tuple[Path, list[str]]:
    run, config = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, ["--schema", str(TINY / "schema.pbtxt"), "--config", str(config),
                  "--run-dir", str(copy), "--no-progress"]


def test_cli_refuses_a_damaged_checkpoint_with_exit_2(trained_copy, capsys):
    run, args = trained_copy
    _garbage(run / "checkpoints" / "checkpoint")
    before = sorted(p.name for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["train"] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfrec: error: checkpoint state file {run}/checkpoints/checkpoint is "
                          "damaged") and err.count("\n") == 1
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written
    os.truncate(run / "checkpoints" / "best" / "ckpt-1.data-00000-of-00001", 10)
    assert main(["evaluate", "--run-dir", str(run)]) == 2
    assert (f"checkpoint file {run}/checkpoints/best/ckpt-1.data-00000-of-00001 is damaged"
            in capsys.readouterr().err)


def test_rerun_removes_a_partial_checkpoint_write(trained_copy, capsys):
    run, args = trained_copy
    temp = run / "checkpoints" / "best" / "ckpt-2_temp"
    temp.mkdir()
    (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 100)
    assert main(["train"] + args) == 0  # a finished run: re-evaluated
    assert not temp.exists() and not (run / LOCK_NAME).exists()


def test_divergence_in_the_first_epoch_points_at_no_checkpoint(tmp_path, monkeypatch):
    class Poisoned(fit_module.RetrievalHead):
        def call(self, *args):
            return super().call(*args) * float("nan")

    monkeypatch.setattr(fit_module, "RetrievalHead", Poisoned)
    from tfrec.train.run import train

    run = tmp_path / "run"
    with pytest.raises(fit_module.TrainingDiverged) as e:
        train(str(TINY / "schema.pbtxt"), _config_text(tmp_path), str(run), progress=False,
              log=lambda s: None)
    assert e.value.exit_code == 3
    assert str(e.value) == ("the training loss became nan at epoch 1, step 1; training stopped "
                            "and no epoch finished, so no checkpoint was written: lower "
                            "train.learning_rate and train into a new --run-dir")
    assert not (run / "checkpoints").exists() and not (run / LOCK_NAME).exists()


def _config_text(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return _config(path)


def test_an_empty_validation_split_is_refused_before_training(tmp_path, capsys):
    """Early stopping needs validation pairs: with 0.8/0.1/0.1 no tiny user gets one (u1's 5
    pairs: round(0.5) = 0, half to even; the others have fewer than 3), so nothing would ever
    be the best epoch."""
    run = tmp_path / "run"
    schema = str(TINY / "schema.pbtxt")
    assert main(["train", "--schema", schema, "--run-dir", str(run), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"tfrec: error: the validation split of {schema} is empty (0 of 14 interaction pairs; "
        "users with fewer than 3 pairs only train), but training stops early on it: give it "
        "pairs (split.ratios, --ratios or --split-dir)\n")
    assert not run.exists()
