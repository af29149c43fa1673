#!/usr/bin/env bash
# Runs every Hearth test. On a fresh Debian machine (as root) it first installs the
# Debian packages the real-client tests use; elsewhere it says what is missing.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests drive as real clients.
PACKAGES="git ca-certificates openssl bind9-dnsutils swaks isync qemu-system-arm vdirsyncer khard curl python3-caldav khal python3 qemu-system-x86 dosfstools squashfs-tools fdisk mtools cpio e2fsprogs chromium chromium-driver clang lld ovmf qemu-efi-aarch64"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
  else
    echo "test.sh: missing Debian packages:$missing (install them, or tests that need them skip)" >&2
  fi
fi

exec go test -count=1 -timeout 45m "$@" ./...
