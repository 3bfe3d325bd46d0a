#!/usr/bin/env bash
# make demo: starts `docker-worker dev` (embedded queue + worker) on a free
# loopback port, submits the sample task, prints its log and artifacts, and
# stops the dev process. Expects bin/docker-worker and a running dockerd
# (make demo builds and runs test/setup-env.sh first).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin/docker-worker
task=${1:-test/testdata/demo-task.yml}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18080)

"$bin" dev --listen "127.0.0.1:$port" --data-dir "$work/state" >"$work/exports" 2>"$work/dev.log" &
dev_pid=$!
cleanup() {
	kill -INT "$dev_pid" 2>/dev/null || true
	wait "$dev_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
	[ -s "$work/exports" ] && break
	kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.log" >&2; exit 1; }
	sleep 0.1
done
echo "== docker-worker dev is up; its client:"
sed 's/\(TASKCLUSTER_ACCESS_TOKEN=\).*/\1<secret>/' "$work/exports"
# shellcheck disable=SC1091
. "$work/exports"
echo "== submitting $task"
status=0
"$bin" submit "$task" || status=$?
echo "== submit exited with $status"
exit "$status"
