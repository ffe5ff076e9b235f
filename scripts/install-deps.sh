#!/usr/bin/env bash
# Installs what kmsfs needs on Debian 12 (run as root): the system libraries
# it links (libfuse3, OpenSSL, SQLite, libcurl), fuse3 for fusermount3, and the
# tools its tests and benchmarks use. Idempotent.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  libfuse3-dev fuse3 libssl-dev libcurl4-openssl-dev libsqlite3-dev pkg-config \
  sqlite3 git python3 attr fio >/dev/null
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.x toolchain needed)" >&2; exit 1; }
