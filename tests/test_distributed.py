"""Data-parallel training on torch.distributed (gloo, loopback): real processes, real kills."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seqkit.checkpoint import CheckpointError, read_checkpoint

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="kills workers found through /proc")

NAMES = [
    "anna",
    "anne",
    "bob",
    "bobby",
    "carl",
    "carla",
    "dana",
    "dan",
    "eve",
    "evelyn",
    "gina",
    "gino",
] * 5
COMMON = [
    "--backend",
    "torch",
    "--dtype",
    "float64",
    "--batch-size",
    "8",
    "--hidden-size",
    "8",
    "--no-progress",
    "--eval-every",
    "1000",
    "--seed",
    "2",
]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def seqkit(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "seqkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_same_params(a, b, tol):
    pa, pb = read_checkpoint(a).params, read_checkpoint(b).params
    assert set(pa) == set(pb)
    for name in pa:
        np.testing.assert_allclose(pa[name], pb[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("extra", [[], ["--dropout", "0.3", "--layers", "2"]])
def test_two_processes_equal_one(tmp_path, data, extra):
    """With dropout too (not yet): each process keeps its rows of the global batch's masks."""
    args = ["--steps", 12, *COMMON, *extra]
    seqkit("train", data, "--out", tmp_path / "one.npz", *args)
    two = seqkit("train", data, "--out", tmp_path / "two.npz", "--nproc", 2, *args)
    assert two.stderr.count("wrote ") == 1  # only rank 0 reports and writes
    assert_same_params(tmp_path / "one.npz", tmp_path / "two.npz", 1e-12)


def test_checkpoint_from_two_processes_resumes_on_one(tmp_path, data):
    seqkit("train", data, "--out", tmp_path / "whole.npz", "--steps", 16, *COMMON)
    part = tmp_path / "part.npz"
    seqkit(
        "train", data, "--out", part, "--steps", 8, "--checkpoint-every", 4, "--nproc", 2, *COMMON
    )
    seqkit("train", data, "--resume", part, "--steps", 16, "--no-progress")
    assert_same_params(tmp_path / "whole.npz", part, 1e-12)


def _worker_pid(out: Path, rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            str(out).encode() in cmd
            and f"RANK={rank}".encode() in env
            and b"LOCAL_RANK" in b"".join(env)
        ):
            return int(entry.name)
    return None


def test_a_dead_rank_stops_the_job_and_the_checkpoint_survives(tmp_path, data):
    out = tmp_path / "m.npz"
    cmd = [
        sys.executable,
        "-m",
        "seqkit",
        "train",
        str(data),
        "--out",
        str(out),
        "--steps",
        "100000",
        "--checkpoint-every",
        "3",
        "--nproc",
        "2",
        *COMMON,
    ]
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not out.exists() and time.time() < deadline and launcher.poll() is None:
            time.sleep(0.1)
        assert out.exists(), "no checkpoint was written"
        pid = _worker_pid(out, rank=1)
        assert pid is not None, "rank 1 not found"
        os.kill(pid, signal.SIGKILL)
        _, err = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 1
    assert "rank 1 of 2 died (signal SIGKILL)" in err
    try:
        saved = read_checkpoint(out).extra["training"]["step"]
    except CheckpointError as exc:  # pragma: no cover - would mean a torn write
        pytest.fail(f"checkpoint damaged: {exc}")
    resumed = seqkit("train", data, "--resume", out, "--steps", saved + 3, "--no-progress")
    assert f"at step {saved} of {saved + 3}" in resumed.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("killed", [0, 1])
