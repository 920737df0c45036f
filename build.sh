#!/bin/sh
# build.sh: install what bearmail needs on Debian 12, build it, run the demo.
#
# The first of the README's two quick-start commands.  Safe to run again:
# apt-get skips what is installed, configure and make redo only what changed.
set -eu
cd "$(dirname "$0")"

# Build dependencies, and what the test suite and demo run: the fake
# servers (python3), real clients driving bearmail (git-email, mutt),
# fuzzing and memory checks (clang, valgrind).
PKGS="build-essential autoconf automake pkg-config
      libmbedtls-dev libcurl4-openssl-dev libinih-dev libjansson-dev
      python3 python3-pytest openssl ca-certificates mandoc git git-email
      mutt clang libclang-rt-14-dev valgrind"

missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
	echo "build.sh: installing$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# Real Postfix and Dovecot for the interoperability tier, installed
# without letting them start system daemons.
tests/interop/install.sh

[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure ${CONFIGURE_FLAGS:-}
make -j"$(nproc)"
if grep -q '^demo:' Makefile; then make demo; fi
