# Everyday recipes. `just` itself: `pip install rust-just` (or your package manager).

venv := ".venv"

# Install the project with its test extra and the TypedSocket test peer.
install:
    python3 -m venv {{venv}}
    {{venv}}/bin/python -m pip install -e '.[test]'
    npm ci --prefix tests/peer --no-audit --no-fund

# Run on demo routes (self-signed certificates, a demo upstream); prints curl lines that show it working.
demo:
    {{venv}}/bin/coretraffic demo --base-config caddy/Caddyfile.base

# Run against Coreflow (CORETRAFFIC_COREFLOW_URL, default http://coreflow:3000).
run *ARGS:
    {{venv}}/bin/coretraffic run --base-config caddy/Caddyfile.base {{ARGS}}

# Lint, format check and types.
lint:
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy

# The tests (a real Caddy and the real TypedSocket peer on loopback).
test *ARGS:
    {{venv}}/bin/pytest {{ARGS}}

# Exactly what CI runs, from scratch.
ci:
    bash .ci/run

# Side-by-side benchmarks (ratios, not absolute times); see BENCHMARKS.md.
bench *ARGS:
    {{venv}}/bin/python -m benchmarks {{ARGS}}
