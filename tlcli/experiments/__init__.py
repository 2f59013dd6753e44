"""Experiments over runs: sweeps of a config's keys, comparing runs, the learning-rate finder.

    space.py     the search space: Optuna's suggestions for a trial, applied to the config
    study.py     the Optuna study: storage, sampler, pruner, heartbeats, re-queuing dead trials
    trial.py     one trial: a normal run folder under <sweep>/trials/NNNN/, pruned per epoch
    sweep.py     `sweep`: trials until the study has its budget, then the results, in
                 <output_dir>/<name>-sweep/
    results.py   results.csv/json, the table, sweep.png and best.yaml
    names.py     short names of dotted keys, for tables
    compare.py   `compare`: runs and sweeps side by side, the config keys that differ
    lr_find.py   `lr_find`: the learning-rate range test (Smith, 2017) on a stage's inputs
    lr_suggest.py  the rules that turn the test's losses into a suggested rate (NumPy only)

Optuna is an optional extra (`pip install 'tlcli[sweep]'`); compare and lr_find need none.

May import: `tlcli.train`, `tlcli.serve`, `tlcli.cache`, `tlcli.data`, `tlcli.model`,
`tlcli.runtime`, `tlcli.config`, the root helpers.
"""
