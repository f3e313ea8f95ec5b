"""Wall time of ``snakemake -n`` on a finished smoke run, against bare Snakemake start-up.

(a) baseline: ``python -m snakemake --version`` (the interpreter and Snakemake's imports: the
    floor every snakemake command pays);
(b) dry run: ``python -m snakemake -n`` with the project's Snakefile and the smoke preset on a
    working directory where everything is done (it must plan nothing).

Without ``--workdir`` the smoke workflow is run first in a temporary folder (a few minutes).
Prints the median of ``--repeats`` calls of each and their ratio; the target is a dry run
under 3 seconds.

    uv run --frozen python benchmarks/bench_dry_run.py [--workdir DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "presets" / "smoke.yaml"


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--cores", "2", *args, "--configfile", str(SMOKE),
    ]  # fmt: skip


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="a finished smoke run (default: make one)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        if args.workdir is None:
            print("running the smoke workflow first ...", flush=True)
            subprocess.run(snakemake_cmd(workdir), check=True, capture_output=True)
        base, dry = [], []
        for _ in range(args.repeats):  # alternate, so background load hits both alike
            base.append(timed([sys.executable, "-m", "snakemake", "--version"])[0])
            seconds, out = timed(snakemake_cmd(workdir, "--dry-run"))
            if "Nothing to be done" not in out:
                raise SystemExit(f"the dry run plans jobs; finish the run first:\n{out[-2000:]}")
            dry.append(seconds)
    b, d = statistics.median(base), statistics.median(dry)
    print(f"snakemake --version (start-up floor): {b:.2f} s   (median of {args.repeats})")
    print(f"snakemake -n on a finished smoke run: {d:.2f} s   (median of {args.repeats})")
    print(f"ratio dry run / start-up: {d / b:.2f}   target: dry run < 3 s")


if __name__ == "__main__":
    main()
