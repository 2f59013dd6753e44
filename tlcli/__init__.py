"""tlcli: transfer learning for image classifiers, driven by one YAML config.

The packages, from the top down (each imports only those below it; `data` and `model` never
import each other):

    cli/        the command line: parses, loads the config, calls one function
    api/        what each command does, as a plain function (stages, evaluation, reports)
    serve/      a trained run in use: predict, export, parity checks
    train/      the stages: pretrain, finetune, unfreeze, evaluate; fitting; the feature cache
    data/  model/  runtime/
                images to arrays; the network; TensorFlow, tf.distribute and precision
    config/     the typed config: schema, loading, messages (no TensorFlow)
    errors.py  console.py  files.py  rundir.py  bases.py
                the root helpers every package may use

Each package's `__init__` says what it may import, and `tests/test_layout.py` reads it there.
The root helpers import no package, only one another (May import: the root helpers).

Every command is a plain function as well (`tlcli.api`), writing the same files::

    from tlcli.config import load_config
    from tlcli import api

    cfg = load_config("configs/quickstart.yaml")
    api.run(cfg)
"""

__version__ = "0.1.0"
