"""Classify image files with a trained model: the top-k labels of each, as a table, CSV or JSON.

Images are named by files, folders (searched recursively) or glob patterns, expanded here because
not every shell does. They stream through in batches: images are decoded in a thread pool (with
`tlcli.data.images.decode_image`, exactly as in training) ahead of the batch being predicted, its
rows are written, and it is dropped, so thousands of images never sit in memory together. A file
that cannot be read becomes a row with an error and the run goes on; when no image at all could
be classified, the rows are still written and a DataError says so (the CLI exits 2).

Output formats:

- table: one line per image on the terminal: path, then "label probability" per rank.
- csv (long format, one row per image and rank, easy to filter or pivot)::

      path,rank,label,probability,error
      photos/a.jpg,1,disc,0.912345,
      photos/a.jpg,2,square,0.051234,
      photos/broken.jpg,,,,cannot decode: image file is truncated

- json: a list with one object per image, predictions best first::

      [{"path": "photos/a.jpg", "predictions": [{"label": "disc", "probability": 0.912345}]},
       {"path": "photos/broken.jpg", "error": "cannot decode: image file is truncated"}]

Probabilities are rounded to 6 decimals. csv and json go to stdout, or to `output`, written
atomically (complete or not at all).

>>> sources = expand_images(["sample_data/target/test/ring", "no/such/*.png"])
>>> len(sources), sources[-1].problem
(21, 'pattern matches no file')
"""

from __future__ import annotations

import contextlib
import csv
import glob
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from tlcli.console import Console
from tlcli.data.images import DecodedImage, decode_image, list_files, map_in_threads
from tlcli.errors import ConfigError, DataError
from tlcli.files import atomic_path
from tlcli.rundir import LABELS_FILE
from tlcli.serve.formats import PREDICTION_FORMATS
from tlcli.serve.predictor import Predictor, load_predictor

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class ImageSource:
    """One image to classify; `problem` is set when its argument named no file to decode."""

    path: Path
    problem: str | None = None


