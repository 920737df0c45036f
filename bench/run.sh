#!/bin/sh
# bench/run.sh: build what the benchmarks need, then run them all.
#
#   bench/run.sh [--quick] [--rows 1,2,...] [--profile] [--out FILE] [--keep]
#
# Run it from a configured build directory (or set BM_BUILDDIR); "make
# bench" does exactly that.  Needs: cc and libssl-dev (for bench/bm-sink),
# openssl, python3; peers msmtp and curl (apt-get install msmtp curl;
# hyperfine, fetchmail and getmail6 are optional).  The table goes to
# standard output and to bench/results/latest.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
BM_SRCDIR=${BM_SRCDIR:-$(dirname "$here")}
BM_BUILDDIR=${BM_BUILDDIR:-$(pwd)}
export BM_SRCDIR BM_BUILDDIR

if [ ! -f "$BM_BUILDDIR/Makefile" ]; then
	echo "bench: $BM_BUILDDIR is not a configured build directory" >&2
	echo "bench: run it from one, or set BM_BUILDDIR" >&2
	exit 2
fi

# The project's programs and bench tools, built as the project builds them.
make -s -C "$BM_BUILDDIR" src/bearmail src/bearmail-auth \
	bench/bm-run bench/bm-nothing bench/bm-rawtls bench/bm-maildir >&2
# bearmail-fetch (row 6) when it exists; the row says so when it does not.
make -s -C "$BM_BUILDDIR" src/bearmail-fetch >&2 2>/dev/null || true

# The sink is not part of bearmail: it links OpenSSL, which configure
# does not look for, so it is built here.
sink="$BM_BUILDDIR/bench/bm-sink"
if [ ! -x "$sink" ] || [ "$BM_SRCDIR/bench/bm-sink.c" -nt "$sink" ]; then
	if pkg-config --exists libssl libcrypto 2>/dev/null; then
		ssl=$(pkg-config --cflags --libs libssl libcrypto)
	else
		ssl="-lssl -lcrypto"
	fi
	mkdir -p "$BM_BUILDDIR/bench"
	# shellcheck disable=SC2086
	${CC:-cc} -O2 -g -Wall -Wextra -o "$sink" "$BM_SRCDIR/bench/bm-sink.c" \
	    $ssl -lpthread || {
		echo "bench: cannot build bench/bm-sink: install libssl-dev" >&2
		exit 2
	}
fi

for p in msmtp curl; do
	command -v "$p" >/dev/null 2>&1 ||
	    echo "bench: $p is not installed (apt-get install $p): its rows say so" >&2
done

exec /usr/bin/python3 "$BM_SRCDIR/bench/bench.py" "$@"
