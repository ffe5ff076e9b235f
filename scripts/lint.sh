#!/usr/bin/env bash
# Repository rules (the gocryptfs test.bash idea): layering and banned patterns.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
rule() { if [ -n "$2" ]; then echo "lint: $1:"; echo "$2"; fail=1; fi; }
rule "CFuse imported outside FuseFrontend" "$(grep -rln 'import CFuse' Sources | grep -v '^Sources/FuseFrontend/' || true)"
rule "MetaStore and KeyVault must not import each other" "$(grep -rlnE 'import (MetaStore)' Sources/KeyVault; grep -rlnE 'import (KeyVault)' Sources/MetaStore || true)"
rule "BlockCipher and KeyVault import no kmsfs module" "$(grep -rlnE '^import (MetaStore|KeyVault|FuseFrontend|SnapExport|BlockCipher)$' Sources/BlockCipher Sources/KeyVault | xargs -r grep -lE '^import (MetaStore|FuseFrontend|SnapExport)' || true)"
rule "print( in library modules" "$(grep -rn '\bprint(' Sources/BlockCipher Sources/KeyVault Sources/MetaStore Sources/FuseFrontend Sources/SnapExport || true)"
rule "fatalError() without a message" "$(grep -rn 'fatalError()' Sources || true)"
rule "Unsafe pointer in a public signature" "$(grep -rnE 'public (func|init|var|let)[^{]*Unsafe(Mutable)?Pointer' Sources || true)"
exit $fail
