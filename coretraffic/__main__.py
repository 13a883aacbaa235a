"""`python -m coretraffic`: the same entry point as the `coretraffic` console script."""

from coretraffic.cli import main

raise SystemExit(main())
