"""The seccomp filter loaded by bubblewrap (`--seccomp FD`): allow by default, deny escape hatches.

Built with libseccomp (through pyseccomp) for the native architecture only; libseccomp kills
a process that switches ABI (i386 `int 0x80`, x32) to dodge the rules.
"""

from __future__ import annotations

import errno
import os
import socket
from functools import cache

from sandbox.base import SandboxError, first_line

# Syscalls no test needs and every escape or host-attack wants: debugging other processes,
# kernel/BPF surfaces, (un)mounting and namespaces, keyrings, io_uring (it bypasses seccomp
# for the operations it performs), modules, clocks and the machine itself.
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "open_by_handle_at", "name_to_handle_at",
    "unshare", "setns",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "fanotify_init",
)  # fmt: skip

# CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
# CLONE_NEWNET (<linux/sched.h>; the os module only names them from Python 3.12 on).
NAMESPACE_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)

TIOCSTI = 0x5412  # push input into a terminal: the classic sandbox escape
TIOCLINUX = 0x541C


@cache
def filter_program() -> bytes:
    """The compiled BPF program, built once per process."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError) as exc:  # RuntimeError: libseccomp.so.2 is missing
        raise SandboxError(
            f"cannot build the seccomp filter ({first_line(exc)}): apt-get install libseccomp2"
        ) from None
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED:
        rules.add_rule(deny, name)
    # Only unix sockets: no TCP/UDP/raw/netlink, even inside the empty network namespace.
    rules.add_rule(
        seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.NE, socket.AF_UNIX)
    )
    # clone3 passes its flags in memory that seccomp cannot read: make libc fall back to clone.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        rules.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))

    memfd = os.memfd_create("aimesh-seccomp", os.MFD_CLOEXEC)
    with open(memfd, "w+b") as program:
        rules.export_bpf(program)
        program.seek(0)
        return program.read()
