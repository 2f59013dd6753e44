"""The cache's store: an entry is built once, whichever of several processes asks first."""

from __future__ import annotations

import subprocess
import sys

BUILDER = """
import sys, time
from pathlib import Path
from tlcli.cache.store import cached_entry

entry, log = Path(sys.argv[1]), Path(sys.argv[2])

def build():
    with log.open("a") as out:
        out.write("built\\n")
    time.sleep(1.0)  # long enough for the other process to ask meanwhile
    entry.write_text("squares")
    return "built"

load = lambda: "found" if entry.is_file() else None
print(cached_entry(entry, load, build, "squares-")[0])
"""


def test_two_processes_asking_for_one_entry_build_it_once(tmp_path):
    entry, log = tmp_path / "cache" / "squares-ab12.txt", tmp_path / "builds.log"
    command = [sys.executable, "-c", BUILDER, str(entry), str(log)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    answers = sorted(process.communicate(timeout=60)[0].strip() for process in processes)
    assert answers == ["built", "found"]
    assert log.read_text().splitlines() == ["built"]
