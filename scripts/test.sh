#!/usr/bin/env bash
# The project's test command: installs dependencies, builds, runs every test
# suite (unit, CLI, FUSE integration), and fails if a FUSE test did not really
# run (each leaves a marker when it gets past its environment check), if a
# KMS- or object-server test did not run against its real server, or if a test left a
# mount or a server behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/lint.sh
swift build --build-tests
# InstallTests runs scripts/install.sh inside `swift test`, which holds .build:
# build the man page generator now and hand its path over.
KMSFS_MANUAL_TOOL=$(scripts/install.sh --print-manual-tool)
export KMSFS_MANUAL_TOOL
markers=$(mktemp -d)
status=0
# Every test server inherits this tag, so the check below finds this run's leftovers only.
export KMSFS_TEST_RUN=test-$$-$(date +%s)
KMSFS_TEST_MARKERS=$markers swift test --skip-build || status=$?
count() { grep -hcE "$1" Tests/IntegrationTests/*.swift | awk '{s+=$1} END {print s}'; }
check_ran() {  # label, declared, ran
  echo "$1 tests: $3 of $2 ran"
  if [ "$3" -lt "$2" ]; then echo "FAIL: only $3 of $2 $1 tests ran (skipped?)" >&2; status=1; fi
}
check_ran "FUSE integration" "$(count '^\s*guard Harness.fuseAvailable\(\)')" "$(find "$markers" -type f ! -name 'bao-*' ! -name 'moto-*' ! -name 'kmip-*' ! -name 'seaweed-*' | wc -l)"
check_ran "OpenBao (Vault transit)" "$(count 'OpenBao.available\(\)')" "$(find "$markers" -type f -name 'bao-*' | wc -l)"
check_ran "moto (AWS KMS and S3)" "$(count 'Moto.available\(\)')" "$(find "$markers" -type f -name 'moto-*' | wc -l)"
check_ran "PyKMIP (KMIP)" "$(count 'PyKMIP.available\(\)')" "$(find "$markers" -type f -name 'kmip-*' | wc -l)"
check_ran "SeaweedFS (S3)" "$(count 'SeaweedFS.available\(\)')" "$(find "$markers" -type f -name 'seaweed-*' | wc -l)"
if grep ' fuse.kmsfs ' /proc/self/mountinfo | grep -q 'kmsfs-it-'; then echo "FAIL: a test left a kmsfs mount behind" >&2; status=1; fi
. Tests/IntegrationTests/Scripts/common.sh
check_no_servers || status=1
# The servers' scripts: no server outlives its stop, an interrupted start or a killed test process.
Tests/IntegrationTests/Scripts/server_cleanup_test.sh openbao.sh moto.sh pykmip.sh seaweedfs.sh || status=1
rm -rf "$markers"
exit $status
