"""The names of the hosts a driver served last, kept on disk so that a restarted driver's removal guard knows them.

The guard (`core.serving`) compares each set with what is served. A restarted driver has served nothing yet, so
without this record its first set could remove every host: exactly when Coreflow pushes again (after the
reconnect) and a bad read upstream would cost the most. Only names are kept, no key and no password; the driver
keeps no private key of its own on disk, which is why a host's last good version does not survive a restart.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import orjson

from coretraffic.errors import StateFileError
from coretraffic.sources.private_file import read_private_json, write_private

FILE_NAME = "served-hosts.json"
_FORMAT = 1

log = logging.getLogger("coretraffic")


class ServedHostsFile:
    """The record at `path`: read once at start (`load`), replaced when the served names change (`save`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: frozenset[str] | None = None
        self._writing = threading.Lock()  # `save` runs in threads; one write at a time

    def load(self) -> frozenset[str]:
        """The names the last driver served; none when there is no usable record (one warning if it is damaged)."""
        try:
            document = read_private_json(self.path)
        except StateFileError as exc:
            log.warning("served hosts: %s", exc)
            return frozenset()
        if document is None:
            return frozenset()
        hosts = document.get("hosts") if isinstance(document, dict) and document.get("format") == _FORMAT else None
        if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
            log.warning("served hosts: %s is not a record this version writes; ignored", self.path)
            return frozenset()
        self._written = frozenset(hosts)
        return self._written

    def save(self, hosts: frozenset[str]) -> None:
        """Write `hosts` if they differ from what the file holds. Blocking I/O: call it in a thread. A failure is
        logged and costs only the guard's memory across a restart."""
        with self._writing:
            if hosts == self._written:
                return
            try:
                write_private(self.path, orjson.dumps({"format": _FORMAT, "hosts": sorted(hosts)}))
            except OSError as exc:
                log.warning("served hosts: cannot write %s: %s", self.path, exc.strerror or exc)
                return
            self._written = hosts
