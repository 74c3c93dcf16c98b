"""bench/search.py's bookkeeping (no search is run): the grid's order, the results file that
makes the bench resumable, a cell's row read from its folders, the configs, the table."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_search", ROOT / "bench/search.py")
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)
Cell = bs.Cell


def _row(cell: Cell, valid: float, test: float, minutes: float, load=(1.0, 3.0)) -> dict:
    return {"dataset": cell.dataset, "strategy": cell.strategy, "seed": cell.seed,
            "valid": valid, "test": test, "minutes": minutes, "load": list(load)}


def test_grid_runs_the_default_first_then_seed_by_seed():
    assert [(c.dataset, c.name) for c in bs.grid(["ml", "ec"], ["evolution", "random"], [0, 1])] \
        == [("ml", "default"), ("ml", "evolution-0"), ("ml", "random-0"), ("ml", "evolution-1"),
            ("ml", "random-1"), ("ec", "default"), ("ec", "evolution-0"), ("ec", "random-0"),
            ("ec", "evolution-1"), ("ec", "random-1")]


def test_a_finished_cell_is_never_run_again(tmp_path, monkeypatch, capsys):
    out = tmp_path / "trials2-epochs1"
    out.mkdir()
    done = Cell("ecommerce", "evolution", 0)
    # one finished cell, then a line torn by a crash while it was being written
    (out / "results.jsonl").write_text(json.dumps(_row(done, 0.07, 0.06, 2.0)) + "\n{\"data")
    ran = []

    def fake_run_cell(cell, folder, trials, epochs):
        ran.append(cell.name)
        return _row(cell, 0.05, 0.04, 1.0)

    monkeypatch.setattr(bs, "run_cell", fake_run_cell)
    argv = ["search.py", "--datasets", "ecommerce", "--strategies", "evolution",
            "--seeds", "0,1", "--trials", "2", "--epochs", "1", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bs.main()
    assert ran == ["default", "evolution-1"]
    rows = bs.read_results(out / "results.jsonl")
    assert set(rows) == {Cell("ecommerce", "default", None), done,
                         Cell("ecommerce", "evolution", 1)}
    assert rows[Cell("ecommerce", "evolution", 1)]["trials_budget"] == 2
    ran.clear()
    bs.main()  # everything is done: nothing runs, the table is printed again
    assert ran == []
    assert capsys.readouterr().out.splitlines()[-1] == "cells to run: none"


def test_the_table_gives_the_mean_and_each_seed():
    d, e0, e1 = Cell("ec", "default", None), Cell("ec", "evolution", 0), Cell("ec", "evolution", 1)
    results = {d: _row(d, 0.076, 0.072, 3.0, (2.0, 2.5)),
               e1: _row(e1, 0.08, 0.07, 12.0, (4.0, 9.4)),
               e0: {**_row(e0, 0.07, 0.06, 10.0), "winner": {"conv": "sage", "layers": "2"}}}
    lines = bs.summary(results, bs.grid(["ec"], ["evolution", "random"], [0, 1]))
    default, evolution, missing = lines[1:]
    assert default.split() == ["ec", "default", "-", "0.0760", "0.0720", "3.0", "2-2"]
    # mean of 0.07 and 0.08 = 0.0750; of 0.06 and 0.07 = 0.0650; minutes (10 + 12) / 2 = 11.0;
    # loads 1.0, 3.0, 4.0, 9.4 -> "1-9"; the winner shown is seed 0's
    assert evolution.split() == ["ec", "evolution", "0,1", "0.0750", "0.0700", "0.0800",
                                 "0.0650", "0.0600", "0.0700", "11.0", "1-9", "conv=sage",
                                 "layers=2"]
    assert missing == "cells to run: ec random-0, ec random-1"


def test_a_cell_row_is_read_from_its_search_folder(tmp_path):
    folder = tmp_path / "evolution-3"
    folder.mkdir()
    (tmp_path / "evolution-3.seconds").write_text("90.0\n")
    (folder / "winner.json").write_text(json.dumps(
        {"trial": "1", "valid_ndcg@20": 0.25, "metrics": {"test": {"ndcg@20": 0.3}}}))
    keys = ",".join(bs.WINNER_KEYS)
    (folder / "leaderboard.csv").write_text(
        f"trial,status,{keys},seconds\n"
        "0,failed,gatv2,1,32,sum,True,False,1.0,0.001,\n"
        "1,completed,lightgcn,3,64,mean,True,True,0.1,0.01,60.0\n"
        "2,median-stopped,sage,2,32,last,False,True,0.3,0.005,30.0\n")
    cell = Cell("movielens", "evolution", 3)
    assert bs.finished(cell, folder)
    row = bs.collect(cell, folder)
    assert row == {"dataset": "movielens", "strategy": "evolution", "seed": 3, "minutes": 1.5,
                   "valid": 0.25, "test": 0.3, "trials": 3, "failed": 1,
                   "trial_minutes": 1.5,  # (60 + 30) s; a failed trial has no seconds
                   "winner": {"conv": "lightgcn", "layers": "3", "dim": "64", "combine": "mean",
                              "use_text": "True", "use_kg": "True", "temperature": "0.1",
                              "learning_rate": "0.01"}}
    assert not bs.finished(Cell("movielens", "random", 3), tmp_path / "random-3")


def test_configs_switch_the_blend_off_and_set_the_budget(tmp_path):
    search, default = bs.bench_configs("movielens", 6, 3, tmp_path)
    s, d = bs.load_config(search), bs.load_config(default)
    shipped = bs.load_config(ROOT / "configs/movielens.toml")
    assert shipped.blend.item_item == "ease"  # the shipped file blends; the bench does not
    assert s.blend.item_item == d.blend.item_item == "off"
    assert shipped.model.members > 1 and s.model.members == d.model.members == 1
    assert (s.search.epochs, s.search.patience, s.search.population,
            s.search.sample) == (3, 2, 3, 2)
    assert (d.train.epochs, d.train.patience) == (3, 2)
    assert s.train.learning_rate == d.train.learning_rate == shipped.train.learning_rate
