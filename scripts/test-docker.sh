#!/usr/bin/env bash
# make test-docker: the `docker`-marked tests against a real engine.
#  - DOCKER_HOST set and answering (Docker Engine, or a podman of yours): used as it is.
#  - otherwise, as root with apt: podman + runc set up by scripts/docker-engine.sh (a debootstrapped
#    base image cached under /var/cache/deepeyes, the API on a unix socket, stopped afterwards).
#  - otherwise the tests run and skip, each with the reason.
# Then the sandbox image is built (`deepeyes sandbox build-image`; the engine's layer cache makes a
# rebuild take seconds) and the tests run with DEEPEYES_REQUIRE_DOCKER=1: a skip is then a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ENGINE=scripts/docker-engine.sh
TESTS=(tests/docker tests/integration/sandbox/test_sandbox_security.py)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export DEEPEYES_TEST_DOCKER_IMAGE=${DEEPEYES_TEST_DOCKER_IMAGE:-deepeyes-sandbox:latest}
started=""

engine_answers() { "$PY" -c "from deepeyes_cli.sandbox.image import docker_client; docker_client()" >/dev/null 2>&1; }

skip_all() {
  echo "test-docker: $*; the docker tests skip"
  unset DOCKER_HOST
  exec "$PY" -m pytest -m docker -p no:cacheprovider -q -rs "${TESTS[@]}"
}

if [ -n "${DOCKER_HOST:-}" ] && engine_answers; then
  echo "test-docker: using the engine at $DOCKER_HOST"
else
  out=$(bash $ENGINE setup) || skip_all "${out#skip: }"
  out=$(bash $ENGINE base) || skip_all "${out#skip: }"
  pid_before=$(cat "${DEEPEYES_DOCKER_RUN:-/run/deepeyes-podman}/service.pid" 2>/dev/null || true)
  out=$(bash $ENGINE start) || skip_all "${out#skip: }"
  eval "export $(bash $ENGINE env | tr '\n' ' ')"
  if [ -z "$pid_before" ] || ! kill -0 "$pid_before" 2>/dev/null; then started=1; fi
  engine_answers || { [ -n "$started" ] && bash $ENGINE stop; skip_all "the engine at $DOCKER_HOST does not answer"; }
fi
stop() { if [ -n "$started" ]; then bash $ENGINE stop; echo "test-docker: engine stopped"; fi; }
trap stop EXIT

echo "test-docker: building $DEEPEYES_TEST_DOCKER_IMAGE${DEEPEYES_SANDBOX_BASE:+ on $DEEPEYES_SANDBOX_BASE} ..."
start=$SECONDS
"$PY" -m deepeyes_cli sandbox build-image --tag "$DEEPEYES_TEST_DOCKER_IMAGE" --quiet || exit 1
echo "test-docker: image ready in $((SECONDS - start)) s"
DEEPEYES_REQUIRE_DOCKER=1 "$PY" -m pytest -m docker -p no:cacheprovider -rs "${TESTS[@]}" ${PYTEST_ARGS:-}
