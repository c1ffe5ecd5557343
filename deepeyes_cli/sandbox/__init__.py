"""The code sandbox: one stateful Jupyter kernel per trajectory, isolated by default.

Use :func:`deepeyes_cli.sandbox.factory.make_executor` (in-process pool, or the HTTP client
of a shared ``deepeyes sandbox serve``); the contract is in :mod:`.base`.

Threat model
------------
The code comes from a model under training: assume it is arbitrary and now and then hostile
(by accident or by reward hacking) — reading secrets, phoning home, filling memory or disk,
fork-bombing, hanging, flooding its output — but not an attacker holding a Linux kernel exploit.

With ``isolation: bwrap`` (the default) each session's kernel, whoever runs the server,
- has no network: its own network namespace, with only a loopback of its own (the server,
  the host's services and the internet are unreachable);
- sees a read-only root: ``/usr``, a handful of ``/etc`` files (its own one-line passwd/group, no
  shadow) and the kernel Python's installation — no home directories, no source checkout, no
  other session's files;
- writes only to a private tmpfs ``/tmp`` and work dir (each at most ``memory_mb``, gone with the
  session) and to its kernel directory on the host (its sockets; files there ≤ ``file_size_mb``);
- has its own PID, IPC, UTS and mount namespaces and a new terminal session: the server, the host
  and other sessions are neither visible nor signalable;
- starts from an empty environment: no API keys, tokens or PYTHONPATH of the server;
- has RLIMIT_CPU, RLIMIT_FSIZE and RLIMIT_NOFILE set, core dumps off, and every cell a timeout;
- gets its output cut in the kernel (texts to twice ``max_output_chars``, images to
  ``max_images_per_cell`` of ``max_image_pixels``), and the server refuses any message larger
  than a capped image (a kernel that sends one by hand loses its output channel and is replaced).

Who it runs as depends on the server:
- server as root: a uid of its own (``uid_base`` + n, held with a lock in ``/run/deepeyes-sandbox``
  so no two sandbox servers on the host share one), no capabilities, empty bounding set,
  ``no_new_privs``. It may create user namespaces where the host allows unprivileged ones
  (``user.max_user_namespaces``): that widens the kernel attack surface (below).
- server not root: the server's own uid, inside a user namespace bwrap makes, without
  capabilities and unable to create further user namespaces. Its uid on the host is the
  server's, so a bug that let it out of its namespaces would act as the server's user.

Memory, processes and CPU share are held as ``deepeyes sandbox check`` (and ``/health``) reports:

=========================  =============================  ======================  ============
where                      memory (``memory_mb``)         processes               CPU (``cpus``)
=========================  =============================  ======================  ============
cgroup v2 — the server's   ``memory.max`` over the whole  ``pids.max``            ``cpu.max``
cgroup hands memory, pids  session, tmpfs included, no
and cpu down to children   swap; the OOM killer takes
(a systemd unit with       only that session's processes
``Delegate=yes``, …); all
three or none
cgroup v1 — a hierarchy    ``memory.limit_in_bytes``      ``pids.max``            CFS quota
we may create children in  (+ ``memsw`` where swap is
(usually root), each       accounted), as above
controller on its own
no cgroup, root            RLIMIT_AS per process: address RLIMIT_NPROC, which      none: only
                           space (a kernel maps ~0.3 GB   binds because the uid   RLIMIT_CPU
                           of it), each fork gets as      is the kernel's alone   and the
                           much, tmpfs files not counted                          timeout
no cgroup, not root        RLIMIT_AS, as above            **none**: a fork bomb   none
                                                          runs into the server
                                                          user's own limits
=========================  =============================  ======================  ============

Not covered: Linux kernel exploits (there is no seccomp filter: the whole syscall surface of an
unprivileged process is reachable, user namespaces included as said above); filling the host disk
with many files, each under the size limit, in the kernel directory (put ``sandbox.state_dir`` on a
size-limited filesystem where that matters); reading machine-wide facts from ``/proc`` (CPU count,
memory totals, uptime, load); anything installed in the kernel's Python environment, which it can
read (keep secrets out of it); CPU time taken from other sessions where no CPU quota holds;
timing side channels.

How a kernel starts (``kernel_start``) does not change the list above. With ``exec`` each kernel
is a bwrap of its own that drops to its uid with ``setpriv``. With ``fork`` (what ``auto``, the
default, picks for bwrap when the server is root; it needs root) one template process per
server, itself under bwrap with the view above (no network, read-only root, empty environment)
but as root with capabilities and with the server's state directory (every kernel's host
files) mounted, has imported ipykernel, numpy, PIL and matplotlib once; it runs no session's
code. For each kernel a forked child of it joins the session's cgroups, unshares new mount,
PID, network, IPC, UTS (and cgroup) namespaces, mounts the session's own socket directory,
input and passwd/group, fresh tmpfs ``/tmp`` and work dir, ``/proc`` and ``/dev/pts``, unmounts
the state directory, sets the rlimits, drops to the kernel's uid with every capability set
empty and ``no_new_privs`` — all before the kernel, and so any session code, exists. What
differs from ``exec``:
- kernels forked from one template share its memory layout (address-space randomisation is
  per template, not per kernel: a memory-corruption exploit in one kernel learns the others'),
  its string-hash seed, and its pages until they are written (copy on write; a memory cgroup
  charges such a page to the template, i.e. the server); ``random`` and numpy's global
  generator are reseeded in each kernel;
- root processes with capabilities live in the sandbox's namespaces: the template, and one
  monitor per session outside that session's PID namespace (not visible or signalable from it);
  code that escaped a kernel's namespaces would meet them (as it would meet bwrap's own);
- PID 1 of a session is its init (the template's command line, no host path), not bwrap.
A template that cannot start makes ``auto`` fall back to ``exec`` (with a warning; ``/health``
says which under ``limits``); a template that dies takes its kernels with it (their sessions
reopen empty, with a note) and is started again.

``isolation: docker`` aims at the same properties with a container per kernel (no network,
read-only root, memory/CPU/pids limits, no capabilities, unprivileged uid); its strength is
the container runtime's. ``isolation: none`` keeps only the limits of the table (its kernels
share the server's uid, so processes are limited only by a pids cgroup), the output caps and
the empty environment: for trusted code and debugging, and it must be asked for explicitly (then
it warns).
"""
