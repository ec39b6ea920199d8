"""A one-node SLURM cluster on this machine, for the ``slurm``-marked tests.

Fixtures:

- ``slurm_cluster`` (session): installs Debian's ``slurmctld slurmd slurm-client munge`` with apt
  if they are missing, starts ``munged``, ``slurmctld`` and ``slurmd`` as plain background
  processes (no systemd) whose PIDs it records, and points ``/etc/slurm/slurm.conf`` at a config
  generated under ``/tmp/dbdflow-slurm-test`` (the executor plugin's in-job step drops
  ``SLURM_CONF``, so SLURM's default path must work). Teardown cancels the jobs left, stops the
  daemons by PID and puts ``/etc/slurm`` back as it was. A run killed half way is cleaned up by the
  next one (recorded in ``state.json``), and the daemons get SIGTERM if pytest dies.
- ``slurm_profile``: the shipped SLURM profile (``dbdflow.profiles.install_profile``) plus the
  settings a cluster without an accounting database needs.
- ``run_snakemake``: ``run_snakemake(workdir, args, profile_dir, timeout)`` runs Snakemake under
  ``timeout -s INT -k 10`` (Snakemake waiting on SLURM ignores SIGTERM) and fails the test with
  its output and the failed jobs' SLURM logs.

Needs root and apt (as in CI); without them the tests fail with a message saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dbdflow.profiles import install_profile

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "munged", "mungekey")
PARTITION = "debug"
# Fixed paths under /tmp (not $TMPDIR): the munge user must reach the socket, and a killed
# run must be found and cleaned up by the next one.
BASE = Path("/tmp/dbdflow-slurm-test")
LOCK = Path("/tmp/dbdflow-slurm-test.lock")
STATE = Path("/tmp/dbdflow-slurm-test.state.json")
ETC_CONF = Path("/etc/slurm/slurm.conf")
ETC_BACKUP = Path("/etc/slurm/slurm.conf.dbdflow-test-backup")

SLURM_CONF = """\
ClusterName=dbdflow-test
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={base}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
# SLURM's own default, as on many clusters: the launcher must ask for PMI2 (srun --mpi=pmi2)
MpiDefault=none
MinJobAge=600
ReturnToService=2
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _run(cmd, timeout=30, **kw):
    return subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kw
    )


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return f"--- {path} ---\n{path.read_text(errors='replace')[-n:]}"
    except OSError as err:
        return f"--- {path}: {err}"


