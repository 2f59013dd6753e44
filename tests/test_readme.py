"""The documentation's "Your own images" steps (docs/own-data.md), run as written, in a folder
laid out as the page says."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import yaml
from conftest import REPO, make_image_folder


def own_images_steps() -> list[str]:
    """The commands of the page's `own-images` snippet, comments removed."""
    page = REPO.joinpath("docs", "own-data.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- snippet: own-images .*?-->\n```bash\n(.*?)```", page, re.S)
    assert found, "docs/own-data.md has no own-images snippet"
    return [line.split("#", 1)[0].strip() for line in found.group(1).splitlines() if line.strip()]


def test_the_own_images_steps_work_as_written(tmp_path, cli, monkeypatch):
    steps = own_images_steps()
    assert steps[0].startswith("cp configs/") and steps[1] == "tlcli preflight my.yaml"
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    make_image_folder(tmp_path / "my_data", {"train": 8}, size=32)
    make_image_folder(tmp_path / "photos_source", {"x": 1}, size=32)
    shutil.move(tmp_path / "photos_source" / "x", tmp_path / "photos")
    monkeypatch.chdir(tmp_path)

    subprocess.run(shlex.split(steps[0]), check=True)  # cp: my.yaml as the user gets it
    # What the test changes in it, to run in seconds without the ImageNet weights (one short
    # frozen stage, random weights, 32 px): not where the images are, the name of the run, or
    # anything else the commands below depend on.
    config = yaml.safe_load((tmp_path / "my.yaml").read_text())
    config["unfreeze"] = None
    config["model"]["weights"] = "none"
    config["data"]["image_size"] = [32, 32]
    config["finetune"].update(epochs=1, cache_views=2)
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    for step in steps[1:]:
        program, *arguments = shlex.split(step)
        assert program == "tlcli"
        result = cli(*arguments)
        assert result.exit_code == 0, f"{step}\n{result.output}"
    run = tmp_path / "runs" / config["name"]
    assert (run / "finetune" / "metrics.json").is_file()
    assert (run / "export" / "finetune-savedmodel" / "saved_model").is_dir()
