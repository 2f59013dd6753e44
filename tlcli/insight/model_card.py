"""MODEL_CARD.md in an evaluated stage's folder: what the model is, what it was trained on, how
well it does, where it is weak, and how to make it again (after Mitchell et al. 2019, "Model
Cards for Model Reporting", https://arxiv.org/abs/1810.03993, cut to what a run knows).

Sections: data (classes, images per split, files skipped and converted, the doctor's findings
when it ran), recipe (base, weights, stages and their key settings), metrics (per class, with
calibration and the most-confused pairs), weak classes and known limits, versions, and the
command that reproduces the run. Written from the run folder alone (`run_facts`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlcli.config import weights_label
from tlcli.files import write_text
from tlcli.insight.errors_report import confused_pairs
from tlcli.insight.run_facts import RunFacts, StageFacts
from tlcli.rundir import CONFIG_FILE, MODEL_CARD

WEAK_CLASSES = 3  # the lowest-recall classes named
FEW_IMAGES = 30  # a class scored on fewer test images than this gets a caveat


def write_model_card(facts: RunFacts, stage: StageFacts) -> Path:
    target = stage.folder / MODEL_CARD
    write_text(target, model_card(facts, stage))
    return target


def model_card(facts: RunFacts, stage: StageFacts) -> str:
    metrics = stage.metrics or {}
    model = facts.config.get("model", {})
    weights = weights_label(str(model.get("weights")))
    lines = [
        f"# Model card: {facts.name}, {stage.name}",
        "",
        f"An image classifier for {len(metrics.get('labels', []))} classes: "
        f"{model.get('base', '?')} (weights: {weights}) with a new head, "
        f"trained by tlcli {facts.versions.get('tlcli', '')}. The model is "
        f"`{stage.folder.name}/model.keras`: raw RGB pixels (0..255) in, one probability per "
        f"class out, in the order of `{stage.folder.name}/labels.txt`.",
        "",
        *_data(facts),
        *_recipe(facts),
        *_metrics(stage),
        *_limits(facts, stage),
        *_versions(facts),
        *_reproduce(facts, stage),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _data(facts: RunFacts) -> list[str]:
    report = facts.data_report
    classes = report.get("classes", [])
    splits = report.get("splits", {})
    lines = ["## Data", "", f"Classes ({len(classes)}): {', '.join(classes)}.", ""]
    if splits:
        names = list(splits)
        lines += [
            "| class | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
            *(
                f"| {c} | " + " | ".join(str(splits[n]["counts"].get(c, 0)) for n in names) + " |"
                for c in classes
            ),
            "| **all** | " + " | ".join(str(splits[n]["images"]) for n in names) + " |",
            "",
            "Where each split came from: "
            + ", ".join(f"{n} from {splits[n]['source']}" for n in names)
            + ".",
            "",
        ]
    skipped, converted = report.get("skipped", []), report.get("converted", [])
    lines.append(
        f"Files skipped: {len(skipped)}; converted: {len(converted)} "
        "(each with its reason in `data_report.json`)."
    )
    lines += [f"- skipped `{s['path']}`: {s['reason']}" for s in skipped[:10]]
    lines += [f"- converted `{c['path']}`: {'; '.join(c['notes'])}" for c in converted[:10]]
    lines += ["", *_doctor(facts), ""]
    return lines


def _doctor(facts: RunFacts) -> list[str]:
    doctor = facts.doctor
    if doctor is None:
        return ["Data doctor: not run (`tlcli doctor CONFIG` looks for near-duplicates, likely "
                "label errors and outliers)."]  # fmt: skip
    counts = doctor.get("counts", {})
    found = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"
    lines = [f"Data doctor ({doctor.get('images', '?')} images): {found}; see `doctor/doctor.csv`."]
    lines += [f"- {note}" for note in doctor.get("notes", [])]
    return lines


def _recipe(facts: RunFacts) -> list[str]:
    cfg = facts.config
    data, model = cfg.get("data", {}), cfg.get("model", {})
    head = model.get("head", {})
    head_text = "pretrain's hidden layers" if head == "pretrain" else (
        f"dense {head.get('dense', [])}, dropout {head.get('dropout')}"
    )  # fmt: skip
    augment = {k: v for k, v in (data.get("augment") or {}).items() if v not in (0, 0.0, "none")}
    weights = weights_label(str(model.get("weights")))
    lines = [
        "## Recipe",
        "",
        f"- base: {model.get('base')}, weights: {weights}, "
        f"pooling: {model.get('pooling')}, head: {head_text}",
        f"- images: {data.get('image_size')} px, batch {data.get('batch_size')}, class weights: "
        f"{data.get('class_weight')}, augmentation: {augment or 'none'}, seed {cfg.get('seed')}",
    ]
    for stage in facts.stages.values():
        lines += [f"- {line}" for line in training_lines(facts, stage)]
    return [*lines, ""]


def training_lines(facts: RunFacts, stage: StageFacts) -> list[str]:
    """How a stage made its model, in sentences: what trained and how, what the head search
    chose, flip test-time augmentation, and the weight mix unfreeze ended with."""
    settings = facts.config.get(stage.name) or {}
    state, search = stage.state, stage.search
    optimizer = settings.get("optimizer", {})
    configured = (
        f"{optimizer.get('name')} at {optimizer.get('learning_rate')}, schedule "
        f"{(settings.get('schedule') or {}).get('name')}, label smoothing "
        f"{settings.get('label_smoothing')}"
    )
    if "search" in state:
        chosen = state["search"]
        mirrored = ", with mirrored images" if chosen.get("mirror") else ""
        baseline = chosen.get("configured_head_cv_accuracy")
        against = (
            f"; the head as configured ({configured}, {settings.get('epochs')} epochs) scored "
            f"{baseline:.3f} on the same folds"
            if baseline is not None
            else ""
        )
        lines = [
            f"{stage.name}: the head was fitted by the head search ({_candidates(search)}"
            f"{(search or {}).get('folds', '?')}-fold cross-validation on train + val): L2 "
            f"{chosen['lambda']:g}{mirrored}, CV accuracy {chosen['cv_accuracy']:.3f}{against}; "
            "refitted on train"
        ]
    else:
        trained = f"{state.get('epochs', '?')} of {settings.get('epochs')} epochs" + (
            ", stopped early" if state.get("stopped_early") else ""
        )
        lines = [f"{stage.name}: {trained}, {configured}{_unfrozen(stage.name, settings)}"]
        if search is not None:
            lines[0] += (
                f" (the head search tried {_candidates(search).rstrip(', ')} and kept this head: "
                f"no candidate beat it on the folds, {search['chosen']['cv_accuracy']:.3f} "
                f"against {search['configured_head_cv_accuracy']:.3f})"
            )
    mix = state.get("weight_mix")
    if mix:
        scores = " ".join(f"{a:.3f}" for a in mix["val_accuracy"])
        lines.append(
            f"{stage.name} ends with the weight mix {mix['chosen']:g} of finetune -> unfreeze "
            f"(mixes {', '.join(f'{m:g}' for m in mix['mixes'])} scored {scores} on validation)"
        )
    if state.get("tta"):
        lines.append(
            f"{stage.name}: flip test-time augmentation inside the model (it averages the "
            "prediction of the image and of its mirror)"
        )
    return lines


def _candidates(search: dict | None) -> str:
    return f"{len(search['candidates'])} candidate heads, " if search else ""


def _unfrozen(name: str, settings: dict) -> str:
    if name != "unfreeze":
        return ""
    return ", unfrozen: " + ", ".join(
        f"{k} {settings[k]}" for k in ("layers", "from_layer", "from_block")
        if settings.get(k) is not None
    )  # fmt: skip


def _metrics(stage: StageFacts) -> list[str]:
    metrics = stage.metrics
    if metrics is None:
        return ["## Metrics", "", "Not evaluated yet.", ""]
    calibration = metrics.get("calibration", {})
    lines = [
        f"## Metrics ({metrics['split']} split, {metrics['images']} images)",
        "",
        f"Accuracy {metrics['accuracy']:.3f}; macro F1 {metrics['f1_macro']:.3f}; "
        f"weighted F1 {metrics['f1_weighted']:.3f}.",
        "",
        "| class | precision | recall | F1 | images |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
            for c, m in metrics["per_class"].items()
        ),
        "",
    ]
    if calibration:
        lines.append(
            f"Calibration: expected calibration error {calibration['ece']:.3f} "
            f"({calibration['bins']} equal-width bins), log loss {calibration['nll']:.3f}."
        )
    if stage.calibration:
        fitted = stage.calibration
        lines.append(
            f"The probabilities are temperature-scaled (T = {fitted['temperature']:.3f}, fitted "
            f"on {fitted['images']} validation images: log loss {fitted['before']['nll']:.3f} -> "
            f"{fitted['after']['nll']:.3f}, ECE {fitted['before']['ece']:.3f} -> "
            f"{fitted['after']['ece']:.3f})."
        )
    else:
        lines.append("The probabilities are not calibrated (no temperature scaling).")
    pairs = confused_pairs(np.asarray(metrics["confusion_matrix"]), metrics["labels"])
    if pairs:
        lines += ["", "Most confused (true -> predicted):", ""]
        lines += [f"- {t} -> {p}: {n} images ({share:.0%} of {t})" for t, p, n, share in pairs]
    return [*lines, ""]


def _limits(facts: RunFacts, stage: StageFacts) -> list[str]:
    lines = ["## Weak classes and known limits", ""]
    metrics = stage.metrics
    if metrics is not None:
        per_class = metrics["per_class"]
        weakest = sorted(per_class, key=lambda c: per_class[c]["recall"])[:WEAK_CLASSES]
        lines.append(
            "Lowest recall: "
            + ", ".join(f"{c} ({per_class[c]['recall']:.3f})" for c in weakest)
            + "."
        )
        few = [c for c, m in per_class.items() if m["support"] < FEW_IMAGES]
        if few:
            lines.append(
                f"- Figures for {', '.join(few)} rest on fewer than {FEW_IMAGES} "
                f"{metrics['split']} images each: read them as rough."
            )
        if stage.calibration and metrics["split"] == stage.calibration.get("fitted_on"):
            lines.append(
                "- The temperature was fitted on the split the metrics come from: the "
                "calibration figures are optimistic."
            )
    lines += [f"- {warning}" for warning in facts.data_report.get("warnings", [])]
    doctor_counts = (facts.doctor or {}).get("counts", {})
    if doctor_counts.get("cross-split duplicate"):
        lines.append(
            f"- The doctor found {doctor_counts['cross-split duplicate']} near-duplicate pair(s) "
            "across splits: scores on held-out images may be inflated."
        )
    lines += [
        "- The model knows only these classes: any image, even of something else, gets one of "
        "them. The probabilities are its confidence, not a check that the image belongs.",
        f"- Trained at {facts.config.get('data', {}).get('image_size')} px on images like the "
        "training folder's; other cameras, framing or lighting may score lower.",
        "",
    ]
    return lines


def _versions(facts: RunFacts) -> list[str]:
    if not facts.versions:
        return []
    return [
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in facts.versions.items()),
        "",
    ]


def _reproduce(facts: RunFacts, stage: StageFacts) -> list[str]:
    config = facts.path / CONFIG_FILE
    commands = [f"tlcli run {config} --set name={facts.name}-again"]
    if stage.calibration:
        commands.append(f"tlcli evaluate {config} --set name={facts.name}-again "
                        f"--stage {stage.name} --calibrate")  # fmt: skip
    return [
        "## Reproduce",
        "",
        "`config.yaml` is the run's config with every key resolved; with the same data, seed "
        "and versions this trains the same model into a new run folder:",
        "",
        "```bash",
        *commands,
        "```",
        "",
    ]
