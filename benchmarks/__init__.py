"""tlcli's benchmark suite: `python -m benchmarks <suite> [options]`, one sub-command per suite.

    __main__.py     the entry point: the suites by name, options every suite takes, recording
    harness.py      paths, launching and timing processes, the environment, result files
    synthetic.py    images the suites make themselves (`--synthetic`: no ../shared needed)
    report.py       `python -m benchmarks report`: the tables of docs/benchmarks.md
    plain_keras.py  the Keras guide's recipe written by hand (run as its own process)
    forward_floor.py  one forward pass of a base over a dataset (run as its own process)
    <suite>.py      one suite each: `add_arguments(parser)`, `run(args) -> results`,
                    `label(args)`, and `render(records)`, its table for the docs

Suites import tlcli through its public functions where one exists, and launch `tlcli` as a user
does where the whole process is measured. Results go to `benchmarks/results/<suite>/`.
"""
