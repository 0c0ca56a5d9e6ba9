#!/usr/bin/env bash
# Builds target/debian/community-sync_<version>-1_<arch>.deb:
#   release binary (reused if up to date) → man pages (one per command) and completions
#   generated from the binary
#   → cargo deb --no-build. Needs cargo-deb: `cargo install cargo-deb --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
assets=target/assets
rm -rf "$assets"
target/release/community-sync generate-assets "$assets" >/dev/null
gzip -9nf "$assets"/man/*.1
cargo deb --no-build --locked --strip "$@"
ls -1 target/debian/*.deb
