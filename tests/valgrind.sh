#!/bin/sh
# valgrind.sh: the C test programs under valgrind, with zero errors and
# zero leaks required.
#
#   tests/valgrind.sh [-i] [BUILDDIR]
#
# BUILDDIR (default .) is a configured build WITHOUT --enable-sanitizers
# (valgrind and ASan do not mix).  Every tests/unit/test_* and
# tests/fuzz/replay_* program is built, then run under memcheck; the
# reports go to BUILDDIR/valgrind/NAME.PID.log.  A program fails when
# memcheck found an error (exit 99) or a definite, indirect or possible
# leak (in its log), or when its own tests fail.  Children it forks are
# checked for memory errors; their leaks are only noted (a child that
# ends with _exit() frees nothing by design).
#
# -i also runs every pytest integration test file (but test_valgrind.py,
# which runs valgrind itself) with
#	BM_WRAPPER="valgrind --error-exitcode=99 ... --log-file=..."
# in the environment: tests/integration/conftest.py then puts it (split
# like a shell would, without a shell) in front of every program of this
# build that a test starts, however it starts it, and of the bearmail-auth
# that bearmail runs for a refresh; the test servers wait longer, and the
# few tests that measure the program's own process (its resident set, its
# descriptors) skip.  A wrapped program's log is judged like a test
# program's: any text in it fails the run.  The files run $VG_JOBS at a time (default 4: most of a test's
# time is spent waiting on the other side); each one's output is
# BUILDDIR/valgrind/integration/NAME.log, and the programs' memcheck
# logs land in BUILDDIR/valgrind/ as prog.PID.log.
#
# Extra memcheck options: $VALGRIND_OPTS (valgrind reads it itself).
# Suppressions for third-party libraries, if ever needed:
# tests/valgrind.supp.  Exit status: 0 when everything was clean.

set -u

integration=no
if [ "${1:-}" = -i ]; then
	integration=yes
	shift
fi
srcdir=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "${1:-.}" && pwd) || exit 2
jobs=${JOBS:-2}

command -v valgrind >/dev/null 2>&1 || {
	echo "valgrind: not installed (apt-get install valgrind)" >&2
	exit 2
}
[ -f "$dir/Makefile" ] || {
	echo "valgrind: $dir is not a configured build tree" >&2
	exit 2
}
if grep -q '^BM_CFLAGS.*-fsanitize' "$dir/Makefile"; then
	echo "valgrind: $dir was configured with --enable-sanitizers;" \
	    "use a plain build" >&2
	exit 2
fi

cd "$dir" || exit 2
# Build every check program without running the suite.
make -j"$jobs" >"$dir/valgrind-build.log" 2>&1 &&
    make -j"$jobs" -k check TESTS= >>"$dir/valgrind-build.log" 2>&1 || {
	echo "valgrind: some programs do not build (log:" \
	    "$dir/valgrind-build.log); running those that do" >&2
	grep -E ': error: ' "$dir/valgrind-build.log" | sort -u | head -n 10 >&2
}

logs=$dir/valgrind
rm -rf "$logs"
mkdir -p "$logs"
# The privilege tests run bearmail as a throwaway user: its memcheck log
# must be writable for it too.
chmod 1777 "$logs"
supp=
[ -f "$srcdir/tests/valgrind.supp" ] &&
	supp="--suppressions=$srcdir/tests/valgrind.supp"
# Leaks are not memcheck "errors" here (so a forked child that leaks at
# _exit keeps its exit status, which tests check); they are judged from
# the logs below, where the main process may show none.
vg="valgrind -q --error-exitcode=99 --leak-check=full \
--show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=none \
--track-origins=yes --child-silent-after-fork=no $supp"

BM_BUILDDIR=$dir BM_SRCDIR=$srcdir
# The fuzz replays run their inputs in-process (see tests/fuzz/replay.c).
FUZZ_REPLAY_NOFORK=1
export BM_BUILDDIR BM_SRCDIR FUZZ_REPLAY_NOFORK

failed=
n=0
for p in tests/unit/test_* tests/fuzz/replay_*; do
	[ -f "$p" ] && [ -x "$p" ] || continue
	case $p in *.o|*.log|*.trs) continue ;; esac
	name=$(basename "$p")
	n=$((n + 1))
	# valgrind runs the program in its own process: $! is its pid.
	$vg --log-file="$logs/$name.%p.log" "./$p" >"$logs/$name.out" 2>&1 &
	pid=$!
	wait $pid
	rc=$?
	echo "$name.$pid.log" >>"$logs/main-pids"
	if [ $rc -eq 0 ] && [ ! -s "$logs/$name.$pid.log" ]; then
		echo "PASS: $p"
	elif [ $rc -eq 0 ] || [ $rc -eq 99 ]; then
		echo "FAIL: $p (memcheck: see $logs/$name.*.log)"
		failed="$failed $name"
	else
		echo "FAIL: $p (exit $rc, tests failed: see $logs/$name.out)"
		failed="$failed $name"
	fi
done

if [ $integration = yes ]; then
	BM_WRAPPER="$vg --log-file=$logs/prog.%p.log"
	export BM_WRAPPER
	mkdir -p "$logs/integration"
	echo "valgrind: integration tests with BM_WRAPPER," \
	    "${VG_JOBS:-4} files at a time"
	# Largest first: the longest files should not start last.
	ls -S "$srcdir"/tests/integration/test_*.py |
	    grep -v '/test_valgrind\.py$' | xargs -P "${VG_JOBS:-4}" -I{} sh -c '
		name=$(basename "$1" .py)
		if "${PYTHON3:-/usr/bin/python3}" -m pytest -q -rs \
		    -p no:cacheprovider "$1" >"$2/$name.log" 2>&1; then
			r=PASS
		else
			r=FAIL
		fi
		echo "$r: $name ($(tail -n 1 "$2/$name.log"))"' sh {} \
	    "$logs/integration" | tee "$logs/integration/results"
	grep -q '^FAIL' "$logs/integration/results" &&
		failed="$failed integration"
fi

# With -q memcheck writes only errors: any log of a test program's own
# process with text in it is a failure, whatever the exit status said.
# A forked child (a test's runner, the child of a failed exec) that ends
# with _exit() frees nothing by design, so in its log only memory errors
# count, not leaks; a wrapped program (-i) is judged like a main one.
bad=
touch "$logs/main-pids"
for f in "$logs"/*.log; do
	[ -s "$f" ] || continue
	b=$(basename "$f")
	if grep -qxF "$b" "$logs/main-pids" || [ "${b#prog.}" != "$b" ] ||
	    grep -qE '(Invalid (read|write|free)|uninitialised|Conditional jump|Syscall param|Mismatched free|overlap|Jump to the invalid)' "$f"; then
		bad="$bad $f"
		echo "valgrind: errors in $f:"
	else
		echo "valgrind: note: leak at _exit of a forked child, $f:"
	fi
	grep -E '^==[0-9]+== [A-Z0-9].*(lost|Invalid|uninitialised|Conditional|Mismatched|overlap|Syscall param)|^==[0-9]+==    (at|by) ' "$f" |
	    head -n 4 | sed 's/^/    /'
done
if [ -n "$failed" ] || [ -n "$bad" ]; then
	echo "valgrind: FAILED:$failed"
	exit 1
fi
if [ $integration = yes ]; then
	echo "valgrind: $n programs, and the" \
	    "$(ls "$logs"/prog.*.log | wc -l) processes of ours that the" \
	    "integration tests ran, clean"
else
	echo "valgrind: $n programs clean"
fi
exit 0
