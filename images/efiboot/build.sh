#!/bin/sh
# Builds Hearth's UEFI boot loader (loader/loader.c) for x86_64 and aarch64 with clang and
# lld-link (Debian packages clang, lld): bootx64.efi and bootaa64.efi in OUT (default: this
# directory). The output is reproducible: no timestamps (/Brepro), no debug information,
# no paths. Run by `go generate` in this directory; the test rebuilds and compares.
set -eu
src=$(cd "$(dirname "$0")" && pwd)
out=${1:-$src}
CC=${CC:-clang}
LD=${LD:-lld-link}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

build() { # build TRIPLE EXTRA_CFLAGS OUTPUT
	# The source is compiled under a fixed name in a temporary directory, so no path reaches the output.
	cp "$src/loader/loader.c" "$tmp/loader.c"
	(cd "$tmp" && "$CC" --target="$1" -std=c11 -O2 -Wall -Wextra -Werror \
		-ffreestanding -fno-stack-protector -fno-stack-check -fshort-wchar -fno-builtin \
		-fno-asynchronous-unwind-tables -fno-ident -nostdlib -nostdinc $2 \
		-c loader.c -o loader.o)
	(cd "$tmp" && "$LD" /nologo /subsystem:efi_application /entry:efi_main /nodefaultlib \
		/Brepro /opt:ref /out:"$3" loader.o)
}

build x86_64-unknown-windows "-mno-red-zone -mno-stack-arg-probe" "$tmp/bootx64.efi"
build aarch64-unknown-windows "-mgeneral-regs-only" "$tmp/bootaa64.efi"
mkdir -p "$out"
cp "$tmp/bootx64.efi" "$tmp/bootaa64.efi" "$out/"
