#!/usr/bin/env bash
# Runs every Go fuzz target of the module (each func FuzzXxx in a _test.go
# file that git does not ignore) for FUZZTIME each (default 3s), one at a
# time: `go test -fuzz` takes one target of one package. Plain `go test`
# already runs every target's seed corpus; this explores beyond it.
#
# A target that fails leaves its failing input in the package's
# testdata/fuzz/<target>/ directory: fix the bug and commit the file, which
# keeps it as a seed. Every target runs even after a failure; the exit
# status is 1 if any failed.
#
# Environment: FUZZTIME (a duration, or Nx for N runs, as -fuzztime takes),
# GO (default go), FUZZFLAGS (more go test flags, e.g. "-parallel 1").
set -u
cd "$(dirname "$0")/.." || exit 1
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-3s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()
total=0
while IFS= read -r file; do
	dir=./$(dirname "$file")
	# shellcheck disable=SC2013 # target names are single words
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		total=$((total + 1))
		echo "fuzz: $dir $target ($FUZZTIME)"
		ok=false
		# Go's fuzzing engine can end a short run on a loaded machine with
		# "context deadline exceeded" and no failing input: that is its
		# own timing, not a finding, and the target gets one more run.
		for attempt in 1 2; do
			# shellcheck disable=SC2086 # FUZZFLAGS is a list of flags
			if $GO test ${FUZZFLAGS:-} -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$dir" >"$log" 2>&1; then
				ok=true
				break
			fi
			if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
				echo "fuzz: $dir $target: the engine timed out without a finding; running it again"
				continue
			fi
			break
		done
		if ! $ok; then
			cat "$log"
			failed+=("$dir $target")
		fi
	done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' | sort)
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of $total targets failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: $total targets passed"
