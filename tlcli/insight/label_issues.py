"""Likely label errors: images whose own label the data's other images disagree with.

k heads (multinomial logistic regression, scikit-learn) are trained on the frozen base's
features, each on all folds but one; each image is scored by the head that never saw it
(out-of-fold probabilities). Confident learning (cleanlab's `find_label_issues`, filter
"both") picks the images whose given label is unlikely given the class confusion it estimates,
and of those the doctor keeps the ones whose given label gets a probability below
MAX_LABEL_PROBABILITY, the suggested label being the most likely class.

How MAX_LABEL_PROBABILITY and C were chosen: docs/notes-from-code.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FOLDS = 5
REGULARISATION = 0.01  # scikit-learn's C
MAX_LABEL_PROBABILITY = 0.05


@dataclass
class LabelIssues:
    rows: np.ndarray  # image indices, most likely errors first
    suggested: np.ndarray  # suggested class per row
    given_probability: np.ndarray  # out-of-fold probability of the given label, per row
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why


def find_label_issues(
    features: np.ndarray, labels: np.ndarray, classes: list[str], seed: int = 0
) -> LabelIssues:
    """Out-of-fold probabilities from FOLDS heads, then confident learning (see above)."""
    # the optional `doctor` extra (run_doctor checks it first)
    from cleanlab.filter import find_label_issues as cleanlab_issues

    counts = np.bincount(labels, minlength=len(classes))
    usable = [c for c in range(len(classes)) if counts[c] >= 2]
    notes = [
        f"class {classes[c]} has {counts[c]} image(s): its labels cannot be checked "
        "(it needs at least 2)"
        for c in range(len(classes))
        if 0 < counts[c] < 2
    ]
    if len(usable) < 2:
        notes.append("label errors need two classes with 2 images or more: not checked")
        return _none(notes)
    keep = np.flatnonzero(np.isin(labels, usable))
    remap = np.full(len(classes), -1)
    remap[usable] = np.arange(len(usable))
    local = remap[labels[keep]]
    probabilities = out_of_fold_probabilities(features[keep], local, seed)
    ranked = cleanlab_issues(
        local, probabilities, filter_by="both", return_indices_ranked_by="self_confidence"
    )
    given = probabilities[ranked, local[ranked]]
    ranked, given = ranked[given < MAX_LABEL_PROBABILITY], given[given < MAX_LABEL_PROBABILITY]
    suggested = np.asarray(usable)[probabilities[ranked].argmax(axis=1)]
    return LabelIssues(keep[ranked], suggested, given, notes)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Each image's class probabilities from the head trained on the other folds."""
    # the optional `doctor` extra (run_doctor checks it first)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = int(min(FOLDS, np.bincount(labels).min()))
    head = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION, max_iter=500))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return cross_val_predict(head, features, labels, cv=splitter, method="predict_proba")


def _none(notes: list[str]) -> LabelIssues:
    empty = np.zeros(0, dtype=np.int64)
    return LabelIssues(empty, empty, np.zeros(0), notes)
