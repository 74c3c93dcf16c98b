"""Version folders: increasing, never replaced, atomic; bad artifacts fail in one sentence."""

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from test_export_fixtures import make_artifacts

from tfrec.errors import TfrecError
from tfrec.export import versions
from tfrec.export.versions import export_model, list_versions


def _entries(base):
    return sorted(p.name for p in base.iterdir())


def test_versions_increase_and_old_ones_are_kept(tmp_path):
    artifacts = make_artifacts()
    (tmp_path / "notes").mkdir()  # TF Serving and tfrec ignore non-numeric folders
    (tmp_path / ".export-9-leftover").mkdir()
    assert export_model(artifacts, tmp_path) == tmp_path / "1"
    assert export_model(artifacts, str(tmp_path), version=7) == tmp_path / "7"
    assert export_model(artifacts, tmp_path) == tmp_path / "8"
    assert list_versions(tmp_path) == [1, 7, 8]
    assert (tmp_path / "1" / "saved_model.pb").is_file()
    assert _entries(tmp_path) == [".export-9-leftover", "1", "7", "8", "notes"]


def test_an_existing_version_is_refused_and_left_alone(tmp_path):
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "marker").write_text("keep")
    with pytest.raises(TfrecError, match="version 3 already exists"):
        export_model(make_artifacts(), tmp_path, version=3)
    assert _entries(tmp_path / "3") == ["marker"] and _entries(tmp_path) == ["3"]


@pytest.mark.parametrize("version", [0, -2, True, 1.5])
def test_bad_version_numbers(tmp_path, version):
    with pytest.raises(TfrecError, match="positive integer"):
        export_model(make_artifacts(), tmp_path, version=version)


@pytest.mark.parametrize("target, step", [(versions, "_write_warmup"),
                                          (versions.ServingModule, "signatures")])
def test_a_failure_mid_export_leaves_no_version_folder(tmp_path, monkeypatch, target, step):
    export_model(make_artifacts(), tmp_path)  # version 1, must survive

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(target, step, boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(make_artifacts(), tmp_path)
    assert _entries(tmp_path) == ["1"]  # no "2", no staging folder


def test_unserialisable_metadata_fails_cleanly(tmp_path):
    artifacts = dataclasses.replace(make_artifacts(), metadata={"bad": object()})
    with pytest.raises(TfrecError, match="not JSON-serialisable"):
        export_model(artifacts, tmp_path)
    assert _entries(tmp_path) == []


def _broken(**changes):
    return dataclasses.replace(make_artifacts(), **changes)


@pytest.mark.parametrize("changes, message", [
    (dict(user_ids=np.array(["a", "b", "a", "c", "d"])), "user id 'a' appears more than once"),
    (dict(item_ids=np.array(["x"] * 11 + [""])), "empty item id is at row 11"),
    (dict(item_titles=np.array(["t"] * 3)), "item_titles has 3 entries for 12 items"),
    (dict(user_embeddings=np.zeros((5, 3), np.float32)), "one D"),
    (dict(item_embeddings=np.zeros((11, 4), np.float32)), "do not match embeddings"),
    (dict(item_embeddings=np.full((12, 4), np.nan, np.float32)), "item_embeddings contains NaN"),
    (dict(item_bias=np.zeros(11, np.float32)), r"item_bias must be \[I\] = \[12\]"),
    (dict(item_bias=np.full(12, np.inf, np.float32)), "item_bias contains NaN"),
    (dict(seen_indptr=np.array([0, 1, 2])), "seen_indptr must be"),
    (dict(seen_indptr=np.array([0, 3, 2, 4, 8, 10])), "non-decreasing"),
    (dict(seen_indices=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12])), r"item rows in \[0, 12\)"),
])
def test_bad_artifacts_fail_in_one_sentence(tmp_path, changes, message):
    with pytest.raises(TfrecError, match=message) as error:
        export_model(_broken(**changes), tmp_path)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")
    assert _entries(tmp_path) == []


def test_a_version_written_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    # Another exporter finishes version 1 while this one is still writing its files.
    real_write_warmup = versions._write_warmup

    def racing_write_warmup(*args, **kwargs):
        (tmp_path / "1").mkdir()
        (tmp_path / "1" / "saved_model.pb").write_text("the other export")
        real_write_warmup(*args, **kwargs)

    monkeypatch.setattr(versions, "_write_warmup", racing_write_warmup)
    with pytest.raises(TfrecError, match="could not move the export into"):
        export_model(make_artifacts(), tmp_path)
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "the other export"
    assert _entries(tmp_path) == ["1"]


def test_the_next_export_removes_only_stale_staging_folders(tmp_path):
    """A killed export's folder goes; a running export's (locked) and a just-created one stay."""
    killed = tmp_path / ".export-2-killed"
    killed.mkdir()
    (killed / ".lock").write_text("")  # its process is gone, so nobody holds the lock
    old_unlocked = tmp_path / ".export-3-old"
    old_unlocked.mkdir()
    hour_ago = time.time() - 3600
    os.utime(old_unlocked, (hour_ago, hour_ago))
    young_unlocked = tmp_path / ".export-4-young"
    young_unlocked.mkdir()
    running = tmp_path / ".export-5-running"
    running.mkdir()
    holder = subprocess.Popen(  # another process holding the lock, as a live export does
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | "
         "os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); "
         "sys.stdin.read()", str(running / ".lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert export_model(make_artifacts(), tmp_path) == tmp_path / "1"
        assert _entries(tmp_path) == [".export-4-young", ".export-5-running", "1"]
    finally:
        holder.communicate("")
    # Its holder gone (a kill releases the lock too), the next export removes it.
    assert versions.remove_stale_exports(tmp_path) == [running]
    assert not (tmp_path / "1" / ".lock").exists()  # versions carry no lock file
