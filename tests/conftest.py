"""Shared fixtures (tiny real image folders, configs written to disk, the real CLI) and the tiers.

Tiers: `pytest --tier fast` runs the edit loop (tests marked `fast`, and the doctests), plain
`pytest` the default tier (every test not marked `slow`), `--tier slow` the slow one, `--tier all`
both; `-n auto` spreads any of them over the cores, and tests named by node id run in any tier.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw
from typer.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHAPES = ("disc", "square", "cross", "bar")
TIERS = ("fast", "default", "slow", "all")
# Session fixtures that train: a test using one is never in the fast tier.
TRAINING_FIXTURES = {"trained_run", "exports", "finished_sweep"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=TIERS,
        default=None,
        help="fast: the edit loop; default (the default): all but slow; slow; all. "
        "With -m and no --tier: all, filtered by -m.",
    )


def _tier(config: pytest.Config) -> str:
    """--tier, else `all` when tests are picked by marker or node id, else `default`."""
    chosen = config.getoption("tier")
    if chosen:
        return chosen
    by_name = any("::" in arg for arg in config.args)
    return "all" if config.option.markexpr or by_name else "default"


# Doctests that train a stage: in the default tier, not the edit loop.
TRAINING_DOCTESTS = {"tlcli.train.stages"}


def pytest_itemcollected(item: pytest.Item) -> None:
    if isinstance(item, pytest.DoctestItem) and item.name not in TRAINING_DOCTESTS:
        item.add_marker(pytest.mark.fast)  # doctests keep to tiny examples


def _in_tier(item: pytest.Item, tier: str) -> bool:
    slow, fast = item.get_closest_marker("slow"), item.get_closest_marker("fast")
    if slow and fast:
        raise pytest.UsageError(f"{item.nodeid}: marked both fast and slow")
    if fast and TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
        raise pytest.UsageError(f"{item.nodeid}: marked fast but uses a fixture that trains")
    return {
        "fast": bool(fast),
        "default": not slow,
        "slow": bool(slow),
        "all": True,
    }[tier]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tier = _tier(config)
    kept, dropped = [], []
    for item in items:
        (kept if _in_tier(item, tier) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def assert_plot(path: Path) -> None:
    """`path` is a whole PNG file of a figure with something drawn on it: at least 1% of its
    pixels differ from the background (its most common colour)."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path}: {image.format}"
        assert min(image.size) >= 100, f"{path}: {image.size}"
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    drawn = 1 - counts.max() / len(pixels)
    assert len(colours) > 1 and drawn >= 0.01, f"{path}: {drawn:.2%} of its pixels drawn"


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A bright shape on a dark noisy background: learnable in a few epochs at 32 px."""
    background = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    cx, cy = (int(v) for v in rng.integers(size * 0.35, size * 0.65, 2))
    r = int(rng.integers(size // 6, size // 4 + 1))
    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "cross":
        width = max(2, size // 12)
        draw.line([cx - r, cy, cx + r, cy], fill=colour, width=width)
        draw.line([cx, cy - r, cx, cy + r], fill=colour, width=width)
    else:
        draw.rectangle([cx - r, cy - 2, cx + r, cy + 2], fill=colour)
    return image


def make_image_folder(
    root: Path,
    counts: dict[str, int],
    classes: tuple[str, ...] = SHAPES[:3],
    size: int = 40,
    seed: int = 0,
) -> Path:
    """root/<split>/<class>/NNN.png|jpg with `counts[split]` images per class."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for shape in classes:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = draw_shape(shape, size, rng)
                suffix = ".png" if i % 2 else ".jpg"
                image.save(folder / f"{i:03d}{suffix}")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes; train 10, val 4, test 4 images each."""
    return make_image_folder(tmp_path / "data", {"train": 10, "val": 4, "test": 4})


def config_dict(data_root: Path, **sections) -> dict:
    """A small, fast config: VGG16 at 32 px, random weights, two short stages."""
    config = {
        "name": "t",
        "output_dir": str(data_root.parent / "runs"),
        "seed": 1,
        "data": {
            "train_dir": str(data_root / "train"),
            "val_dir": str(data_root / "val"),
            "test_dir": str(data_root / "test"),
            "image_size": [32, 32],
            "batch_size": 8,
        },
        "model": {"base": "vgg16", "weights": "none", "head": {"dense": [16]}},
        "finetune": {"epochs": 2},
    }
    for key, value in sections.items():
        if value is None:
            config.pop(key, None)
        elif isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(config: dict, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run the real Typer app in-process; returns the click Result."""
    from tlcli.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def run_subprocess(
    *args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None
):
    """The installed entry point in a fresh process, as a shell script would call it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tlcli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (VGG16, 32 px, finetune 1 epoch, flip test-time augmentation in
    the model), trained once per session.

    For tests that only read the run (predict) or add to it under `export/`; a test that
    must change a run trains its own.
    """
    root = make_image_folder(
        tmp_path_factory.mktemp("trained") / "data", {"train": 10, "val": 4, "test": 4}
    )
    config = root.parent / "config.yaml"
    settings = config_dict(root, finetune={"epochs": 1}, model={"tta": "flip"})
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    from tlcli.cli import app

    result = CliRunner().invoke(app, ["run", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    return root.parent / "runs" / "t"


# name (also the default folder suffix) -> (--format, --quantize)
EXPORTS = {
    "keras": ("keras", "none"),
    "savedmodel": ("savedmodel", "none"),
    "tflite": ("tflite", "none"),
    "tflite-dynamic": ("tflite", "dynamic"),
    "tflite-float16": ("tflite", "float16"),
    "tflite-int8": ("tflite", "int8"),
    "onnx": ("onnx", "none"),
    "onnx-dynamic": ("onnx", "dynamic"),
}


@pytest.fixture(scope="session")
def exports(trained_run: Path) -> dict[str, object]:
    """Every format and quantize mode of `trained_run`, each exported once through the CLI to
    its default folder `<run>/export/finetune-<name>`: {name: click Result}."""
    from tlcli.cli import app

    runner = CliRunner()
    return {
        name: runner.invoke(
            app, ["export", str(trained_run), "--format", fmt, "--quantize", quantize]
        )
        for name, (fmt, quantize) in EXPORTS.items()
    }


def _as_in_a_terminal() -> None:
    """SIGINT as a terminal's foreground process has it. A suite started in the background by
    a shell without job control (a CI script's `cmd &`) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: Ctrl-C would do nothing, as it should there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def shown_resume_command(code: int, shown: str) -> list[str]:
    """The resume command an interrupted command printed on a line of its own (exit 130)."""
    assert code == 130, shown
    found = re.search(r"\ninterrupted; to continue where it stopped:\n  (tlcli .*)\n", shown)
    assert found, f"no resume command on a line of its own in:\n{shown[-600:]}"
    return shlex.split(found.group(1))


def run_on_a_terminal(command: list[str], interrupt_when) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdout and stderr; SIGINT once
    `interrupt_when()` holds. Returns the exit code and everything the terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, close_fds=True,
        preexec_fn=_as_in_a_terminal,
    )  # fmt: skip
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is gone
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not interrupt_when():
        assert process.poll() is None, shown.decode(errors="replace")
        assert time.monotonic() < deadline, "the stage did not get going in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=120)
    reader.join(timeout=10)
    os.close(controller)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")


def words(output: str) -> str:
    """Command output as one line of words: wrapping and the box of a usage error removed."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 4-trial grid sweep (VGG16 32 px, 2 epochs), run once per session: its
    folder runs/t-sweep, beside runs/t (`tlcli run` of the same config, before the sweep) and
    runs/t-best (`tlcli run` of its best.yaml); what the sweep printed is in sweep-output.txt
    beside runs/. A grid over the base's weights: a file (the trials share one built base) or a
    file of another network (those trials fail), and two dropouts."""
    import keras

    from tlcli.bases import build_base

    work = tmp_path_factory.mktemp("sweep")
    root = make_image_folder(work / "data", {"train": 8, "val": 4, "test": 4})
    good = work / "vgg16-32.weights.h5"
    build_base("vgg16", (32, 32), None).save_weights(good)
    bad = work / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(bad)
    config = config_dict(root, finetune={"epochs": 2})  # 2 epochs repay the feature cache
    config["sweep"] = {
        "trials": 4,
        "sampler": "grid",
        "pruner": "none",
        "params": {"model.weights": [str(good), str(bad)], "model.head.dropout": [0.1, 0.4]},
    }
    path = work / "sweep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    from tlcli.cli import app

    runs = work / "runs"
    for command in (["run", path], ["sweep", path], ["run", runs / "t-sweep" / "best.yaml"]):
        result = CliRunner().invoke(app, [*map(str, command), "--quiet"])
        assert result.exit_code == 0, result.output
        if command[0] == "sweep":
            (work / "sweep-output.txt").write_text(result.output)
    return runs / "t-sweep"