def test_a_rank_whose_peer_died_says_so_and_exits_with_lost_rank_exit(tmp_path, data, killed):
    """Ranks started by hand (as torchrun would): the survivor's all-reduce fails, and it exits
    with LOST_RANK_EXIT and one line, not with SIGABRT from gloo's threads at shutdown."""
    from seqkit.distributed import LOST_RANK_EXIT

    out = tmp_path / "m.npz"
    port = str(_free_port())
    cmd = [sys.executable, "-m", "seqkit", "train", str(data), "--out", str(out)]
    cmd += ["--steps", "100000", "--checkpoint-every", "3", *COMMON]
    ranks = []
    try:
        for rank in (0, 1):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2")
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
            ranks.append(
                subprocess.Popen(
                    cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        deadline = time.time() + 120
        while not out.exists() and time.time() < deadline and ranks[0].poll() is None:
            time.sleep(0.1)
        assert out.exists(), "no checkpoint was written: " + ranks[0].communicate()[1]
        ranks[killed].kill()
        survivor = ranks[1 - killed]
        _, err = survivor.communicate(timeout=120)
    finally:
        for proc in ranks:
            proc.kill()
            proc.communicate()
    assert survivor.returncode == LOST_RANK_EXIT, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: the gradient all-reduce with the other ranks failed"), err
    assert "terminate called" not in err and "Traceback" not in err


@pytest.mark.parametrize(("noticed", "died"), [(1, 2), (2, 1)])
def test_the_launcher_names_the_rank_that_died_not_the_one_that_noticed(
    monkeypatch, capsys, noticed, died
):
    """Every failure in the same second (the agent's timestamps have one-second resolution):
    the rank that exited with LOST_RANK_EXIT, or was stopped with SIGTERM, is never the cause."""
    import torch.distributed.launcher.api as api
    from seqkit_torch.distributed import launch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from seqkit.distributed import LOST_RANK_EXIT

    def failure(rank, code):
        made = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file="")
        made.timestamp = 1_700_000_000
        return made

    failures = {
        0: failure(0, -signal.SIGTERM),
        noticed: failure(noticed, LOST_RANK_EXIT),
        died: failure(died, -signal.SIGKILL),
        3: failure(3, -signal.SIGTERM),
    }

    def elastic_launch(config, entrypoint):
        def run(*args):
            raise ChildFailedError("seqkit", failures)

        return run

    monkeypatch.setattr(api, "elastic_launch", elastic_launch)
    assert launch(4, ["train"]) == 1
    assert f"rank {died} of 4 died (signal SIGKILL)" in capsys.readouterr().err


def test_a_rank_that_fails_on_its_own_exits_with_its_own_status(tmp_path, data):
    """Divergence stops every rank: each leaves the process group without waiting and exits 1
    after its one line; none dies of SIGABRT from gloo's threads at shutdown."""
    out = tmp_path / "m.npz"
    args = ["--out", out, "--steps", 50, "--lr", "1e6", "--nproc", 2, *COMMON]
    proc = seqkit("train", data, *args, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("training diverged") == 1  # rank 0 speaks for every rank
    assert "died (exit code 1)" in proc.stderr, proc.stderr
    assert "SIGABRT" not in proc.stderr and "terminate called" not in proc.stderr
    assert not out.exists()


def test_ctrl_c_stops_the_job_with_one_line_and_a_resumable_checkpoint(tmp_path, data):
    """SIGINT to the whole process group, as a terminal sends it: the launcher exits 130 (no
    'internal error' from torchrun's SignalException) and rank 0 alone says what it kept."""
    out = tmp_path / "m.npz"
    # Python's own SIGINT handler in every process (see test_cli's Ctrl-C test for why)
    restore = (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('seqkit', run_name='__main__')"
    )
    cmd = [sys.executable, "-c", restore, "train", str(data), "--out", str(out)]
    cmd += ["--steps", "100000", "--checkpoint-every", "3", "--nproc", "2", *COMMON]
    launcher = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while not out.exists() and time.time() < deadline and launcher.poll() is None:
            time.sleep(0.1)
        assert out.exists(), "no checkpoint was written"
        time.sleep(0.3)
        os.killpg(launcher.pid, signal.SIGINT)
        _, err = launcher.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the ranks too, were the test to fail
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 130, err
    assert err.count("seqkit: interrupted;") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    saved = read_checkpoint(out).extra["training"]["step"]
    resumed = seqkit("train", data, "--resume", out, "--steps", saved + 2, "--no-progress")
    assert f"at step {saved} of {saved + 2}" in resumed.stderr
