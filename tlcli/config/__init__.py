"""The config: one typed object from the YAML file to every stage. No TensorFlow here.

    schema.py       the pydantic models: keys, types, defaults, cross-key checks
    loading.py      YAML file + `--set` overrides -> a validated, path-checked `Config`
    keys.py         every dotted key of the schema, found by one walk; setting a dotted key
    messages.py     strict YAML reading, and each validation error as one line naming file and key
    fingerprint.py  the keys a stage's result depends on (what resume and reuse compare)
    sweep.py        the sweep section: search-space forms, and checking each key against the schema
    reference.py    the config reference of the docs, rendered from the schema

May import: the root helpers (`tlcli.errors`, `tlcli.bases`, `tlcli.rundir`), pydantic, PyYAML.
Everything above imports the config; the config imports nothing above it, and never TensorFlow,
so `tlcli --help`, `tlcli config` and every config error stay instant.

>>> from tlcli.config import load_config
>>> load_config("configs/quickstart.yaml").model.base
'vgg16'
"""

from tlcli.config.fingerprint import flatten, stage_fingerprint
from tlcli.config.loading import apply_overrides, check_paths, load_config
from tlcli.config.schema import (
    SPECIAL_WEIGHTS,
    AugmentConfig,
    Config,
    DataConfig,
    DataOverride,
    EarlyStoppingConfig,
    EvaluateConfig,
    FinetuneConfig,
    HeadConfig,
    ModelConfig,
    OptimizerConfig,
    PretrainConfig,
    RunConfig,
    ScheduleConfig,
    Section,
    TrainStage,
    UnfreezeConfig,
    weights_label,
)

__all__ = [
    "SPECIAL_WEIGHTS",
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DataOverride",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "FinetuneConfig",
    "HeadConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PretrainConfig",
    "RunConfig",
    "ScheduleConfig",
    "Section",
    "TrainStage",
    "UnfreezeConfig",
    "apply_overrides",
    "check_paths",
    "flatten",
    "load_config",
    "stage_fingerprint",
    "weights_label",
]
