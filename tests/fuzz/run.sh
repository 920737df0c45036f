#!/bin/sh
# run.sh: build bearmail's libFuzzer targets with clang and run them.
#
#   run.sh [-bk] [-s SECONDS] [-T TOTAL] [TARGET...]
#
#   -b          build only
#   -k          keep going after a crash (libFuzzer -fork=1
#               -ignore_crashes=1): collect every crash of the run
#   -s SECONDS  fuzz each target this long (default $FUZZ_SECONDS or 30)
#   -T TOTAL    share TOTAL seconds between the targets instead (CI)
#   TARGET      base64, sasl, ... (default: every tests/fuzz/fuzz_*.c)
#
# Normally run by `make fuzz` / `make fuzz-quick`, which pass:
#   FUZZ_SRCDIR      the source tree (default: two levels above this file)
#   FUZZ_CONFIG_DIR  a configured build tree, for config.h (default: .)
#   FUZZ_BUILDDIR    where clang's objects, targets and scratch go
#                    (default: FUZZ_CONFIG_DIR/fuzz-build)
#   FUZZ_PKG_CFLAGS, FUZZ_LIBS   the libraries' flags, as configure found
#                    them (default: asked of pkg-config)
#   FUZZ_CC          default clang
#
# Every src/*.c but the programs' cmd_*.c is compiled with
# -fsanitize=fuzzer-no-link,address,undefined into one archive, and each
# target links what it needs from it, so a module in progress that does
# not compile only matters to the targets that use it.  The targets run
# over their seed corpus (tests/fuzz/corpus/NAME) and regression inputs
# (tests/fuzz/regress/NAME), read-only; new corpus entries and crash
# inputs go to FUZZ_BUILDDIR/work/, never into the source tree.
# Exit status: 0 when no target crashed, 1 when one did, 2 on a build or
# usage error (targets that build still run when others do not).

set -u

here=$(cd "$(dirname "$0")" && pwd)
srcdir=${FUZZ_SRCDIR:-$(cd "$here/../.." && pwd)}
confdir=${FUZZ_CONFIG_DIR:-$(pwd)}
out=${FUZZ_BUILDDIR:-$confdir/fuzz-build}
cc=${FUZZ_CC:-clang}
seconds=${FUZZ_SECONDS:-30}
total=${FUZZ_TOTAL:-}
build_only=no
keep_going=

while getopts bks:T: opt; do
	case $opt in
	b) build_only=yes ;;
	k) keep_going="-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1" ;;
	s) seconds=$OPTARG; total= ;;
	T) total=$OPTARG ;;
	*) echo "usage: $0 [-bk] [-s SECONDS] [-T TOTAL] [TARGET...]" >&2
	   exit 2 ;;
	esac
done
shift $((OPTIND - 1))

die() { echo "fuzz: $*" >&2; exit 2; }

[ -f "$confdir/config.h" ] ||
	die "no config.h in $confdir: run configure first (or set FUZZ_CONFIG_DIR)"
command -v "$cc" >/dev/null 2>&1 ||
	die "$cc not found: apt-get install clang (libFuzzer comes with it)"

if [ -z "${FUZZ_PKG_CFLAGS+set}" ]; then
	FUZZ_PKG_CFLAGS=$(pkg-config --cflags inih jansson libcurl 2>/dev/null)
fi
if [ -z "${FUZZ_LIBS+set}" ]; then
	FUZZ_LIBS="-lmbedtls -lmbedx509 -lmbedcrypto $(pkg-config --libs inih jansson libcurl 2>/dev/null)"
fi

mkdir -p "$out/obj" "$out/bin" "$out/etc" "$out/work" || exit 2

# No path the fuzzed code may open by default leads out of the scratch
# tree: never the real /etc/bearmail.conf or /var spool.
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-g -O1 -fno-omit-frame-pointer $san"
cppflags="-DHAVE_CONFIG_H -I$confdir -I$srcdir/src -I$srcdir/tests/fuzz \
	-DSYSCONFDIR=\"$out/etc\" -DBINDIR=\"$out/bin\" \
	-DLOCALSTATEDIR=\"$out/var\" $FUZZ_PKG_CFLAGS"

# A probe first: a clang without libFuzzer fails here, not mid-build.
probe=$out/obj/probe
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe.c"
$cc -fsanitize=fuzzer $cflags "$probe.c" -o "$probe" >"$probe.log" 2>&1 ||
	die "$cc cannot build a libFuzzer target (see $probe.log): apt-get install clang"

