"""Where things are, so that no test depends on the folder it sits in."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
TESTDATA = TESTS / "testdata"  # golden cases and their inputs
PEER = TESTS / "peer"  # the Coreflow test peer: the real TypedSocket server from npm
