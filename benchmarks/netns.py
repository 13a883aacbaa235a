"""Running a command in a network namespace of its own, with loopback up and `net.ipv4.tcp_migrate_req` set.

The sysctl is one value per network namespace: a fresh namespace lets a benchmark or a test set it without
touching the machine's. Needs root (or CAP_SYS_ADMIN) and util-linux `unshare`, iproute2 `ip`.
"""

from __future__ import annotations

import os
import shlex
import shutil


def netns_problem() -> str:
    """Why a network namespace cannot be made here, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace (unshare -n)"
    missing = [tool for tool in ("unshare", "ip", "sysctl") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (util-linux, iproute2, procps)"
    return ""


def in_own_netns(command: list[str], tcp_migrate_req: int) -> list[str]:
    """`command` wrapped to run in a new network namespace: lo up, the sysctl set, then `command` exec'd."""
    setup = f"ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req={tcp_migrate_req}"
    return ["unshare", "--net", "--", "sh", "-c", f"{setup} && exec {shlex.join(command)}"]
