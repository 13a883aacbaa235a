# Everyday recipes. `just` itself: `pip install rust-just` (or your package manager).

venv := ".venv"

# Install the project with its test extra and the TypedSocket test peer.
install:
    python3 -m venv {{venv}}
    {{venv}}/bin/python -m pip install -e '.[test]'
    npm ci --prefix tests/peer --no-audit --no-fund

# Run on demo routes (self-signed certificates, a demo upstream); prints curl lines that show it working.
demo:
    {{venv}}/bin/coretraffic demo

# Run against Coreflow (CORETRAFFIC_COREFLOW_URL, default http://coreflow:3000).
run *ARGS:
    {{venv}}/bin/coretraffic run --base-config coretraffic/caddy/Caddyfile.base {{ARGS}}

# Lint, format check, types, the import layering (pyproject's [tool.importlinter]) and the Containerfile.
lint:
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy
    {{venv}}/bin/lint-imports
    {{venv}}/bin/hadolint Containerfile

# The tests (a real Caddy and the real TypedSocket peer on loopback).
test *ARGS:
    {{venv}}/bin/pytest {{ARGS}}

# Debian's docker.io, podman, catatonit and debootstrap are installed when missing; the base image is cached under
# /var/cache/coretraffic-engines. About 5.5 min, 8 the first time (RELIABILITY.md, "The deployment files on real engines").
# The deployment files alone on real engines (as root): a Swarm of three dockerd, podman kube play.
test-engines *ARGS:
    for p in docker.io:/usr/bin/docker docker.io:/usr/sbin/dockerd podman:/usr/bin/podman catatonit:/usr/bin/catatonit debootstrap:/usr/sbin/debootstrap; do \
        [ -x "${p#*:}" ] || apt-get install -y "${p%%:*}"; done
    [ -d tests/peer/node_modules ] || npm ci --prefix tests/peer --no-audit --no-fund
    {{venv}}/bin/pytest -p no:cacheprovider -s tests/engines {{ARGS}}

# Exactly what CI runs, from scratch.
ci:
    bash .ci/run

# Side-by-side benchmarks (ratios, not absolute times; a few minutes, loopback only); see BENCHMARKS.md.
# Installs h2load (Debian's nghttp2-client), the load generator, when missing. `just bench --smoke` takes seconds.
bench *ARGS:
    command -v h2load >/dev/null || apt-get install -y nghttp2-client || sudo apt-get install -y nghttp2-client
    {{venv}}/bin/python -m benchmarks {{ARGS}}

# Rewrite the generated tables of the reference (docs/reference/) from the code; tests/unit/test_reference.py checks them.
reference:
    {{venv}}/bin/python -m tests.support.reference

# A running driver's status, readably (exit 1 if not ready); --status-addr or CORETRAFFIC_STATUS_ADDR.
status *ARGS:
    {{venv}}/bin/coretraffic status {{ARGS}}

# A running driver's Prometheus metrics.
metrics addr="127.0.0.1:9180":
    {{venv}}/bin/python -c "import urllib.request; print(urllib.request.urlopen('http://{{addr}}/metrics').read().decode())"

# Build the container image with podman (or docker); deploy/pod.yaml runs localhost/coretraffic:latest.
# podman builds in Docker's image format: the OCI format has no HEALTHCHECK, and podman would drop it.
build-image tag="localhost/coretraffic:latest":
    if command -v podman >/dev/null; then engine="podman build --format docker"; else engine="docker build"; fi; \
    $engine -f Containerfile \
        --build-arg VERSION="$({{venv}}/bin/python -c 'import coretraffic; print(coretraffic.__version__)')" -t {{tag}} .

# Check deploy/pod.yaml against the Kubernetes schema (bundled with kubernetes-validate: offline).
check-pod:
    {{venv}}/bin/kubernetes-validate --strict deploy/pod.yaml

# Run Caddy and the driver as a pod with podman (after `just build-image`).
pod-up:
    podman kube play --replace deploy/pod.yaml

# Stop and remove that pod.
pod-down:
    podman kube down deploy/pod.yaml
