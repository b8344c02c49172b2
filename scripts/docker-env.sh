#!/usr/bin/env bash
# A private Docker engine and an offline base image for the container tests and examples.
#
#   eval "$(scripts/docker-env.sh start)"   # install what is missing, start dockerd, build the base
#   scripts/docker-env.sh stop              # stop the dockerd this script started
#
# Idempotent: a rerun reuses the running engine, the image and the cached Debian rootfs. Everything
# lives under $HATCH_PYC_DOCKER_DIR (default /tmp/hatch-pyc-docker): the socket, data-root, log, rootfs.
# The engine gets no network (no bridge, no iptables): build and run with --network none. The base image
# hatch-pyc/python:bookworm is Debian's python3 (3.11) from debootstrap, needing only Debian's mirror.
# Like the official python images, it ships no .pyc files for the standard library.
# Only stdout carries the `export DOCKER_HOST=...` line(s); every message goes to stderr.
set -euo pipefail

DIR="${HATCH_PYC_DOCKER_DIR:-/tmp/hatch-pyc-docker}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
BASE_IMAGE="${HATCH_PYC_BASE_IMAGE:-hatch-pyc/python:bookworm}"
SUITE=bookworm
MIRROR="${HATCH_PYC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_TAR="$DIR/rootfs-$SUITE-python3.tar"

log() { echo "docker-env: $*" >&2; }
die() { log "error: $*"; exit 1; }
dock() { docker --host "unix://$SOCK" "$@"; }
answers() { command -v docker >/dev/null 2>&1 && dock info >/dev/null 2>&1; }

install_missing() {
  local need=() pair
  for pair in docker:docker.io dockerd:docker.io debootstrap:debootstrap skopeo:skopeo umoci:umoci; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  [ "$(id -u)" -eq 0 ] || die "missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root"
  log "installing ${need[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
}

# BuildKit's client (docker buildx: the cache-mount example 06 and its test). Debian 12 has no package of it;
# Debian 13's docker-buildx (a Go program needing only glibc >= 2.34) is unpacked as a CLI plugin, fetched with
# a private apt configuration so the system's sources stay as they are.
install_buildx() {
  docker buildx version >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || die "docker buildx is missing; install it (Debian 13: apt-get install docker-buildx) or run as root"
  local apt="$DIR/apt-trixie" plugins=/usr/local/lib/docker/cli-plugins
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/deb" "$plugins"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  log "installing docker-buildx from Debian trixie into $plugins"
  apt-get "${opts[@]}" update -qq >&2 || die "apt-get update (trixie) failed"
  (cd "$apt/deb" && apt-get "${opts[@]}" download docker-buildx >&2) || die "downloading docker-buildx failed"
  dpkg-deb -x "$apt/deb"/docker-buildx_*.deb "$apt/root" || die "unpacking docker-buildx failed"
  install -m 0755 "$apt/root/usr/libexec/docker/cli-plugins/docker-buildx" "$plugins/docker-buildx"
  docker buildx version >&2 || die "docker buildx does not run"
}

start_engine() {
  if answers; then log "engine already answers on $SOCK"; return 0; fi
  [ "$(id -u)" -eq 0 ] || die "dockerd needs root"
  mkdir -p "$DIR/data" "$DIR/exec"
  log "starting dockerd on $SOCK (log: $DIR/dockerd.log)"
  setsid nohup dockerd --host "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false \
    --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
    </dev/null >"$DIR/dockerd.log" 2>&1 &
  local pid=$! i
  for i in $(seq 90); do
    answers && { log "engine ready after ${i}s"; return 0; }
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$DIR/dockerd.log" >&2; die "dockerd exited; see $DIR/dockerd.log"; }
    sleep 1
  done
  tail -n 20 "$DIR/dockerd.log" >&2
  die "dockerd did not answer within 90s; see $DIR/dockerd.log"
}

build_rootfs() {
  local root="$DIR/rootfs.tmp"
  rm -rf "$root"
  log "debootstrap $SUITE (minbase + python3, python3-venv, python3-pip) from $MIRROR: a few minutes"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip "$SUITE" "$root" "$MIRROR" >&2 \
    || { rm -rf "$root"; die "debootstrap failed"; }
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  # Smaller, and like the official python images: no apt caches, no pycs for the stdlib.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  find "$root/usr/lib" -type d -name __pycache__ -path '*/python3*' -prune -exec rm -rf {} +
  tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$root"
  log "rootfs cached in $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

build_base() {
  if dock image inspect "$BASE_IMAGE" >/dev/null 2>&1; then log "base image $BASE_IMAGE present"; return 0; fi
  [ -s "$ROOTFS_TAR" ] || build_rootfs
  log "importing $ROOTFS_TAR as $BASE_IMAGE"
  dock import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$ROOTFS_TAR" "$BASE_IMAGE" >&2
}

stop_engine() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
    log "no dockerd of ours is running ($PIDFILE)"; return 0
  fi
  log "stopping dockerd $pid"
  kill -TERM "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }; sleep 1; done
  die "dockerd $pid still running after 30s"
}

case "${1:-start}" in
  start)
    install_missing
    install_buildx
    start_engine
    build_base
    echo "export DOCKER_HOST=unix://$SOCK"
    ;;
  stop) stop_engine ;;
  *) die "usage: $0 [start|stop]" ;;
esac
