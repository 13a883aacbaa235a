"""Test material shipped with the package: a throwaway PKI and a demo upstream, for tests, benchmarks and the demo."""
