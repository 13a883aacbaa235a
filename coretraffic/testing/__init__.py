"""Test material shipped with the package: a throwaway PKI, a demo upstream and a stand-in OCSP responder, for
tests, benchmarks and the demo."""
