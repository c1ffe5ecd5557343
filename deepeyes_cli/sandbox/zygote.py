"""The kernel template: runs INSIDE a bubblewrap sandbox, as root with capabilities, and forks
one kernel per session from a process that has already imported ipykernel, IPython, numpy,
PIL and matplotlib (about 0.7 s of CPU a kernel no longer pays).

It imports nothing from deepeyes_cli (the server copies this file into the sandbox's assets)
and runs no code of a session itself. For each ``spawn`` request (JSON on a SOCK_SEQPACKET
socket, with file descriptors the server opened: the kernel's log and its cgroups'
``cgroup.procs``) it forks a monitor, which:

1. joins the session's cgroups (writing ``0`` to the server's descriptors), starts a new
   terminal session, and unshares new mount, PID, network, IPC and UTS namespaces;
2. forks the session's init (PID 1 of the new PID namespace), which mounts the session's own
   view over the template's: its socket directory, its input (read-only), its passwd/group
   (read-only), fresh size-limited tmpfs ``/tmp`` and work dir, a fresh ``/proc`` and
   ``/dev/pts``; unmounts the server's state directory (every kernel's host files, which the
   template sees and binds from); brings its own loopback up; unshares a cgroup namespace; sets the rlimits;
   then drops to the session's uid with no capabilities (bounding, permitted, effective,
   inheritable and ambient sets empty) and ``no_new_privs``, and reaps orphans;
3. forks the kernel from init (PID 2): an empty environment of its own, numpy's global
   random state reseeded (``random`` reseeds itself after a fork), ``IPKernelApp`` started.

The template's own view (read-only root, no network, no host paths but those bwrap binds) is
the one every kernel starts from, so nothing of the host beyond a bwrap kernel's view is
reachable even before the session's mounts are made. Every process of a session dies with the
template (parent-death signals), and the template dies with the server (``--die-with-parent``).
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LIBC = ctypes.CDLL(None, use_errno=True)
POST_FORK_IMPORTS = (
    "ipykernel.debugger", "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
    "IPython.extensions.storemagic", "IPython.utils.wildcard", "pdb", "pydoc", "faulthandler", "mimetypes",
    "tornado.gen", "tornado.locks", "tornado.queues", "tornado.platform.asyncio", "http.server",
    "xmlrpc.client", "xmlrpc.server", "encodings.idna", "IPython.core.logger", "numpy.random", "resource", "secrets",
)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    _check(_LIBC.mount(enc(src), dst.encode(), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {dst}")


def _bind(src: str, dst: str, readonly: bool) -> None:
    _mount(src, dst, None, MS_BIND)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
    _mount(None, dst, None, flags)


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_LIBC.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), f"prctl {option}")


def preload() -> None:
    """Import what every kernel needs, as kernel_init.setup will use it (matplotlib's font list
    from the server's assets). No thread may be left running: a fork keeps only the caller."""
    import shutil
    import threading

    seed, config_dir = os.environ.get("DEEPEYES_MPL_CACHE"), os.environ.get("MPLCONFIGDIR")
    if seed and config_dir and os.path.isdir(seed):
        os.makedirs(config_dir, exist_ok=True)
        for name in os.listdir(seed):
            shutil.copy(os.path.join(seed, name), config_dir)
    import matplotlib

    matplotlib.use("agg")
    import ipykernel.ipkernel
    import ipykernel.kernelapp
    import ipykernel.zmqshell  # noqa: F401
    import IPython.display  # noqa: F401
    import matplotlib.figure
    import matplotlib.pyplot
    import numpy  # noqa: F401
    import PIL.Image
    import PIL.PngImagePlugin

    PIL.Image.init()
    import importlib

    for name in POST_FORK_IMPORTS:  # what IPKernelApp and a kernel's first cells would import after the fork
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if threading.active_count() != 1:
        raise RuntimeError(f"{threading.active_count()} threads after the imports; a fork needs one")


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by a signal: 128 + its number, as a shell says


def _loopback_up() -> None:
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, siocgifflags, struct.pack("16sh22x", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def _drop_privileges(uid: int) -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    for cap in range(last_cap + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    os.setresuid(uid, uid, uid)  # from root to another uid: permitted and effective sets are cleared

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(_LIBC.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a change of uid cleared it


def _session_view(spec: dict[str, Any]) -> None:
    """Mount the session's own files and filesystems over the template's, and unmount the
    directory of every kernel's files."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    host = spec["dir"]
    _bind(f"{host}/ipc", "/sandbox/kernel", readonly=False)
    _bind(f"{host}/input", "/sandbox/input", readonly=True)
    _bind(f"{host}/etc/passwd", "/etc/passwd", readonly=True)
    _bind(f"{host}/etc/group", "/etc/group", readonly=True)
    _check(_LIBC.umount2(spec["state"].encode(), MNT_DETACH), "umount the state directory")
    size = int(spec["tmpfs_bytes"])
    for target in ("/tmp", "/sandbox/work"):
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    _check(_LIBC.umount2(b"/proc", MNT_DETACH), "umount /proc")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for sub in ("sys", "sysrq-trigger", "irq", "bus"):  # as bwrap leaves them: read-only
        if os.path.exists(f"/proc/{sub}"):
            _bind(f"/proc/{sub}", f"/proc/{sub}", readonly=True)
    if os.path.isdir("/dev/pts"):
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    _loopback_up()
    socket.sethostname("sandbox")
    if _LIBC.unshare(CLONE_NEWCGROUP) != 0:  # where the host has cgroup namespaces
        pass


def _set_limits(spec: dict[str, Any]) -> None:
    import resource

    for name, value in spec["rlimits"].items():
        limit = getattr(resource, f"RLIMIT_{name.upper()}")
        resource.setrlimit(limit, (int(value), int(value)))


def _kernel(spec: dict[str, Any]) -> None:
    os.environ.clear()
    os.environ.update(spec["env"])
    import numpy

    numpy.random.seed()  # the template's state is every kernel's otherwise
    sys.argv = ["ipykernel_launcher", *spec["args"]]
    sys.path[0] = os.getcwd()  # as `python -m` sets it
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=spec["args"])


def _init(spec: dict[str, Any]) -> None:
    """PID 1 of the session: its view, its limits, its uid; then the kernel, and reaping."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _session_view(spec)
    _set_limits(spec)
    _drop_privileges(int(spec["uid"]))
    os.chdir(spec["cwd"])
    os.setsid()
    kernel = os.fork()
    if kernel == 0:
        try:
            _kernel(spec)
        except BaseException:
            traceback.print_exc()
            os._exit(97)
        os._exit(0)
    while True:
        pid, status = os.wait()
        if pid == kernel:
            os._exit(_exit_code(status))


def _monitor(spec: dict[str, Any], fds: list[int], template: int) -> None:
    """The forked child of the template: outside the session's PID namespace, waits for its init."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != template:
        os._exit(1)
    log_fd, *procs = fds
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in procs:
        os.write(fd, b"0")  # 0: the writer itself (and everything it forks from now on)
        os.close(fd)
    keep = {0, 1, 2}
    for entry in os.listdir("/proc/self/fd"):
        if int(entry) not in keep:
            try:
                os.close(int(entry))
            except OSError:
                pass
    os.setsid()
    _check(_LIBC.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    init = os.fork()
    if init == 0:
        try:
            _init(spec)
        except BaseException:
            traceback.print_exc()
            os._exit(98)
    _, status = os.waitpid(init, 0)
    os._exit(_exit_code(status))


def serve(sock: socket.socket) -> None:
    template = os.getpid()
    children: dict[int, str] = {}  # monitor pid -> kernel name
    by_name: dict[str, int] = {}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)

    def send(msg: dict[str, Any]) -> None:
        sock.send(json.dumps(msg).encode())

    send({"op": "ready", "pid": template})
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 16)
                if not data:  # the server is gone
                    for pid in children:
                        os.kill(pid, signal.SIGKILL)
                    os._exit(0)
                msg = json.loads(data)
                if msg["op"] == "spawn":
                    pid = os.fork()
                    if pid == 0:
                        try:
                            signal.set_wakeup_fd(-1)
                            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                            _monitor(msg, fds, template)
                        except BaseException:
                            traceback.print_exc()
                        os._exit(99)
                    for fd in fds:
                        os.close(fd)
                    children[pid] = msg["name"]
                    by_name[msg["name"]] = pid
                    send({"op": "spawned", "name": msg["name"], "pid": pid})
                elif msg["op"] == "kill":
                    pid = by_name.get(msg["name"], 0)
                    if pid:
                        os.kill(pid, signal.SIGKILL)
            else:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                while children:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    name = children.pop(pid, None)
                    if name is not None:
                        by_name.pop(name, None)
                        send({"op": "exited", "name": name, "code": _exit_code(status)})


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        preload()
    except BaseException as e:
        sock.send(json.dumps({"op": "failed", "error": f"{type(e).__name__}: {e}"}).encode())
        raise
    serve(sock)


if __name__ == "__main__":
    main()
