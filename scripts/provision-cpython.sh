#!/usr/bin/env bash
# CPythons that pyenv does not have here (3.14, 3.15, ...), from Debian's own binary packages.
#
#   scripts/provision-cpython.sh [3.14 3.15 ...]
#
# Without arguments: every CPython from 3.10 to the newest release in hatch-pyc's magic table
# (hatch_pyc/_pycinfo.py) that this machine does not have yet (PATH, pyenv, uv: as hatch-pyc
# finds them), so no list of versions here needs updating when a CPython is released.
#
# Each version is unpacked into its own prefix, $HATCH_PYC_CPYTHON_DIR/cpython-3.X (default
# /opt/hatch-pyc), with its standard library's test suite (the differential oracle's corpus),
# and made callable as `python3.X` on PATH (a link in $HATCH_PYC_CPYTHON_BIN, default
# /usr/local/bin). Debian's source packages are not served here and nothing can be downloaded
# from python.org, so the binary .debs of Debian unstable are fetched with a private apt root (the
# host's own apt sources and libc are never touched), unpacked with dpkg-deb and pointed at their
# own loader and libraries with patchelf.
#
# Idempotent: an interpreter that already answers is kept (well under a second). It fails, never
# skips, when a version cannot be had. hatch-pyc itself never needs this script: on a user's machine
# it finds whatever CPythons are installed there.
set -euo pipefail

DIR="${HATCH_PYC_CPYTHON_DIR:-/opt/hatch-pyc}"
BIN="${HATCH_PYC_CPYTHON_BIN:-/usr/local/bin}"
MIRROR="${HATCH_PYC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${HATCH_PYC_DEBIAN_SUITE:-sid}"
ARCH_TRIPLET="$(uname -m)-linux-gnu"
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  mapfile -t versions < <(cd "$(dirname "$0")/.." && python3 -c '
from hatch_pyc._pycinfo import RELEASED_MAGIC
from hatch_pyc._targets import OLDEST_TARGET, discover_interpreters
have = {i.minor for i in discover_interpreters()}
newest = max(int(v.split(".")[1]) for v in RELEASED_MAGIC.values())
for minor in (f"3.{n}" for n in range(OLDEST_TARGET[1], newest + 1)):
    if minor not in have:
        print(minor)
')
fi

log() { echo "provision-cpython: $*" >&2; }
die() { log "error: $*"; exit 1; }

answers() {  # the interpreter runs, is the version asked for, and its ssl, venv and zlib load
  local exe="$1" want="$2"
  [ -x "$exe" ] || return 1
  [ "$("$exe" -I -c 'import ssl, venv, zlib, sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]
}

apt_root() {  # a private apt configuration for $SUITE, reused between runs
  local root="$DIR/.apt"
  mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/etc"
  [ -f "$root/status" ] || : >"$root/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$root/etc/sources.list"
  cat >"$root/apt.conf" <<EOF
Dir::Etc::SourceList "$root/etc/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$root/lists";
Dir::State::status "$root/status";
Dir::Cache "$root/cache";
Acquire::Check-Valid-Until "false";
APT::Get::List-Cleanup "false";
EOF
  echo "$root/apt.conf"
}

need_host_tools() {
  local need=()
  command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
  command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
  [ ${#need[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root"
  log "installing ${need[*]} from the host's own Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
}

provision() {
  local v="$1" prefix="$DIR/cpython-$1" conf tmp
  local exe="$prefix/usr/bin/python$v"
  if answers "$exe" "$v"; then
    log "CPython $v already in $prefix"
  else
    need_host_tools
    conf=$(apt_root)
    if [ -z "${lists_fresh:-}" ]; then
      log "reading Debian $SUITE's package lists"
      APT_CONFIG="$conf" apt-get update -qq >&2 || die "apt-get update of Debian $SUITE failed"
      lists_fresh=1
    fi
    log "downloading python$v and its libraries from Debian $SUITE"
    rm -f "$DIR"/.apt/cache/archives/*.deb
    APT_CONFIG="$conf" DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --download-only \
      --no-install-recommends "python$v" "python$v-venv" "libpython$v-testsuite" >&2 \
      || die "Debian $SUITE has no installable python$v"
    tmp="$prefix.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local deb
    for deb in "$DIR"/.apt/cache/archives/*.deb; do
      dpkg-deb -x "$deb" "$tmp"
    done
    local lib="$tmp/usr/lib/$ARCH_TRIPLET" stdlib="$tmp/usr/lib/python$v"
    [ -x "$tmp/usr/bin/python$v" ] || die "python$v is not in the downloaded packages"
    # The prefix's own loader and libraries, never the host's (its glibc is older).
    patchelf --set-interpreter "$prefix/usr/lib/$ARCH_TRIPLET/ld-linux-x86-64.so.2" \
      --force-rpath --set-rpath "$prefix/usr/lib/$ARCH_TRIPLET" "$tmp/usr/bin/python$v"
    [ -e "$lib/ld-linux-x86-64.so.2" ] || die "no dynamic loader in the downloaded libc6"
    # Debian links sitecustomize into /etc; the prefix carries its own copy.
    if [ -L "$stdlib/sitecustomize.py" ]; then
      rm -f "$stdlib/sitecustomize.py"
      [ -f "$tmp/etc/python$v/sitecustomize.py" ] && cp "$tmp/etc/python$v/sitecustomize.py" "$stdlib/"
    fi
    # `python -m venv` takes pip from WHEEL_PKG_DIR: point it at the prefix's own wheels.
    sed -i "s#'/usr/share/python-wheels/'#'$prefix/usr/share/python-wheels/'#; s#\"/usr/share/python-wheels/\"#\"$prefix/usr/share/python-wheels/\"#" \
      "$stdlib"/_sysconfigdata_*.py
    rm -f "$stdlib/EXTERNALLY-MANAGED"
    rm -rf "$prefix"
    mv "$tmp" "$prefix"
    answers "$exe" "$v" || die "python$v was unpacked into $prefix but does not run"
    log "CPython $("$exe" -c 'import sys; print(sys.version.split()[0])') in $prefix"
  fi
  mkdir -p "$BIN"
  local link="$BIN/python$v"
  if [ ! -e "$link" ] && [ ! -L "$link" ]; then
    ln -s "$exe" "$link"
  elif [ -L "$link" ] && { [[ "$(readlink "$link")" == "$DIR"/* ]] || ! answers "$link" "$v"; }; then
    ln -sfn "$exe" "$link"  # ours (from an earlier run), or a dangling or broken link
  elif answers "$link" "$v"; then
    [ "$(readlink -f "$link")" = "$(readlink -f "$exe")" ] \
      || log "keeping $link: it is another working CPython $v ($(readlink -f "$link")); this one is $exe"
  else
    die "$link exists and is not a working CPython $v; remove it or set HATCH_PYC_CPYTHON_BIN"
  fi
  # venvs need pip from the wheel Debian ships; check once that one can be made.
  if ! "$exe" -c 'import sys, sysconfig, os; d = sysconfig.get_config_var("WHEEL_PKG_DIR"); sys.exit(not (d and any(n.startswith("pip-") for n in os.listdir(d))))' 2>/dev/null; then
    die "python$v in $prefix has no pip wheel for venv"
  fi
}

[ ${#versions[@]} -gt 0 ] || log "every CPython from 3.10 to the newest hatch-pyc knows is already here"
for v in "${versions[@]}"; do
  [[ "$v" =~ ^3\.[0-9]+$ ]] || die "not a CPython minor version: $v (expected e.g. 3.14)"
  provision "$v"
done
