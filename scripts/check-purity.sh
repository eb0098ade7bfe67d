#!/usr/bin/env bash
# The pure crates must not depend on an async runtime, HTTP or a database.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in toolgate-policy toolgate-protocol toolgate-detect toolgate-scan toolgate-audit toolgate-config toolgate-oauth; do
  if ! tree=$(cargo tree -e normal -p "$crate" --prefix none); then
    echo "purity: cargo tree failed for $crate"; exit 2
  fi
  bad=$(echo "$tree" | grep -E '^(tokio|hyper|reqwest|rusqlite|redis|axum|postgres|tokio-postgres) ' || true)
  if [ -n "$bad" ]; then
    echo "purity: $crate depends on IO crates:"; echo "$bad"; status=1
  else
    echo "purity: $crate ok (no tokio, hyper, reqwest, rusqlite, redis, axum, postgres)"
  fi
done
exit $status
