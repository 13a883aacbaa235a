"""`python -m coretraffic`: the same entry point as the `coretraffic` console script."""

from coretraffic.cli import console_script

console_script()
