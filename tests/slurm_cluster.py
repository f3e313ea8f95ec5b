"""A throw-away one-node SLURM cluster for tests: munged, slurmctld and slurmd on localhost.

Everything lives in one folder (config, munge key and socket, state, spool, logs, pid
files); the tools find the config through SLURM_CONF (`SlurmCluster.env`). The three
daemons run in the foreground as children of the test process and are stopped by their
pids, so nothing of the machine's own munge or SLURM set-up is used or touched. Debian's
packages are installed with apt-get when missing (as root only); `unavailable()` says why
a cluster cannot be had here, for the test to skip with.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "srun")
# squeue forgets a finished job MinJobAge seconds after it ends; Snakemake's SLURM plugin
# polls squeue only when MinJobAge >= 3 x its first status delay (40 s by default).
MIN_JOB_AGE = 300


def _which(tool: str) -> str | None:
    """A tool's path; the daemons live in /usr/sbin, not on every PATH."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def _missing_tools() -> list[str]:
    return [t for t in TOOLS if _which(t) is None]


def _apt_install() -> str | None:
    """Install the packages; None on success, else why not."""
    opts = ["-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=20"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", *opts, "install", "-y", "--no-install-recommends", *PACKAGES]
    proc = None
    for step in (install, ["apt-get", *opts, "update"], install):
        try:
            proc = subprocess.run(step, capture_output=True, text=True, env=env, timeout=600)
        except subprocess.TimeoutExpired:
            return f"'{' '.join(step)}' timed out"
        if proc.returncode == 0 and step is install:
            return None
        # a first install can fail on empty or stale package lists: update, retry once
    return f"apt-get could not install {' '.join(PACKAGES)}: {(proc.stdout + proc.stderr)[-600:]}"


def unavailable() -> str | None:
    """None when the SLURM tools are (now) installed, else the reason they are not."""
    if not _missing_tools():
        return None if os.geteuid() == 0 else "the SLURM daemons must run as root"
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(_missing_tools())} missing) and not root"
    if shutil.which("apt-get") is None:
        return f"SLURM is not installed ({', '.join(_missing_tools())} missing), no apt-get"
    reason = _apt_install()
    if reason is None and _missing_tools():
        reason = f"still missing after apt-get: {', '.join(_missing_tools())}"
    return reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One node named after this host, with `cpus` CPUs, `memory_mb` memory, one GPU.

    The node is described by the config, not probed (SlurmdParameters=config_overrides), so
    a small test machine accepts the resource requests of the real-cluster profile. The
    GPU is a GRES on /dev/null (slurmd drops a GPU without a device file): SLURM schedules
    it and sets CUDA_VISIBLE_DEVICES for the job, no job can use it.
    """

    def __init__(self, root: Path, cpus: int = 8, memory_mb: int = 64000, gpus: int = 1):
        self.root = Path(root)
        self.node = socket.gethostname().split(".")[0]
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.bin = self.root / "bin"
        path = os.pathsep.join([str(self.bin), os.environ.get("PATH", "")])
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    # -- configuration -------------------------------------------------------------------
    def _write_config(self) -> None:
        r = self.root
        for sub in ("munge", "state", "spool", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
            (r / sub).chmod(0o755)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        self.socket = r / "munge" / "munge.socket.2"
        lines = {
            "ClusterName": "cxrgentest",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.socket}",
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "slurmctld.pid",
            "SlurmdPidFile": r / "slurmd.pid",
            "SlurmctldLogFile": r / "log" / "slurmctld.log",
            "SlurmdLogFile": r / "log" / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",  # needed for --gpus
            "SelectTypeParameters": "CR_CPU",
            "GresTypes": "gpu",
            "MinJobAge": MIN_JOB_AGE,
            "ReturnToService": 2,
            "SlurmdParameters": "config_overrides",
            "SlurmctldTimeout": 30,
            "SlurmdTimeout": 60,
        }
        text = "".join(f"{k}={v}\n" for k, v in lines.items())
        text += (
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN\n"
            f"PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        self.conf.write_text(text)
        # Inside a job, snakemake-executor-plugin-slurm-jobstep starts the rule with srun
        # after dropping every SLURM_* variable but the job's identity, SLURM_CONF included
        # (snakemake-executor-plugin-slurm issue #164). Real clusters keep their config at
        # /etc/slurm/slurm.conf or run configless; this cluster's config is found by an srun
        # early on PATH that puts SLURM_CONF back.
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(
            f'#!/bin/sh\nSLURM_CONF={self.conf}\nexport SLURM_CONF\nexec {_which("srun")} "$@"\n'
        )
        srun.chmod(0o755)
        (r / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.node} Name=gpu File=/dev/null Count={self.gpus}\n"
        )

    # -- daemons -------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # closed by stop()
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def start(self, timeout: float = 90) -> None:
        """Start the daemons and wait for the node to be idle; RuntimeError if it is not."""
        self._write_config()
        m = self.root / "munge"
        self._spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",
                f"--key-file={m / 'munge.key'}",
                f"--socket={self.socket}",
                f"--pid-file={m / 'munged.pid'}",
                f"--seed-file={m / 'munged.seed'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
            ],
        )
        self._wait(lambda: self.socket.exists(), 20, "munged to open its socket")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "idle", timeout, "the node to become idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(
                    f"{', '.join(dead)} exited while waiting for {what}\n" + self.logs()
                )
            if ready():
                return
            time.sleep(1)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n" + self.logs())

    def run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)

    def node_state(self) -> str:
        proc = self.run("sinfo", "--noheader", "--Node", "--format=%T", timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def logs(self, tail: int = 3000) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace")[-tail:]
            out.append(f"--- {path.name}\n{text}")
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel what is left of this cluster's jobs, then stop exactly our daemons."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                jobs = self.run("squeue", "--noheader", "--format=%i", timeout=30).stdout.split()
                if jobs:
                    self.run("scancel", *jobs, timeout=30)
                    time.sleep(2)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):  # the reverse of the start order
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        for log in self._logs:
            log.close()
        self._logs.clear()
