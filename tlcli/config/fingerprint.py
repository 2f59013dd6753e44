"""What a stage's result depends on: the config keys that resume and reuse compare.

>>> flatten({"finetune": {"epochs": 3, "optimizer": {"name": "adam"}}})
{'finetune.epochs': 3, 'finetune.optimizer.name': 'adam'}
"""

from __future__ import annotations

from typing import Any

from tlcli.config.schema import Config


def stage_fingerprint(config: Config, stage: str) -> dict[str, Any]:
    """The config keys a stage's result depends on, flattened: what resume and reuse compare.

    A stage depends on the seed, its data, the model and its own section, and on the stages it
    starts from (pretrain, when the model reuses it; finetune, for unfreeze).
    """
    dump = config.model_dump(mode="json")
    if stage == "pretrain":
        parts = {
            "seed": dump["seed"],
            "pretrain": dump["pretrain"],
            "pretrain_data": config.stage_data("pretrain").model_dump(mode="json"),
            "model.base": dump["model"]["base"],
            "model.pooling": dump["model"]["pooling"],
        }
        return flatten(parts)
    parts = {"seed": dump["seed"], "data": dump["data"], "model": dump["model"]}
    parts["finetune"] = dump["finetune"]
    if stage == "unfreeze":
        parts["unfreeze"] = dump["unfreeze"]
    fingerprint = flatten(parts)
    if "pretrain" in (config.model.weights, config.model.head):
        fingerprint.update(stage_fingerprint(config, "pretrain"))
    return fingerprint


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: configs compared key by key."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