@dataclass
class Prediction:
    """One image's result: the top labels with probabilities, best first, or why it failed."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


@dataclass
class PredictSummary:
    images: int
    errors: int
    model: Path
    output: Path | None


def expand_images(arguments: list[str]) -> list[ImageSource]:
    """Files as given, folders recursively, glob patterns (`**` too) expanded; duplicates dropped.

    A pattern that matches nothing or an empty folder becomes one source with a problem, so
    it shows in the output instead of vanishing.

    >>> expand_images(["sample_data/target/test/ring/ring_0000.png"])
    [ImageSource(path=PosixPath('sample_data/target/test/ring/ring_0000.png'), problem=None)]
    """
    sources: dict[Path, ImageSource] = {}
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = list_files(path)
            found = files or [ImageSource(path, "folder holds no files")]
        elif path.exists() or not GLOB_CHARACTERS & set(argument):
            found = [path]  # a missing plain path fails when decoded, with the reason
        else:
            matches = sorted(Path(m) for m in glob.glob(argument, recursive=True))
            files = [f for m in matches for f in (list_files(m) if m.is_dir() else [m])]
            found = files or [ImageSource(path, "pattern matches no file")]
        for item in found:
            source = item if isinstance(item, ImageSource) else ImageSource(item)
            sources.setdefault(source.path, source)
    return list(sources.values())


def iter_predictions(
    predictor: Predictor,
    sources: list[ImageSource],
    top_k: int = 3,
    batch_size: int = 32,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Prediction]:
    """Predict `sources` batch by batch, in order; decoding runs ahead of predicting."""
    decoded = map_in_threads(lambda source: _decode(source, predictor.image_size), sources)
    for start in range(0, len(sources), batch_size):
        batch = sources[start : start + batch_size]
        yield from _predict_batch(
            predictor, batch, list(itertools.islice(decoded, len(batch))), top_k
        )
        if on_progress:
            on_progress(len(batch))


def predict_images(
    target: Path,
    images: list[str],
    *,
    stage: str | None = None,
    top_k: int = 3,
    output_format: str | None = None,
    output: Path | None = None,
    batch_size: int = 32,
    console: Console | None = None,
) -> PredictSummary:
    """Classify `images` with the model `target` names; print or write the results.

    `target` is a run directory (`stage`, default the latest trained), a stage folder, a
    model.keras, model.tflite or model.onnx, or an export folder. `output_format` defaults to
    the suffix of `output` (.csv, .json), else table. Unreadable images are listed with their
    error; a DataError when none could be classified.
    """
    console = console or Console()
    output_format = _resolve_format(output_format, output)
    if top_k < 1 or batch_size < 1:
        raise ConfigError("top_k and batch_size must be at least 1")
    sources = expand_images(images)
    if not sources:
        raise ConfigError("no images given")
    predictor = load_predictor(target, stage)
    # CSV or JSON on stdout must stay parseable: notices go to stderr then.
    to_stdout = output is None and output_format != "table"
    notice = console.status if to_stdout else console.info
    notice(f"model: {predictor.describe()}")
    if predictor.labels_file is None:
        console.warn(f"no {predictor.path.parent / LABELS_FILE}: labels are class indices")
    failed: list[Prediction] = []
    # No progress bar while data streams to stdout: the bar would draw between the rows.
    progress_console = Console(quiet=True) if to_stdout else console
    with (
        _open_output(output) as stream,
        _writer(output_format, stream, console, min(top_k, len(predictor.labels))) as write,
        progress_console.progress() as start,  # closes first: the table prints after the bar
    ):
        tick = start("predicting", len(sources))
        for prediction in iter_predictions(predictor, sources, top_k, batch_size, tick):
            if prediction.error is not None:
                failed.append(prediction)
            write(prediction)
    if len(failed) == len(sources):
        examples = "; ".join(f"{p.path}: {p.error}" for p in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        raise DataError(f"no image could be classified ({examples}{more})")
    if failed:
        console.warn(f"{len(failed)} of {len(sources)} image(s) could not be read: see their error")
    destination = f" -> {output}" if output else ""
    notice(f"{len(sources) - len(failed)} of {len(sources)} image(s) classified{destination}")
    return PredictSummary(len(sources), len(failed), predictor.path, output)


# ---------------------------------------------------------------------------------- helpers


def _decode(source: ImageSource, size: tuple[int, int]) -> DecodedImage:
    if source.problem is not None:
        return DecodedImage(None, error=source.problem)
    return decode_image(source.path, size)


def _predict_batch(
    predictor: Predictor,
    batch: list[ImageSource],
    decoded: list[DecodedImage],
    top_k: int,
) -> Iterator[Prediction]:
    readable = [d.pixels for d in decoded if d.pixels is not None]
    probabilities = iter(predictor.predict(np.stack(readable)) if readable else [])
    for source, image in zip(batch, decoded, strict=True):
        if image.pixels is None:
            yield Prediction(str(source.path), error=image.error)
            continue
        row = next(probabilities)
        best = np.argsort(-row, kind="stable")[:top_k]
        top = [(predictor.labels[i], round(float(row[i]), 6)) for i in best]
        yield Prediction(str(source.path), top)


def _resolve_format(output_format: str | None, output: Path | None) -> str:
    if output_format is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        output_format = suffix if suffix in ("csv", "json") else "table"
    if output_format not in PREDICTION_FORMATS:
        raise ConfigError(
            f"format '{output_format}': expected one of {', '.join(PREDICTION_FORMATS)}"
        )
    if output_format == "table" and output is not None:
        raise ConfigError(
            "an output file takes the csv or json format; a table goes to the terminal"
        )
    return output_format


@contextlib.contextmanager
def _open_output(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8", newline="") as stream:
        yield stream


@contextlib.contextmanager
def _writer(
    output_format: str, stream: TextIO, console: Console, top_k: int
) -> Iterator[Callable[[Prediction], None]]:
    """Yields `write(prediction)`; the format's closing part is written when the block ends."""
    if output_format == "csv":
        rows = csv.writer(stream, lineterminator="\n")
        rows.writerow(["path", "rank", "label", "probability", "error"])

        def write_csv(p: Prediction) -> None:
            if p.error is not None:
                rows.writerow([p.path, "", "", "", p.error])
            for rank, (label, probability) in enumerate(p.top, start=1):
                rows.writerow([p.path, rank, label, f"{probability:.6f}", ""])

        yield write_csv
    elif output_format == "json":
        separator = ["[\n"]

        def write_json(p: Prediction) -> None:
            item = {"path": p.path}
            if p.error is not None:
                item["error"] = p.error
            else:
                item["predictions"] = [{"label": lb, "probability": pr} for lb, pr in p.top]
            stream.write(separator[0] + "  " + json.dumps(item))
            separator[0] = ",\n"

        yield write_json
        stream.write("[]\n" if separator[0] == "[\n" else "\n]\n")
    else:
        table_rows: list[list[str]] = []

        def add_row(p: Prediction) -> None:
            cells = [f"{label} {probability:.3f}" for label, probability in p.top]
            if p.error is not None:
                cells = [f"error: {p.error}"]
            table_rows.append([p.path, *cells, *[""] * (top_k - len(cells))])

        yield add_row
        columns = ["path", *[f"#{rank}" for rank in range(1, top_k + 1)]]
        console.table("predictions", columns, table_rows)
    stream.flush()
