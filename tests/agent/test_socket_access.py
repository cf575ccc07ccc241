"""Who may use the agent socket: mode 0600 by default, 0660 with `--socket-group`, and the agent's own
SO_PEERCRED check behind the file mode. A real agent process; clients run as user `nobody`."""

from __future__ import annotations

import functools
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.procs import Proc, short_tmpdir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starting a client as another user needs root")

NOBODY = "nobody"
OUTSIDER_GROUP = "staff"
"""A group `nobody` is not in."""
MEMBER_GROUP = "users"
"""A group the client process gets as a supplementary group (SO_PEERGROUPS)."""

STATUS_CLIENT = textwrap.dedent(
    """
    import json, sys
    from runwire.cli._common import agent_status
    try:
        st = agent_status(sys.argv[1])
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    else:
        print(json.dumps({"ok": True, "agent_id": st.agent_id}))
    """
)

SDK_CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from runwire._transports.producer import FlushTimeout, Producer
    producer = Producer(sys.argv[1], Path(sys.argv[2]))
    producer.scalars.extend(("run-x", "loss", 0.5, 0, time.time_ns()))
    started = time.monotonic()
    try:
        producer.flush(30)
    except FlushTimeout as e:
        print(json.dumps({"ok": False, "error": str(e), "seconds": time.monotonic() - started}))
    else:
        print(json.dumps({"ok": True}))
    """
)


def _users_exist() -> None:
    for name, lookup in ((NOBODY, pwd.getpwnam), (OUTSIDER_GROUP, grp.getgrnam), (MEMBER_GROUP, grp.getgrnam)):
        try:
            lookup(name)
        except KeyError:
            pytest.skip(f"this machine has no {name!r} user/group")


@pytest.fixture
def root() -> Path:
    _users_exist()
    path = short_tmpdir("rwsock")
    os.chmod(path, 0o755)  # the folder must let `nobody` reach the socket; the socket's own mode decides
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_agent(root: Path, *args: str) -> Proc:
    return Proc(
        "agent",
        ["runwire.agent", "--socket", str(root / "agent.sock"), "--collector", "127.0.0.1:9",
         "--spool-dir", str(root / "spool"), "--log-level", "info", *args],
        root / "agent.json",
        root / "agent.log",
    ).start()  # fmt: skip


SITE = "import site; site.addsitedir({!r})\n"
"""Prepended to a client's code when it runs on another interpreter: this environment's packages."""


def _run_as_nobody(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, user=NOBODY, group="nogroup", capture_output=True, text=True, timeout=60, **kw)


@functools.cache
def nobody_python() -> tuple[str, str]:
    """(interpreter, code prefix) that `nobody` can run with runwire importable: this interpreter when
    `nobody` may execute it, else the system's Python of the same version with this environment's
    site-packages (this one may live under a folder only root can enter)."""
    purelib = sysconfig.get_paths()["purelib"]
    for exe, prefix in (
        (sys.executable, ""),
        (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", SITE.format(purelib)),
    ):
        try:
            done = _run_as_nobody([exe, "-c", prefix + "import runwire.cli._common"], cwd="/")
        except (PermissionError, FileNotFoundError):
            continue
        if done.returncode == 0:
            return exe, prefix
    pytest.skip(f"no Python interpreter that user {NOBODY!r} may run with runwire importable")


def as_nobody(code: str, *argv: str, extra_groups: list[str] | None = None, env: dict | None = None) -> dict:
    exe, prefix = nobody_python()
    home = Path(short_tmpdir("rwnb"))
    os.chmod(home, 0o777)
    try:
        done = subprocess.run(
            [exe, "-c", prefix + code, *argv],
            user=NOBODY,
            group="nogroup",
            extra_groups=extra_groups or [],
            env={**os.environ, "HOME": str(home), "RUNWIRE_HOME": str(home), **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=home,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_socket_is_0600_and_another_user_cannot_connect(root):
    agent = start_agent(root)
    try:
        sock = root / "agent.sock"
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        out = as_nobody(STATUS_CLIENT, str(sock))
        assert not out["ok"] and "PermissionError" in out["error"], out
        # the SDK says why at once (no 10 s wait for an agent that will never let it in)
        sdk = as_nobody(SDK_CLIENT, str(sock), "sdk-spool")
        assert not sdk["ok"] and "Permission denied" in sdk["error"] and "--socket-group" in sdk["error"], sdk
        assert sdk["seconds"] < 10, sdk
    finally:
        agent.stop()


def test_peer_check_refuses_another_user_even_when_the_socket_is_opened_up(root):
    agent = start_agent(root)
    try:
        sock = root / "agent.sock"
        os.chmod(sock, 0o666)  # a mistake (or an attacker's hope): the file no longer protects the agent
        out = as_nobody(STATUS_CLIENT, str(sock))
        assert not out["ok"], out
        uid = pwd.getpwnam(NOBODY).pw_uid
        assert f"permission denied: uid {uid} is refused" in out["error"], out
        assert "--socket-group" in out["error"], out
        sdk = as_nobody(SDK_CLIENT, str(sock), "sdk-spool")
        assert not sdk["ok"] and f"uid {uid} is refused" in sdk["error"] and sdk["seconds"] < 10, sdk
        assert f"uid {uid} is refused" in agent.log_tail(20000)
    finally:
        agent.stop()


def test_socket_group_outsider_is_refused_by_the_peer_check(root):
    agent = start_agent(root, "--socket-group", OUTSIDER_GROUP)
    try:
        sock = root / "agent.sock"
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam(OUTSIDER_GROUP).gr_gid
        os.chmod(sock, 0o666)
        out = as_nobody(STATUS_CLIENT, str(sock))
        assert not out["ok"] and f"members of group {OUTSIDER_GROUP!r}" in out["error"], out
    finally:
        agent.stop()


def test_socket_group_member_is_served(root):
    agent = start_agent(root, "--socket-group", MEMBER_GROUP)
    try:
        sock = root / "agent.sock"
        # a supplementary group (not the primary one): the agent reads it with SO_PEERGROUPS
        out = as_nobody(STATUS_CLIENT, str(sock), extra_groups=[MEMBER_GROUP])
        assert out == {"ok": True, "agent_id": agent.info["agent_id"]}, out
        without = as_nobody(STATUS_CLIENT, str(sock))
        assert not without["ok"] and "PermissionError" in without["error"], without
    finally:
        agent.stop()


def test_unknown_socket_group_is_a_usage_error(root):
    done = subprocess.run(
        [sys.executable, "-m", "runwire.agent", "--socket", str(root / "a.sock"), "--spool-dir", str(root / "s"),
         "--socket-group", "no-such-group-xyz"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "no group named 'no-such-group-xyz'" in done.stderr
