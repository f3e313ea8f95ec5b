"""Run the project's Snakefile from tests, in a temporary working directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "presets" / "smoke.yaml"


def command(workdir: Path, *args: str, configs: tuple[Path, ...] = ()) -> list[str]:
    """``python -m snakemake`` on the project's Snakefile with the smoke preset (+ configs)."""
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), *args,
        "--configfile",  # last: it takes every following word as a file
        str(SMOKE), *map(str, configs),
    ]  # fmt: skip


def snakemake(
    workdir: Path, *args: str, configs: tuple[Path, ...] = (), check: bool = True
) -> subprocess.CompletedProcess:
    cmd = command(workdir, "--cores", "2", *args, configs=configs)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str, configs: tuple[Path, ...] = ()) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans (empty when nothing is to be done)."""
    proc = snakemake(workdir, "--dry-run", *args, configs=configs)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    match = re.search(r"Job stats:\n(.*?)\n\n", out, flags=re.S)
    assert match, out[-3000:]
    jobs = {}
    for line in match.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


def overlay(path: Path, mapping: dict) -> Path:
    path.write_text(yaml.safe_dump(mapping))
    return path
