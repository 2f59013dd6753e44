"""Insight: know your data and your model's mistakes (it reads a run, and changes no model).

    features.py        the frozen base's features of every image, through the run's feature cache
    duplicates.py      near-duplicate pairs, within and across splits
    label_issues.py    likely label errors: out-of-fold probabilities ranked by confident learning
    outliers.py        images far from every other image (a wrong-domain file, say)
    doctor.py          `tlcli doctor`: the three checks, doctor.csv, contact sheets, a summary
    contact_sheet.py   thumbnails in a captioned grid (the doctor's sheets, the error gallery)
    errors_report.py   most-confused pairs, errors.csv, the gallery of mistakes
    calibration.py     the reliability diagram (the temperature is fitted in tlcli.train)
    run_facts.py       what a run folder says about itself, read once for the reports
    model_card.py      MODEL_CARD.md of an evaluated stage
    report_html.py     report.html: one self-contained page per run
    reports.py         every report of an evaluation in one call (after evaluate, or redrawn)

May import: `tlcli.train`, `tlcli.serve`, `tlcli.data`, `tlcli.model`, `tlcli.runtime`,
`tlcli.config`, the root helpers. cleanlab and imagehash (the `doctor` extra) only inside the
doctor's checks; the reports need no extra.
"""
