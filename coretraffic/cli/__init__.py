"""The `coretraffic` command line: `run`, `demo`, `check`, `render`, `diff` and `status`."""

from coretraffic.cli.main import main

__all__ = ["main"]
