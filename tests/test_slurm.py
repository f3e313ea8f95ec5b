"""SLURM execution on a real one-node cluster: the smoke workflow through
snakemake-executor-plugin-slurm and profiles/slurm gives the bytes of a local run.

Run with `uv run pytest -m slurm` (root, Debian/Ubuntu: installs munge and slurm-wlm with
apt-get when missing, starts munged, slurmctld and slurmd in a temporary folder and stops
them afterwards); skipped where that is not possible. Slow: excluded from `uv run pytest`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import MIN_JOB_AGE, SlurmCluster, unavailable
from workflow_helpers import ROOT, command, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# A subset of the smoke DAG: the data stages and three GPU rules (6 jobs). After
# train_diffusion, train_classifier and invert are ready together: only Snakemake's gpu
# resource keeps them from running at once.
TARGETS = (
    "results/splits/rsna/split.parquet",
    "results/data/rsna/images.npy",
    "results/models/rsna/diffusion/unet/diffusion_pytorch_model.safetensors",
    "results/models/rsna/classifier/model.safetensors",
    "results/latents/rsna/latents.npy",
)
# Deterministic artefacts, compared byte for byte. Not compared: logs, benchmarks,
# provenance.json (created_utc, code version), loss.parquet (its images_per_s column is
# the throughput; the loss column is compared) and checkpoints (throughput, and the
# process's global Python and NumPy RNG states, which no result draws from).
SAME_BYTES = (
    *TARGETS,
    "results/data/rsna/index.parquet",
    "results/splits/rsna/counts.parquet",
    "results/latents/rsna/index.parquet",
    "results/latents/rsna/reconstructions.npy",
)
GPU_RULES = ("train_diffusion", "train_classifier", "invert")
CPU_RULES = ("phantoms", "preprocess", "split")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        try:
            c.start()
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            pytest.skip(f"could not start a one-node SLURM cluster: {str(e)[-3000:]}")
        yield c
    finally:
        c.stop()


def test_cluster_runs_cpu_and_gpu_jobs(cluster, tmp_path):
    proc = cluster.run("srun", "hostname")
    assert proc.returncode == 0 and proc.stdout.strip() == cluster.node, proc.stderr
    out = tmp_path / "gpu.out"
    proc = cluster.run(
        "sbatch", "--wait", "--gpus=1", f"--output={out}", "--wrap", "echo gpus=$SLURM_GPUS"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text().strip() == "gpus=1"


def slurm_snakemake(cluster: SlurmCluster, workdir: Path) -> subprocess.CompletedProcess:
    """The smoke preset's TARGETS through the slurm executor and profiles/slurm."""
    cmd = command(
        workdir, "--executor", "slurm", "--profile", str(ROOT / "profiles" / "slurm"),
        # no slurmdbd here: sacct never sees a job end; squeue does, for MinJobAge seconds
        "--slurm-status-command", "squeue",
        # first status check 10 s after a submission (default 40): MinJobAge >= 3 x this
        "--slurm-init-seconds-before-status-checks", "10",
        "--slurm-no-account", "--resources", "gpu=1", "--jobs", "2", *TARGETS,
    )  # fmt: skip
    # jobs inherit this environment (sbatch --export=ALL): the venv's python on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), cluster.env["PATH"]])
    env = {**cluster.env, "PATH": path, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)


def slurm_jobs(cluster: SlurmCluster) -> dict[str, dict[str, str]]:
    """Rule -> `scontrol show job` fields of the jobs the workflow submitted."""
    out = cluster.run("scontrol", "show", "job", "--oneliner").stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        rule = re.fullmatch(r"rule_(\w+?)_wildcards_rsna", fields.get("Comment", ""))
        if rule:
            assert rule.group(1) not in jobs, f"{rule.group(1)} ran twice:\n{out}"
            jobs[rule.group(1)] = fields
    return jobs


def test_smoke_workflow_on_slurm_gives_the_local_bytes(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    with ThreadPoolExecutor(1) as pool:  # the SLURM run mostly waits for status checks
        local_run = pool.submit(snakemake, local, *TARGETS)
        proc = slurm_snakemake(cluster, remote)
        local_run.result()
    out = proc.stdout[-4000:] + proc.stderr[-8000:]
    assert proc.returncode == 0, f"{out}\n{cluster.logs()}"
    assert "has been submitted with SLURM jobid" in proc.stderr + proc.stdout

    for rel in SAME_BYTES:
        assert (remote / rel).read_bytes() == (local / rel).read_bytes(), rel
    for model in ("diffusion", "classifier"):
        loss = [
            pd.read_parquet(d / f"results/models/rsna/{model}/loss.parquet")
            for d in (local, remote)
        ]
        pd.testing.assert_series_equal(loss[0]["loss"], loss[1]["loss"])

    # What SLURM saw (finished jobs stay listed for MinJobAge seconds): each rule ran once
    # as a batch job; the GPU rules' jobs asked for a GPU (--gpus=1), the others did not;
    # a GPU job was submitted only after the previous one had ended (--resources gpu=1).
    jobs = slurm_jobs(cluster)
    assert set(GPU_RULES) <= set(jobs), f"GPU jobs gone after MinJobAge={MIN_JOB_AGE}? {jobs}"
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (rule, job)
        assert ("gpu:1" in job.get("TresPerJob", "")) == (rule in GPU_RULES), (rule, job)
    assert set(jobs) <= {*GPU_RULES, *CPU_RULES}

    def t(job, key):
        return datetime.fromisoformat(job[key])

    gpu_jobs = sorted((jobs[r] for r in GPU_RULES), key=lambda j: t(j, "StartTime"))
    for before, after in zip(gpu_jobs, gpu_jobs[1:], strict=False):
        assert t(after, "SubmitTime") >= t(before, "EndTime"), (before, after)