# --- the core, compiled once per change --------------------------------
newest_h=$(ls -t "$srcdir"/src/*.h "$confdir/config.h" | head -n 1)
objs=
broken=
for c in "$srcdir"/src/*.c; do
	m=$(basename "$c" .c)
	case $m in cmd_*) continue ;; esac
	o=$out/obj/$m.o
	if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || [ "$newest_h" -nt "$o" ]; then
		echo "  CLANG    src/$m.c"
		if ! $cc $cflags -fsanitize=fuzzer-no-link $cppflags -c "$c" \
		    -o "$o" 2>"$out/obj/$m.log"; then
			rm -f "$o"
			broken="$broken $m"
			continue
		fi
	fi
	objs="$objs $o"
done
[ -n "$broken" ] &&
	echo "fuzz: warning: these modules do not build with $cc:$broken" \
	    "(logs in $out/obj/); targets using them will not link" >&2
stale=no
[ -f "$out/libfuzzcore.a" ] || stale=yes
for o in $objs; do
	[ "$o" -nt "$out/libfuzzcore.a" ] && stale=yes
done
# Built aside and renamed, so a run already using the archive never
# links half of one.
if [ $stale = yes ]; then
	rm -f "$out/libfuzzcore.a.new"
	ar rc "$out/libfuzzcore.a.new" $objs &&
	    mv -f "$out/libfuzzcore.a.new" "$out/libfuzzcore.a" || exit 2
fi

# --- the targets -------------------------------------------------------
if [ $# -eq 0 ]; then
	set --
	for f in "$here"/fuzz_*.c; do
		n=$(basename "$f" .c)
		set -- "$@" "${n#fuzz_}"
	done
fi
targets=
unbuilt=
for t in "$@"; do
	f=$here/fuzz_$t.c
	[ -f "$f" ] || die "no target $t ($f)"
	exe=$out/fuzz_$t
	if [ ! -x "$exe" ] || [ "$f" -nt "$exe" ] || \
	    [ "$out/libfuzzcore.a" -nt "$exe" ] || [ "$here/fuzz.h" -nt "$exe" ]; then
		echo "  CLANGLD  fuzz_$t"
		rm -f "$exe"
		if ! $cc $cflags -fsanitize=fuzzer $cppflags "$f" \
		    "$out/libfuzzcore.a" $FUZZ_LIBS -o "$exe" \
		    2>"$out/fuzz_$t.log"; then
			# The others still run; the exit status says 2.
			echo "BUILD-FAIL: $t (log: $out/fuzz_$t.log)" >&2
			grep -E 'error' "$out/fuzz_$t.log" | head -n 3 >&2
			unbuilt="$unbuilt $t"
			continue
		fi
	fi
	targets="$targets $t"
done
if [ "$build_only" = yes ] || [ -z "$targets" ]; then
	[ -z "$unbuilt" ] || die "targets that do not build:$unbuilt"
	exit 0
fi

# --- run ---------------------------------------------------------------
set -- $targets
if [ -n "$total" ]; then
	seconds=$((total / $#))
	[ "$seconds" -ge 1 ] || seconds=1
fi

# Leaks count as crashes; UBSan already aborts (-fno-sanitize-recover).
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS UBSAN_OPTIONS
TMPDIR=$out/work/tmp
mkdir -p "$TMPDIR"
export TMPDIR

failed=
echo "fuzz: $# targets, $seconds s each; scratch in $out/work"
for t in "$@"; do
	work=$out/work/corpus/$t
	crashes=$out/work/crashes/$t
	# Crash inputs of an earlier run are gone now: keep them in regress/.
	rm -rf "$crashes"
	mkdir -p "$work" "$crashes"
	# Regression inputs seed the run too, except those of known,
	# unfixed bugs (FILE.todo): they would end every run at once.
	seeds=$out/work/seeds/$t
	rm -rf "$seeds"
	mkdir -p "$seeds"
	for f in "$srcdir/tests/fuzz/regress/$t"/*; do
		[ -f "$f" ] && [ ! -f "$f.todo" ] || continue
		case $f in *.todo|*/README*) continue ;; esac
		cp "$f" "$seeds/"
	done
	set -- "$work" "$srcdir/tests/fuzz/corpus/$t" "$seeds"
	dict=
	[ -f "$here/dict/$t.dict" ] && dict=-dict=$here/dict/$t.dict
	log=$out/work/$t.log
	"$out/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
	    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix="$crashes/" $keep_going $dict "$@" >"$log" 2>&1
	rc=$?
	# With -k libFuzzer may exit 0 after crashes it ignored.
	for a in "$crashes"/*; do
		if [ -f "$a" ] && [ $rc -eq 0 ]; then
			rc=1
		fi
	done
	stats=$(grep -E '^stat::number_of_executed_units|^#[0-9]+' "$log" |
	    tail -n 1 | cut -c1-60)
	if [ $rc -eq 0 ]; then
		printf 'PASS: %-16s %s\n' "$t" "$stats"
	else
		printf 'FAIL: %-16s exit %d, log %s\n' "$t" $rc "$log"
		# Each input's reason, from a replay of it; one line per
		# distinct reason (-k collects many inputs of one bug).
		for a in "$crashes"/*; do
			[ -f "$a" ] || continue
			r=$("$out/fuzz_$t" "$a" 2>&1 | grep -E \
			    'ERROR: (Address|Leak)Sanitizer|runtime error|broken promise|SUMMARY: [A-Z]' |
			    head -n 1 | sed 's/^==[0-9]*==//')
			printf '%s\t%s\n' "${r:-no reason printed}" "$a"
		done | sort | awk -F '\t' '
			$1 != last { if (n) printf "      %d input(s), e.g. %s\n", n, ex
				print "      " $1; last = $1; n = 0; ex = $2 }
			{ n++ }
			END { if (n) printf "      %d input(s), e.g. %s\n", n, ex }'
		echo "      reproduce: $out/fuzz_$t INPUT;" \
		    "keep it: cp INPUT $srcdir/tests/fuzz/regress/$t/"
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: crashed:$failed"
	[ -z "$unbuilt" ] || echo "fuzz: did not build:$unbuilt"
	exit 1
fi
[ -z "$unbuilt" ] || die "no crash, but these did not build:$unbuilt"
echo "fuzz: no crash"
exit 0
