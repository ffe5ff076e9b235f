#!/usr/bin/env bash
# The test suite under AddressSanitizer and ThreadSanitizer. The FUSE
# integration tests run the instrumented kmsfs binary, so the mount daemon's
# data path (FuseFrontend, MetaStore, BlockCipher, its 16 FUSE threads) is
# checked too. The KMS-server suites are left to scripts/test.sh: their code
# runs in CLI flows, not on the multi-threaded data path. Under TSan a daemon
# can stop at TSan's report on libfuse's cancelled worker threads ("finished
# with ignores enabled") before its last flush; `kmsfs umount` has the daemon
# flush before it unmounts, and the two tests that need the last flush itself
# skip there, with a line.
#   scripts/sanitizers.sh [address] [thread]     (default: both; run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# InstallTests runs scripts/install.sh, which needs the man page generator built outside `swift test`.
KMSFS_MANUAL_TOOL=$(scripts/install.sh --print-manual-tool)
export KMSFS_MANUAL_TOOL
for sanitizer in "${@:-address thread}"; do
  for s in $sanitizer; do
    echo "== $s sanitizer"
    swift build --build-tests --scratch-path ".build-$s" -Xswiftc "-sanitize=$s"
    # Leak checking is off: Swift runtime metadata and libfuse's at-exit state are reported as leaks.
    KMSFS_SANITIZER=$s ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      swift test --skip-build --scratch-path ".build-$s" --skip 'VaultKMSTests|AWSKMSTests|KMIPKMSTests|SnapshotKMSTests' || status=1
  done
done
exit $status
