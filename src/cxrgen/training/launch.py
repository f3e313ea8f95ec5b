"""Run a training command on several devices: ``accelerate launch`` of the ``cxrgen`` CLI.

The training loop is written for accelerate (it splits the global batch over the processes
and saves from the main process), so several GPUs only need the launcher: ``accelerate
launch --multi_gpu --num_processes N -m cxrgen.cli train-diffusion ...``. The rules call
:func:`run_launched` when ``train_processes`` > 1, inside a claim of N devices; with
``cpu=True`` the same loop runs in N CPU processes (gloo), which is how it is tested.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import yaml

from cxrgen.errors import CxrgenError

log = logging.getLogger(__name__)


def launch_command(processes: int, cli_args: list[str], cpu: bool = False) -> list[str]:
    """The command line running ``cxrgen <cli_args>`` in N processes.

    GPUs: ``accelerate launch --multi_gpu``. CPU: accelerate's own launcher starts a single
    process for ``--cpu``, so torch's elastic launcher (what ``--multi_gpu`` runs underneath)
    starts the N processes directly; accelerate then sees a multi-CPU (gloo) run.
    """
    if cpu:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += ["--nproc_per_node", str(processes)]
    else:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
        launcher += ["--num_processes", str(processes), "--num_machines", "1"]
        launcher += ["--dynamo_backend", "no"]
    return [*launcher, "-m", "cxrgen.cli", *cli_args]


def run_launched(
    command: str,
    store: Path,
    split: Path,
    output: Path,
    cfg,
    processes: int,
    checkpoint_dir: Path | None = None,
    scheduler_dir: Path | None = None,
    cpu: bool = False,
) -> None:
    """``cxrgen <command>`` (train-diffusion / train-classifier) in ``processes`` processes.

    The typed config travels as a YAML file (``--config``), so the launched processes build
    exactly the same dataclass.
    """
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
        config.write_text(yaml.safe_dump(values))
        args = [command, "--store", str(store), "--split", str(split), "--output", str(output)]
        args += ["--config", str(config)]
        if checkpoint_dir is not None:
            args += ["--checkpoints", str(checkpoint_dir)]
        if scheduler_dir is not None:
            args += ["--scheduler", str(scheduler_dir)]
        cmd = launch_command(processes, args, cpu=cpu)
        log.info("launching %d processes: %s", processes, " ".join(cmd))
        sys.stderr.flush()
        # the processes write where this process's stderr goes (the rule's log under Snakemake)
        result = subprocess.run(cmd, check=False, stdout=sys.stderr, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise CxrgenError(f"the {processes}-process {command} exited with {result.returncode}")
