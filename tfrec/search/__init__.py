"""Architecture search (`tfrec search`): Keras Tuner oracles propose GNN designs from the
[search] space, each trial trains one tfrec config and is scored on the validation split.

    space.py        [search] -> Keras Tuner HyperParameters; a trial's values -> a Config
    evolution.py    regularised evolution as a Keras Tuner Oracle
    oracles.py      the three strategies, with the minute budget, progress and median stopping
    tuner.py        the kt.Tuner whose run_trial trains one config (model inputs cached)
    leaderboard.py  trials -> leaderboard.csv, the printed table, best.toml
    run.py          the orchestration of `tfrec search`
"""
