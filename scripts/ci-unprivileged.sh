#!/usr/bin/env bash
# The sandbox's non-root path (bubblewrap in a user namespace), which the suite skips when it
# runs as root: run a short selection of sandbox tests as a throwaway unprivileged uid, on a
# writable copy of the tree. Called by .ci/run after `make test`; needs root, setpriv and
# bwrap, and says why it does nothing otherwise.
#   PY=.venv/bin/python bash scripts/ci-unprivileged.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
UID_CI=${DEEPEYES_CI_UID:-61999}   # a uid no account uses: no useradd, nothing left behind
SELECTION=(tests/integration/sandbox/test_sandbox_caps.py
           "tests/integration/sandbox/test_sandbox_security.py::test_no_nested_user_namespaces_when_the_server_is_not_root"
           "tests/integration/sandbox/test_sandbox_security.py::test_host_files_are_unreadable"
           "tests/integration/sandbox/test_sandbox_security.py::test_writes_outside_the_work_dir_fail"
           "tests/integration/sandbox/test_sandbox_security.py::test_network_egress_is_blocked")
if [ $# -gt 0 ]; then SELECTION=("$@"); fi

if [ "$(id -u)" != 0 ]; then echo "ci-unprivileged: already unprivileged: the suite ran this path"; exit 0; fi
for tool in setpriv bwrap; do
  command -v "$tool" >/dev/null || { echo "ci-unprivileged: $tool is missing: the non-root path is not run"; exit 0; }
done
if [ "$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)" = 0 ]; then
  echo "ci-unprivileged: this kernel allows no user namespaces: the non-root path cannot run here"; exit 0
fi

PY=$(realpath -s "$PY")
BASE=$("$PY" -c 'import sys; print(sys.base_prefix)')
WORK=$(mktemp -d /tmp/deepeyes-unprivileged.XXXXXX)
OPENED=()   # directories given o+x (traverse only) so the uid reaches the interpreter; taken back on exit
cleanup() {
  for d in "${OPENED[@]}"; do chmod o-x "$d" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for target in "$PY" "$(realpath "$PY")" "$BASE/lib" "$(dirname "$PY")/.."; do
  d=$(realpath -m "$target")
  while [ "$d" != "/" ]; do
    d=$(dirname "$d")
    if [ -d "$d" ] && [ "$(( 0$(stat -c '%a' "$d") & 1 ))" = 0 ]; then chmod o+x "$d"; OPENED+=("$d"); fi
  done
done
git ls-files -z --cached --others --exclude-standard | \
  tar --null -T - -cf - 2>/dev/null | tar -C "$WORK" -xf -
mkdir -p "$WORK/home" "$WORK/tmp"
chown -R "$UID_CI:$UID_CI" "$WORK"
cd "$WORK"
echo "ci-unprivileged: ${#SELECTION[@]} sandbox test selections as uid $UID_CI in $WORK"
setpriv --reuid="$UID_CI" --regid="$UID_CI" --clear-groups --reset-env -- \
  env HOME="$WORK/home" USER=deepeyes-ci LOGNAME=deepeyes-ci TMPDIR="$WORK/tmp" PATH="/usr/local/bin:/usr/bin:/bin" PYTHONPATH="$WORK" CI="${CI:-}" \
  "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra --strict-markers" --basetemp="$WORK/tmp/pytest" "${SELECTION[@]}"
