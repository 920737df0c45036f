#!/bin/sh
# sanitize.sh: the whole test suite under AddressSanitizer (with
# LeakSanitizer) and UndefinedBehaviorSanitizer.
#
#   tests/sanitize.sh [BUILDDIR]
#
# Configures BUILDDIR (default ./sanitize-build, or $SANITIZE_BUILDDIR)
# with --enable-sanitizers --enable-werror once, builds it, runs
# `make check` there and prints the results.  Every sanitized process,
# including the programs the pytest files start, writes its reports to
# BUILDDIR/sanitizer/ instead of stderr, so a report is seen even when
# the test that caused it passed (a test expecting "some failure" would
# otherwise take ASan's exit for the one it wanted).
# Exit status: 0 when every test passed and no report was written.

set -u

srcdir=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${SANITIZE_BUILDDIR:-$(pwd)/sanitize-build}}
jobs=${JOBS:-2}

mkdir -p "$dir" || exit 2
dir=$(cd "$dir" && pwd)
cd "$dir" || exit 2
if [ ! -f Makefile ]; then
	"$srcdir/configure" -q --enable-sanitizers --enable-werror || {
		echo "sanitize: configure failed in $dir" >&2
		exit 2
	}
fi

reports=$dir/sanitizer
rm -rf "$reports"
mkdir -p "$reports"

# Leaks are errors; the first report ends the process (UBSan already
# aborts: the build uses -fno-sanitize-recover=undefined).  No core
# files: a core could hold a token.
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:disable_coredump=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$reports/asan"
LSAN_OPTIONS="log_path=$reports/lsan"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

echo "sanitize: building in $dir"
built=yes
make -j"$jobs" -k >"$dir/sanitize-build.log" 2>&1 || {
	built=no
	echo "sanitize: the build fails (log: $dir/sanitize-build.log);" \
	    "testing what builds:"
	grep -E ': error: ' "$dir/sanitize-build.log" | sort -u | head -n 10 |
	    sed 's/^/    /'
}
# The test programs apart, so that one that does not build (someone's
# work in progress) costs only its own tests: check-TESTS with
# check_PROGRAMS emptied runs the rest (each test's log still depends on
# its own program).
make -j"$jobs" -k check TESTS= >"$dir/sanitize-build-tests.log" 2>&1 || {
	echo "sanitize: some test programs do not build:"
	grep -E ': error: ' "$dir/sanitize-build-tests.log" | sort -u |
	    head -n 10 | sed 's/^/    /'
}
echo "sanitize: make check"
make -j"$jobs" -k check-TESTS check_PROGRAMS= >"$dir/sanitize-check.log" 2>&1
rc=$?

# The test driver's own lines: one per test program or pytest file.
grep -E '^(PASS|FAIL|XFAIL|XPASS|ERROR|SKIP):' "$dir/sanitize-check.log" |
    grep -v '^PASS' | sort | uniq
found=0
for f in "$reports"/*; do
	[ -f "$f" ] || continue
	if ! grep -qE 'ERROR: |runtime error: ' "$f"; then
		# E.g. LSan's "Unable to get registers from thread" when
		# a test kills a process in the middle of its leak check.
		echo "sanitize: note: $f: $(head -n 1 "$f")"
		continue
	fi
	found=$((found + 1))
	echo "sanitize: report $f"
	grep -E 'ERROR: |SUMMARY: |runtime error: ' "$f" | head -n 3 |
	    sed 's/^/    /'
done
# Results as the test drivers printed them: one line per TAP assertion
# or per pytest file.
printf 'sanitize: results:'
for r in PASS FAIL XFAIL XPASS ERROR SKIP; do
	printf ' %s %d' "$r" "$(grep -c "^$r: " "$dir/sanitize-check.log")"
done
echo
echo "sanitize: $found sanitizer report(s); make check exit $rc (log: $dir/sanitize-check.log)"
[ $rc -eq 0 ] && [ $found -eq 0 ] && [ $built = yes ]
