#!/bin/sh
# summary.sh: one closing line for a test run, "N passed, N failed",
# counting every TAP assertion and every pytest test, not every file.
#
#   tests/summary.sh BUILDDIR|LOGFILE...
#
# Reads the automake .trs/.log pairs under each BUILDDIR/tests.  A pytest
# file is one .trs result to automake; its .log's closing line ("12
# passed, 1 xfailed in 3.1s") says how many tests it really ran.  A
# LOGFILE is the output of a pytest run made outside automake.
for arg in "${@:-.}"; do
	if [ -f "$arg" ]; then
		echo "$arg.trs"	# no such .trs: only its log is read
	else
		find "$arg/tests" -name '*.trs' 2>/dev/null
	fi
done | sort | awk '
	{
		trs = $0
		log_ = substr(trs, 1, length(trs) - 4)
		if (log_ !~ /\.log$/)
			log_ = log_ ".log"
		last = ""
		while ((getline l < log_) > 0)
			if (l ~ /^(=+ )?[0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected).* in [0-9.]+s/)
				last = l
		close(log_)
		if (last != "") {
			sub(/^=+ /, "", last)
			n = split(last, w, /[ ,]+/)
			for (i = 2; i <= n; i++) {
				if (w[i] ~ /^(passed|xfailed)/) pass += w[i-1]
				else if (w[i] ~ /^(failed|errors?|xpassed)/) fail += w[i-1]
				else if (w[i] ~ /^skipped/) skip += w[i-1]
			}
			next
		}
		while ((getline l < trs) > 0) {
			if (l ~ /^:test-result: (PASS|XFAIL)/) pass++
			else if (l ~ /^:test-result: SKIP/) skip++
			else if (l ~ /^:test-result: (FAIL|XPASS|ERROR)/) fail++
		}
		close(trs)
	}
	END {
		printf "%d passed, %d failed", pass, fail
		if (skip) printf ", %d skipped", skip
		printf "\n"
	}'
