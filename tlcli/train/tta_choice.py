"""Whether a stage saves its model with mirror test-time augmentation inside (`model.tta`).

>>> stage_saves_tta("auto", "finetune", search_chose_mirror=True)
True
>>> stage_saves_tta("auto", "unfreeze"), stage_saves_tta("flip", "pretrain")
(False, False)
"""

from __future__ import annotations

from tlcli.rundir import TARGET_STAGES


def stage_saves_tta(
    setting: str, stage: str, *, finetune_saved_tta: bool = False, search_chose_mirror: bool = False
) -> bool:
    """`tta: flip`: every target stage; `auto`: finetune when its head search chose mirror
    images, unfreeze when finetune saved TTA; `off`: none. Pretrain never (its model is a base)."""
    if stage not in TARGET_STAGES or setting == "off":
        return False
    if setting == "flip":
        return True
    return search_chose_mirror if stage == "finetune" else finetune_saved_tta
