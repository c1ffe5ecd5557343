"""The security suite: what untrusted generated code must not be able to do, each test ending
with the server still serving new sessions. Every test runs under bwrap and, where an engine
answers (make test-docker), under ``isolation: docker``."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import deepeyes_cli
from deepeyes_cli.sandbox.client import HttpExecutor


@pytest.fixture(params=["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox_server(request: pytest.FixtureRequest) -> Any:
    """The shared bwrap server, or the docker one (each started once per test session)."""
    return request.getfixturevalue("sandbox_server" if request.param == "bwrap" else "docker_sandbox_server")


def test_network_egress_is_blocked(sandbox_server: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\n"
            "except OSError as e:\n    print('blocked', type(e).__name__)\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('INTERNET')\n"
            "except OSError as e:\n    print('blocked', type(e).__name__)\n")
    body = sandbox_server.cell(code)
    assert body["output"]["stdout"].count("blocked") == 2, body
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    sandbox_server.assert_serving()


def test_host_files_are_unreadable(sandbox_server: Any, tmp_path: Path) -> None:
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text(sandbox_server.secret)
    secret_file.chmod(0o644)  # readable by anyone on the host: only the mount namespace keeps it out
    source = Path(deepeyes_cli.__file__)
    code = "\n".join([
        "import os",
        f"for p in [{str(secret_file)!r}, {str(source)!r}, '/etc/shadow', '/root/.bashrc']:",
        "    try:",
        "        print(p, 'READ', open(p).read()[:80])",
        "    except OSError as e:",
        "        print(p, 'denied', type(e).__name__)",
        # Every process it can see (its own and bwrap's, readable when the server is not root): no secrets.
        "for p in [p for p in os.listdir('/proc') if p.isdigit()]:",
        "    try:",
        "        print('environ', p, open(f'/proc/{p}/environ').read().replace(chr(0), ' '))",
        "    except OSError as e:",
        "        print('environ', p, 'denied')",
    ])
    body = sandbox_server.cell(code)
    out = body["output"]["stdout"]
    assert out.count(" denied ") == 4 and " READ " not in out, out
    assert sandbox_server.secret not in out and "OPENAI_API_KEY" not in out and "environ 1 " in out
    # PID 1 there shows no host paths in its cmdline: bwrap (which got its options through a file
    # descriptor), the session's init forked from the kernel template (sandbox.kernel_start: fork),
    # or, in a container, the engine's init running the kernel.
    cmdline = sandbox_server.cell("print(open('/proc/1/cmdline').read())")["output"]["stdout"]
    assert "deepeyes-sandbox-" not in cmdline
    if sandbox_server.isolation == "bwrap":
        assert ("bwrap" in cmdline and "/sandbox/kernel" in cmdline) or "/sandbox/assets/ipykernel_template.py" in cmdline
    else:
        assert "bwrap" not in cmdline and "/sandbox/kernel" in cmdline
    sandbox_server.assert_serving()


def test_writes_outside_the_work_dir_fail(sandbox_server: Any) -> None:
    import sys

    site = next(p for p in sys.path if p.endswith("site-packages"))
    code = "\n".join([
        "import os",
        f"for d in ['/', '/usr', '/etc', '/sandbox/input', {site!r}, '/sandbox']:",
        "    try:",
        "        open(os.path.join(d, 'pwned.txt'), 'w').write('x')",
        "        print(d, 'WROTE')",
        "    except OSError as e:",
        "        print(d, 'denied', type(e).__name__)",
        "open('mine.txt', 'w').write('ok'); print('work dir ok', open('mine.txt').read())",
        "try:",
        "    open('big.bin', 'wb').write(b'x' * (9 << 20)); print('BIG WROTE')",
        "except OSError as e:",
        "    print('big denied', e.errno)",
    ])
    out = sandbox_server.cell(code)["output"]["stdout"]
    assert out.count("denied") == 7 and "WROTE" not in out, out
    assert "work dir ok ok" in out
    assert not (Path(site) / "pwned.txt").exists()
    sandbox_server.assert_serving()


def test_no_nested_user_namespaces_when_the_server_is_not_root(sandbox_server: Any) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("as root each kernel has a uid of its own instead; user namespaces stay as the host allows "
                    "(threat model in deepeyes_cli/sandbox/__init__.py)")
    out = sandbox_server.cell("import subprocess\nprint(subprocess.run(['unshare', '-U', 'true']).returncode)")
    assert out["output"]["stdout"] == "1\n", out
    sandbox_server.assert_serving()


def test_server_environment_secrets_are_invisible(sandbox_server: Any) -> None:
    code = ("import os, json\nprint(json.dumps(dict(os.environ)))\n"
            "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))")
    out = sandbox_server.cell(code)["output"]["stdout"]
    env_line, pids_line = out.splitlines()
    env = json.loads(env_line)
    assert sandbox_server.secret not in out
    assert not {"OPENAI_API_KEY", "DEEPEYES_TEST_SECRET", "DEEPEYES_SANDBOX_TOKEN", "PYTHONPATH"} & set(env)
    assert len(eval(pids_line)) <= 4  # its own PID namespace: the server and the host are not there
    sandbox_server.assert_serving()


def test_a_fork_loop_hits_the_process_limit(sandbox_server: Any) -> None:
    if sandbox_server.limits["processes"] == "none":
        pytest.skip("this host gives sessions no process limit (not root, and no pids cgroup delegated to us)")
    sid = uuid.uuid4().hex
    code = "\n".join([
        "import os, time",
        "children = 0",
        "for _ in range(400):",
        "    try:",
        "        pid = os.fork()",
        "    except OSError as e:",
        "        print('limit after', children, 'errno', e.errno)",
        "        break",
        "    if pid == 0:",
        "        time.sleep(60)",
        "        os._exit(0)",
        "    children += 1",
        "else:",
        "    print('NO LIMIT', children)",
    ])
    out = sandbox_server.cell(code, sid)["output"]["stdout"]
    assert "limit after" in out, out
    assert int(out.split()[2]) < sandbox_server.max_processes
    sandbox_server.end(sid)  # kills the session's kernel and its children
    sandbox_server.assert_serving()


def test_memory_over_the_limit_kills_only_that_kernel(sandbox_server: Any) -> None:
    bystander = uuid.uuid4().hex
    sandbox_server.cell("kept = 'still here'", bystander)
    sid = uuid.uuid4().hex
    sandbox_server.cell("before = 1", sid)
    body = sandbox_server.cell(f"hog = b'x' * ({sandbox_server.memory_mb * 2} << 20)\nprint('ALLOCATED')", sid)
    cell = body["deepeyes"]
    assert "ALLOCATED" not in body["output"]["stdout"], body
    if sandbox_server.limits["memory"].startswith("cgroup"):
        # The session's cgroup: the OOM killer takes its kernel; the kernel is replaced and says so.
        assert cell["status"] == "crashed" and cell["restarted"], cell
        assert "memory" in cell["error"] and "restarted" in cell["error"]
        after = sandbox_server.cell("print(before)", sid)
        assert after["deepeyes"]["status"] == "error" and "NameError" in after["deepeyes"]["error"]
    else:  # RLIMIT_AS: the allocation itself fails, and the kernel lives on
        assert cell["status"] == "error" and "MemoryError" in cell["error"], cell
        assert sandbox_server.cell("print(before)", sid)["output"]["stdout"] == "1\n"
    assert sandbox_server.cell("print(kept)", bystander)["output"]["stdout"] == "still here\n"
    sandbox_server.end(sid)
    sandbox_server.end(bystander)
    sandbox_server.assert_serving()


def test_an_endless_loop_times_out_and_the_session_recovers(sandbox_server: Any) -> None:
    sid = uuid.uuid4().hex
    sandbox_server.cell("state = 'kept'", sid)
    body = sandbox_server.cell("while True:\n    pass", sid, timeout=1.0)
    assert body["deepeyes"]["status"] == "timeout" and not body["deepeyes"]["restarted"]
    assert "timed out" in body["output"]["stderr"] or "TimeoutError" in body["output"]["stderr"]
    assert sandbox_server.cell("print(state)", sid)["output"]["stdout"] == "kept\n"
    # A loop that ignores the interrupt: the kernel is replaced, and the result says so.
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    body = sandbox_server.cell(stubborn, sid, timeout=1.0)
    assert body["deepeyes"]["status"] == "timeout" and body["deepeyes"]["restarted"], body
    assert "restarted" in body["deepeyes"]["error"]
    assert sandbox_server.cell("print(1 + 1)", sid)["output"]["stdout"] == "2\n"
    sandbox_server.end(sid)
    sandbox_server.assert_serving()


def _peak_rss_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) >> 10


def test_fifty_megabytes_of_stdout_are_truncated(sandbox_server: Any) -> None:
    peak = _peak_rss_mb(sandbox_server.proc.pid)
    body = sandbox_server.cell("print('x' * 50_000_000)\nprint('tail-marker')\n'y' * 10_000_000", timeout=60)
    out = body["output"]["stdout"]
    assert body["deepeyes"]["truncated"]
    assert len(out) < 4000 + 200 and out.rstrip().endswith("tail-marker")
    shown = out.count("x") + len("\ntail-marker\n")
    assert f"[output truncated: {50_000_013 - shown:,} characters omitted]" in out  # counted exactly
    assert len(body["output"]["result"]) < 4000 + 200 and "characters omitted" in body["output"]["result"]
    # Cut in the kernel: the server never held the 60 MB.
    assert _peak_rss_mb(sandbox_server.proc.pid) - peak < 40
    sandbox_server.assert_serving()


def test_a_hand_made_giant_message_costs_the_kernel_not_the_server(sandbox_server: Any) -> None:
    # Past the kernel's own caps: straight onto its output socket. The server refuses the message
    # (ZMQ's size limit closes that channel) and replaces the kernel.
    code = ("k = get_ipython().kernel\n"
            "frames = k.session.serialize(k.session.msg('stream', {'name': 'stdout'}, parent=k.get_parent()))\n"
            "k.iopub_socket.send_multipart([*frames[:-1], b'x' * 80_000_000])")
    peak = _peak_rss_mb(sandbox_server.proc.pid)
    body = sandbox_server.cell(code, timeout=60)
    cell = body["deepeyes"]
    assert cell["status"] == "crashed" and "size limit" in cell["error"] and cell["restarted"], cell
    assert _peak_rss_mb(sandbox_server.proc.pid) - peak < 40
    sandbox_server.assert_serving()


def test_a_thousand_figures_are_capped(sandbox_server: Any) -> None:
    code = "for i in range(1000):\n    plt.figure(figsize=(1, 1))\n    plt.show()"
    body = sandbox_server.cell(code, timeout=120)
    assert len(body["output"]["images"]) == 10
    assert body["deepeyes"]["images_dropped"] == 990
    sandbox_server.assert_serving()


def test_sessions_cannot_see_each_other(sandbox_server: Any) -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    sandbox_server.cell("secret_a = 12345\nopen('a.txt', 'w').write('from a')\nimport os\nprint(os.getpid())", a)
    out = sandbox_server.cell("import os\nprint('secret_a' in globals(), os.path.exists('a.txt'), sorted(os.listdir('.')))"
                              "\nprint([open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()])",
                              b)["output"]["stdout"]
    first, procs = out.splitlines()
    assert first.startswith("False False") and "a.txt" not in first
    # Its own PID namespace: bwrap's init and its own kernel, not session a's, not the server.
    assert len(eval(procs)) <= 3 and "deepeyes_cli" not in procs and "uvicorn" not in procs
    assert sandbox_server.cell("print(secret_a)", a)["output"]["stdout"] == "12345\n"
    sandbox_server.end(a)
    sandbox_server.end(b)
    sandbox_server.assert_serving()


def test_twenty_parallel_sessions_stay_independent(sandbox_server: Any) -> None:
    async def one(executor: HttpExecutor, i: int) -> tuple[int, str, str]:
        session = await executor.open_session([Image.new("RGB", (10 + i, 20 + i), (i, 0, 0))])
        try:
            await session.run(f"mine = {i}")
            r = await session.run("import time; time.sleep(0.05)\nprint(mine, image_1.size, image_1.getpixel((0, 0))[0])")
            return i, r.status, r.stdout
        finally:
            await session.close()

    # A container costs ~0.6 s to start on a quiet machine (a bwrap kernel ~0.1 s): fewer, given longer.
    n, wait = (20, 180) if sandbox_server.isolation == "bwrap" else (8, 300)  # generous: a loaded machine

    async def many() -> list[tuple[int, str, str]]:
        async with HttpExecutor(sandbox_server.url, sandbox_server.token, timeout_s=wait) as executor:
            return await asyncio.gather(*(one(executor, i) for i in range(n)))

    for i, status, stdout in asyncio.run(many()):
        assert status == "ok" and stdout == f"{i} ({10 + i}, {20 + i}) {i}\n"
    sandbox_server.assert_serving()
