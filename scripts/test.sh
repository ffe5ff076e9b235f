#!/usr/bin/env bash
# The project's test command: installs dependencies, builds, runs every test
# suite (unit, CLI, FUSE integration), and fails if a FUSE test did not really
# run (each leaves a marker when it gets past its environment check) or if a
# test left a mount behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/lint.sh
swift build --build-tests
markers=$(mktemp -d)
status=0
KMSFS_TEST_MARKERS=$markers swift test --skip-build || status=$?
declared=$(grep -hcE '^\s*guard Harness.fuseAvailable\(\)' Tests/IntegrationTests/*.swift | awk '{s+=$1} END {print s}')
ran=$(find "$markers" -type f | wc -l | tr -d ' ')
echo "FUSE integration tests: $ran of $declared ran"
if [ "$ran" -lt "$declared" ]; then echo "FAIL: only $ran of $declared FUSE tests ran (skipped?)" >&2; status=1; fi
if grep ' fuse.kmsfs ' /proc/self/mountinfo | grep -q 'kmsfs-it-'; then echo "FAIL: a test left a kmsfs mount behind" >&2; status=1; fi
rm -rf "$markers"
exit $status
