#!/usr/bin/env bash
# A Docker-compatible engine on this machine for `isolation: docker` and its tests: podman with
# runc, serving the Docker API on a unix socket, and a locally built Debian base image (no image
# registry is needed). Docker Engine users skip all of this and set DOCKER_HOST themselves.
#
#   scripts/docker-engine.sh setup   apt-get podman, runc, debootstrap (when missing) and write
#                                    the engine's containers.conf
#   scripts/docker-engine.sh base    the base image: a debootstrapped bookworm (minbase + python3),
#                                    cached as a tarball keyed by its recipe, imported once
#   scripts/docker-engine.sh start   `podman system service` on $DEEPEYES_DOCKER_SOCK
#   scripts/docker-engine.sh stop    stop that service
#   scripts/docker-engine.sh env     print DOCKER_HOST=… and DEEPEYES_SANDBOX_BASE=…
#
# Each step prints `skip: REASON` and exits 3 when it cannot be done here (no apt, not root,
# the engine does not start), so callers can skip their tests with that reason.
set -uo pipefail

CACHE=${DEEPEYES_CACHE_DIR:-/var/cache/deepeyes}
RUN_DIR=${DEEPEYES_DOCKER_RUN:-/run/deepeyes-podman}
SOCK=${DEEPEYES_DOCKER_SOCK:-$RUN_DIR/podman.sock}
CONF=$CACHE/containers.conf
SUITE=bookworm
# What goes into the base: change it and the cache key (hence the image tag) changes with it.
INCLUDE=python3,python3-venv,ca-certificates
BASE_RECIPE="v1 $SUITE minbase $INCLUDE"
BASE_KEY=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-12)
BASE_IMAGE=localhost/deepeyes-base:$SUITE-$BASE_KEY

skip() { echo "skip: $*"; exit 3; }
log() { echo "docker-engine: $*" >&2; }
podman_() { CONTAINERS_CONF=$CONF podman --runtime runc "$@"; }

mirror() {  # the Debian mirror apt already uses (deb822 .sources or a sources.list)
  local m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                     | awk '{print $2}' | grep -v security | head -1)
  [ -n "$m" ] || return 1
  echo "$m"
}

write_conf() {
  mkdir -p "$CACHE" || skip "cannot create $CACHE"
  # crun refuses this kind of host's hybrid cgroup layout; podman's default ulimits ask for an
  # RLIMIT_NPROC that a container here may not set. The sandbox sets its own ulimits per container.
  cat >"$CONF.tmp" <<'EOF'
# written by deepeyes scripts/docker-engine.sh (used through CONTAINERS_CONF only)
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$CONF.tmp" "$CONF"
}

cmd_setup() {
  local need=()
  for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || skip "needs ${need[*]}, and installing them needs root"
    command -v apt-get >/dev/null 2>&1 || skip "needs ${need[*]}, and there is no apt-get to install them"
    log "installing ${need[*]} with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}" >/dev/null 2>&1 || {
      apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1 &&
      apt-get -o DPkg::Lock::Timeout=600 install -y -q "${need[@]}" >/dev/null 2>&1; } ||
      skip "apt-get could not install ${need[*]}"
  fi
  write_conf
}

cmd_base() {
  [ -f "$CONF" ] || write_conf
  if podman_ image exists "$BASE_IMAGE" 2>/dev/null; then
    log "base image $BASE_IMAGE is there"
    return 0
  fi
  local tarball=$CACHE/rootfs-$SUITE-$BASE_KEY.tar
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || skip "debootstrap needs root"
    command -v debootstrap >/dev/null 2>&1 || skip "debootstrap is not installed"
    local m root
    m=$(mirror) || skip "no Debian mirror in apt's sources"
    root=$(mktemp -d "$CACHE/rootfs-XXXXXX")
    log "debootstrap $SUITE ($INCLUDE) from apt's mirror into $root (a few minutes, cached) ..."
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$m" >"$CACHE/debootstrap.log" 2>&1; then
      rm -rf "$root"
      skip "debootstrap failed (see $CACHE/debootstrap.log)"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $tarball as $BASE_IMAGE ..."
  podman_ import "$tarball" "$BASE_IMAGE" >/dev/null || skip "podman import failed"
}

service_pid() { [ -f "$RUN_DIR/service.pid" ] && cat "$RUN_DIR/service.pid"; }

cmd_start() {
  [ -f "$CONF" ] || write_conf
  command -v podman >/dev/null 2>&1 || skip "podman is not installed"
  mkdir -p "$RUN_DIR"
  local pid
  pid=$(service_pid)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -S "$SOCK" ]; then
    log "the engine already serves unix://$SOCK (pid $pid)"
    return 0
  fi
  rm -f "$SOCK"
  CONTAINERS_CONF=$CONF setsid podman --runtime runc system service --time=0 "unix://$SOCK" \
    >"$RUN_DIR/service.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/service.pid"
  for _ in $(seq 100); do
    if [ -S "$SOCK" ] && curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
      log "the engine serves unix://$SOCK"
      return 0
    fi
    kill -0 "$(service_pid)" 2>/dev/null || break
    sleep 0.2
  done
  tail -5 "$RUN_DIR/service.log" >&2
  cmd_stop >/dev/null 2>&1
  skip "the podman API service did not start (see $RUN_DIR/service.log)"
}

cmd_stop() {
  local pid
  pid=$(service_pid)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$RUN_DIR/service.pid" "$SOCK"
}

cmd_env() {
  echo "DOCKER_HOST=unix://$SOCK"
  echo "DEEPEYES_SANDBOX_BASE=$BASE_IMAGE"
}

case "${1:-}" in
  setup) cmd_setup ;;
  base) cmd_base ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  *) echo "usage: $0 setup|base|start|stop|env" >&2; exit 2 ;;
esac
