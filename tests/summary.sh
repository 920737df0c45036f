#!/bin/sh
# summary.sh: one closing line for the whole suite, "N passed, N failed",
# counting every TAP assertion and every pytest test of the last run in
# the build tree given as $1 (default: .).
dir=${1:-.}
find "$dir/tests" -name '*.trs' -o -name '*.py.log' 2>/dev/null | sort | awk '
	/\.py\.trs$/ { next }	# pytest files are counted test by test below
	/\.trs$/ {
		while ((getline l < $0) > 0) {
			if (l ~ /^:test-result: (PASS|XFAIL)/) pass++
			else if (l ~ /^:test-result: SKIP/) skip++
			else if (l ~ /^:test-result: (FAIL|XPASS|ERROR)/) fail++
		}
		close($0)
		next
	}
	/\.py\.log$/ {
		# pytest's own closing line: "12 passed, 1 skipped in 3.1s".
		while ((getline l < $0) > 0)
			if (l ~ /(passed|failed|error).* in [0-9.]+s/) last = l
		close($0)
		n = split(last, w, /[ ,]+/)
		for (i = 2; i <= n; i++) {
			if (w[i] ~ /^passed/) pass += w[i-1]
			else if (w[i] ~ /^(failed|errors?)/) fail += w[i-1]
			else if (w[i] ~ /^skipped/) skip += w[i-1]
		}
		last = ""
	}
	END {
		printf "%d passed, %d failed", pass, fail
		if (skip) printf ", %d skipped", skip
		printf "\n"
	}'
