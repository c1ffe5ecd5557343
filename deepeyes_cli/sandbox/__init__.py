"""The code sandbox: one stateful Jupyter kernel per trajectory, isolated by default.

Use :func:`deepeyes_cli.sandbox.factory.make_executor` (in-process pool, or the HTTP client
of a shared ``deepeyes sandbox serve``); the contract is in :mod:`.base`.

Threat model
------------
The code comes from a model under training: assume it is arbitrary and now and then hostile
(by accident or by reward hacking) — reading secrets, phoning home, filling memory or disk,
fork-bombing, hanging — but not an attacker holding a Linux kernel exploit.

With ``isolation: bwrap`` (the default) each session's kernel
- has no network: its own network namespace, with only a loopback of its own (the server,
  the host's services and the internet are unreachable);
- sees a read-only ``/usr``, a handful of ``/etc`` files (its own one-line passwd/group, no
  shadow), and the kernel Python's installation read-only — no home directories, no source
  checkout, no other session's files;
- writes only to a private tmpfs ``/tmp`` and work dir (counted in its memory, gone with the
  session) and to its kernel directory on the host (its sockets; files there ≤ the file-size
  limit);
- runs as its own unprivileged uid (``uid_base`` + n, unique among live kernels) with no
  capabilities, ``no_new_privs`` and a new terminal session;
- has its own PID, IPC and UTS namespaces: the server, the host and other sessions are
  neither visible nor signalable;
- starts from an empty environment: no API keys, tokens or PYTHONPATH of the server;
- is limited in memory, CPU share, processes, CPU time, file size and open files, core dumps off.

Where the limits hold: when the server may create child cgroups (root, or a delegated v2
cgroup), memory (the whole session, tmpfs included; the OOM killer takes only that kernel),
processes (pids) and the CPU quota are cgroup limits (v2, else the v1 memory/pids/cpu
hierarchies). Otherwise memory falls back to RLIMIT_AS per process (a fork can multiply it),
processes to RLIMIT_NPROC (it binds because the uid is unprivileged and unique), and there is
no CPU quota (the cell timeout and RLIMIT_CPU remain). ``deepeyes sandbox check`` says which.
A server that is not root cannot give kernels uids of their own: they keep its uid (in a user
namespace made by bwrap), so processes are then limited only by a delegated pids cgroup.

Not covered: Linux kernel exploits (there is no seccomp filter, so the whole syscall surface
of an unprivileged user is reachable, user namespaces included where the host allows them);
filling the host disk with many files, each under the size limit, in the kernel directory (put
``sandbox.state_dir`` on a size-limited filesystem where that matters); reading machine-wide
facts from ``/proc`` (CPU count, memory totals, uptime); anything installed in the kernel's
Python environment, which it can read (keep secrets out of it); timing side channels.

``isolation: docker`` aims at the same properties with a container per kernel (no network,
read-only root, memory/CPU/pids limits, no capabilities, unprivileged uid); its strength is
the container runtime's. ``isolation: none`` keeps only the limits and the empty environment:
for trusted code and debugging, and it must be asked for explicitly (then it warns).
"""
