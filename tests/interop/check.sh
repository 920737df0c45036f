#!/bin/sh
# check.sh: run the interoperability tier (make check-interop).
#
# Runs the pytest files of tests/interop against a private Postfix and
# Dovecot that the tests start and stop themselves.  Where the tier cannot
# run (not root, packages missing, no pytest) it says so in a banner that
# nobody can miss and exits 0, or 1 when BM_INTEROP_REQUIRE=1 (for CI,
# where skipping would hide a broken setup).  Extra arguments go to pytest.
#
# Environment: BM_SRCDIR, BM_BUILDDIR (set by make), BM_INTEROP_REQUIRE,
# BM_INTEROP_KEEP=1 (keep the stack directory), BM_INTEROP_INTROSPECTION_URL
# (use another token endpoint than tests/interop/introspect.py).
set -u

here=$(cd "$(dirname "$0")" && pwd)
BM_SRCDIR=${BM_SRCDIR:-$(cd "$here/../.." && pwd)}
BM_BUILDDIR=${BM_BUILDDIR:-$BM_SRCDIR}
export BM_SRCDIR BM_BUILDDIR
# No __pycache__ in the source tree.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
# Debian's interpreter: python3-pytest is installed for it, not for
# whatever python3 comes first in PATH.
PY=/usr/bin/python3

skip()
{
	echo "##################################################################"
	echo "# check-interop: SKIPPED -- the interoperability tier did NOT run"
	for reason in "$@"; do
		echo "#   $reason"
	done
	echo "##################################################################"
	case ${BM_INTEROP_REQUIRE:-} in
	""|0|no) exit 0 ;;
	*) echo "check-interop: BM_INTEROP_REQUIRE is set: failing" >&2; exit 1 ;;
	esac
}

[ -x "$PY" ] || skip "$PY missing (package python3)"
"$PY" -c 'import pytest' 2>/dev/null ||
	skip "pytest missing for $PY (package python3-pytest)"

why=$("$PY" "$here/stack.py" check)
if [ -n "$why" ]; then
	old_ifs=$IFS
	IFS='
'
	# shellcheck disable=SC2086
	set -- $why
	IFS=$old_ifs
	skip "$@"
fi

exec "$PY" -m pytest -rs -p no:cacheprovider "$here" "$@"