def _ensure_packages() -> None:
    if all(shutil.which(c) for c in COMMANDS):
        return
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.fail(
            f"the slurm test needs the Debian packages {' '.join(PACKAGES)} and apt-get is not "
            "available to install them (run on Debian/Ubuntu, or deselect with -m 'not slurm')"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep package scripts from starting services (no init system here): policy-rc.d says no.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for cmd in (
            [apt, "-q", "update"],
            [apt, "-q", "install", "-y", "--no-install-recommends", *PACKAGES],
        ):
            res = _run(cmd, timeout=300, env=env)
            if res.returncode != 0:
                pytest.fail(
                    f"`{' '.join(cmd)}` failed ({res.returncode}); the slurm test needs "
                    f"{' '.join(PACKAGES)}:\n{(res.stdout + res.stderr)[-3000:]}"
                )
    finally:
        if made_policy:
            policy.unlink()
    missing = [c for c in COMMANDS if not shutil.which(c)]
    if missing:
        pytest.fail(f"after installing {' '.join(PACKAGES)}, still missing: {missing}")


_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: send ``sig`` to this child when the process that started it (pytest) dies."""
    _LIBC.prctl(1, sig)  # PR_SET_PDEATHSIG = 1


def _interrupt_with_parent() -> None:
    _die_with_parent(signal.SIGINT)


def _is_ours(pid: int) -> bool:
    """True when ``pid`` still runs a daemon started with this test's config or socket."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(BASE).encode() in cmdline


def _stop(pid: int, wait: float = 10.0) -> None:
    for sig, limit in ((signal.SIGTERM, wait), (signal.SIGKILL, 5.0)):
        if not _is_ours(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + limit
        while _is_ours(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)


def _restore_etc(state: dict) -> None:
    if ETC_CONF.is_symlink() and Path(os.readlink(ETC_CONF)) == BASE / "slurm.conf":
        ETC_CONF.unlink()
    if ETC_BACKUP.exists() or ETC_BACKUP.is_symlink():  # the name is this test's own
        os.replace(ETC_BACKUP, ETC_CONF)
    if state.get("etc_dir_created"):
        with contextlib.suppress(OSError):
            ETC_CONF.parent.rmdir()


def _cleanup(state: dict) -> None:
    """Stop the recorded daemons (newest first), restore /etc/slurm, remove the test's files."""
    for pid in reversed(state.get("pids", [])):
        _stop(pid)
    _restore_etc(state)
    shutil.rmtree(BASE, ignore_errors=True)


class Cluster:
    """The running cluster: its files, its daemons, and a way to save its state."""

    def __init__(self):
        self.state: dict = {"pids": []}
        self.procs: list[subprocess.Popen] = []
        self.conf = BASE / "slurm.conf"
        self.logs = [BASE / "log" / f for f in ("munged.log", "slurmctld.log", "slurmd.log")]
        self.cpus = max(2, os.cpu_count() or 1)
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        self.mem_mb = max(1024, mem_kb // 1024 - 1024)

    def save(self) -> None:
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, STATE)

    def spawn(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        out = open(BASE / "log" / f"{name}.out", "wb")  # the child keeps its own copy
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            **kw,
        )
        out.close()
        self.procs.append(proc)
        self.state["pids"].append(proc.pid)
        self.save()
        return proc

    def wait_for(self, what: str, ready, procs, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{dead} exited" if dead else f"not within {timeout:.0f} s"
                logs = "\n".join(_tail(p) for p in [*self.logs, *(BASE / "log").glob("*.out")])
                pytest.fail(f"one-node SLURM: waiting for {what}: {why}\n{logs}")
            time.sleep(0.2)

    def start(self) -> None:
        for sub in ("log", "state", "spool"):
            (BASE / sub).mkdir(parents=True)
        BASE.chmod(0o755)
        munge = BASE / "munge"
        munge.mkdir()
        munge.chmod(0o755)  # munged wants its socket's directory searchable by all
        key = munge / "munge.key"
        res = _run(["mungekey", "--create", f"--keyfile={key}"])
        if res.returncode != 0:
            pytest.fail(f"mungekey failed: {res.stderr}")
        for path in (munge, key):
            shutil.chown(path, "munge", "munge")
        key.chmod(0o400)
        shutil.chown(BASE / "log", "munge", "munge")  # munged checks that it owns its log dir
        (BASE / "log").chmod(0o755)
        self.conf.write_text(
            SLURM_CONF.format(base=BASE, cpus=self.cpus, mem_mb=self.mem_mb, partition=PARTITION)
        )
        sock = munge / "munge.socket"
        munged = self.spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--log-file={BASE / 'log' / 'munged.log'}",
            ],
            user="munge",
            group="munge",
            extra_groups=[],
        )
        self.wait_for("the munge socket", sock.exists, [munged])

        if not ETC_CONF.parent.exists():
            ETC_CONF.parent.mkdir(parents=True)
            self.state["etc_dir_created"] = True
            self.save()
        if ETC_CONF.exists() or ETC_CONF.is_symlink():
            os.replace(ETC_CONF, ETC_BACKUP)
        ETC_CONF.symlink_to(self.conf)

        ctld = self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self.wait_for(
            "`scontrol ping` to say UP",
            lambda: "UP" in _run(["scontrol", "ping"], timeout=10).stdout,
            [munged, ctld],
        )
        slurmd = self.spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
        self.wait_for(
            "the node to be idle",
            lambda: _run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10).stdout.strip() == "idle",
            [munged, ctld, slurmd],
        )

    def stop(self) -> None:
        jobs = _run(["squeue", "-h", "-o", "%i"], timeout=10).stdout.split()
        if jobs:
            _run(["scancel", *jobs], timeout=10)
            deadline = time.monotonic() + 30
            while _run(["squeue", "-h", "-t", "R,CG", "-o", "%i"], timeout=10).stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        _cleanup(self.state)
        left = [p.pid for p in self.procs if p.poll() is None]
        STATE.unlink(missing_ok=True)
        if left:
            raise RuntimeError(f"one-node SLURM: daemons {left} survived SIGKILL")


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node SLURM cluster (partition ``debug``, all CPUs, memory less 1 GiB)."""
    if os.geteuid() != 0:
        pytest.fail(
            "the slurm test needs root: it installs Debian packages and starts munged, slurmctld "
            "and slurmd (deselect it with -m 'not slurm')"
        )
    lock = open(LOCK, "w")  # held for the session
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pytest.fail(f"another one-node SLURM test holds {LOCK}")
    if STATE.exists():  # a run that was killed: stop its daemons, put /etc/slurm back
        _cleanup(json.loads(STATE.read_text()))
        STATE.unlink()
    shutil.rmtree(BASE, ignore_errors=True)
    t0 = time.monotonic()
    _ensure_packages()
    t1 = time.monotonic()
    for port in (6817, 6818):
        if _port_in_use(port):
            pytest.fail(f"port {port} is taken: is another SLURM running on this machine?")
    cluster = Cluster()
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)  # finalizers run
    try:
        cluster.start()
        print(
            f"\none-node SLURM: packages {t1 - t0:.1f} s, daemons up {time.monotonic() - t1:.1f} s",
            file=sys.stderr,
        )
        yield cluster
    finally:
        t2 = time.monotonic()
        try:
            cluster.stop()
        finally:
            signal.signal(signal.SIGTERM, old_term)
            LOCK.unlink(missing_ok=True)
            lock.close()
            print(f"\none-node SLURM: torn down in {time.monotonic() - t2:.1f} s", file=sys.stderr)


@pytest.fixture
def slurm_profile(tmp_path, slurm_cluster) -> Path:
    """The shipped SLURM profile, installed into a temp dir, plus this test cluster's needs:
    no accounting database (status via ``squeue``, which ``MinJobAge`` keeps informed; no account),
    fast status polling, and ``cores`` capped to the node so that group jobs fit."""
    profile = install_profile("slurm", partition=PARTITION, dest=tmp_path / "slurm")
    settings = yaml.safe_load(profile.read_text())
    settings.update(
        {
            "slurm-status-command": "squeue",
            "slurm-no-account": True,
            "slurm-init-seconds-before-status-checks": 2,
            "cores": slurm_cluster.cpus,
            "latency-wait": 5,
        }
    )
    profile.write_text(yaml.safe_dump(settings, sort_keys=False))
    return profile.parent


def _run_snakemake(workdir, args, profile_dir, timeout):
    """Run ``snakemake --profile PROFILE_DIR ARGS`` in ``workdir``; fail the test unless it ends
    well within ``timeout`` seconds (then SIGINT, SIGKILL 10 s later). Returns its output, which
    is also kept in ``workdir/snakemake.out``."""
    workdir = Path(workdir)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = ["timeout", "-s", "INT", "-k", "10", str(timeout)]
    cmd += [sys.executable, "-m", "snakemake", "--profile", str(profile_dir), *map(str, args)]
    log = workdir / "snakemake.out"
    with open(log, "wb") as out:
        # `timeout` passes SIGINT on to Snakemake, which then cancels its SLURM jobs: on expiry,
        # when pytest is interrupted (below), and when pytest dies (parent-death signal).
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_interrupt_with_parent,
        )
        try:
            rc = proc.wait(timeout + 30)
        except BaseException:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # `timeout` leads its own process group
                proc.wait()
            raise
    output = log.read_text(errors="replace")
    if rc != 0:
        why = f"timed out after {timeout} s" if rc in (124, 137) else "failed"
        rule_logs = sorted(
            (p for p in workdir.glob("**/logs/**/*.log") if ".snakemake" not in p.parts),
            key=lambda p: p.stat().st_mtime,
        )[-5:]  # the newest rule logs: the failed job's is among them
        slurm_logs = [*(workdir / ".snakemake").glob("slurm_logs/**/*.log")]
        slurm_logs += [*(BASE / "log").glob("slurm*.log")]
        logs = "\n".join(_tail(p, 2000) for p in [*rule_logs, *slurm_logs])
        pytest.fail(
            f"snakemake {why} (exit {rc}): {' '.join(cmd)}\n{output[-6000:]}\nlogs:\n{logs}"
        )
    return output


@pytest.fixture
def run_snakemake():
    """``run_snakemake(workdir, args, profile_dir, timeout) -> output``."""
    return _run_snakemake
