// Command bench measures docker-worker against bare Docker on this machine:
// per-task overhead over `docker run --rm`, throughput against a parallel
// shell loop, worker memory, and (where the features exist) live-log latency,
// artifact upload speed, cancellation latency (status polling and Pulse)
// and the time to the first claim after a crash. It starts the real binary
// twice, as `docker-worker queue` and `docker-worker run`, talking over HTTP,
// and the real dockerd. Every figure is paired with a baseline measured in
// the same run, interleaved where possible. It prints a Markdown table and
// writes the figures to bench-results.json. It never fails for slowness.
//
// Run it with `make bench` (after `make setup`); flags scale each part.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	var o options
	flag.IntVar(&o.overheadN, "overhead-n", 20, "sequential trivial tasks (and as many bare docker runs) for the overhead row")
	flag.IntVar(&o.throughputN, "throughput-n", 100, "tasks for the throughput row")
	flag.IntVar(&o.capacity, "capacity", 4, "worker capacity (and shell-loop parallelism) for throughput and memory")
	flag.IntVar(&o.livelogSeconds, "livelog-seconds", 5, "how long the live-log task prints (one line per 10 ms)")
	flag.IntVar(&o.artifactMiB, "artifact-mib", 1024, "size of the artifact-upload file in MiB (0 skips)")
	flag.IntVar(&o.artifactRounds, "artifact-rounds", 2, "interleaved worker/raw-PUT rounds per artifact kind")
	flag.IntVar(&o.dirFiles, "artifact-dir-files", 10000, "small files in the directory-artifact row (0 skips)")
	flag.IntVar(&o.cancelN, "cancel-n", 5, "cancellations to time (0 skips)")
	flag.IntVar(&o.taskImageMiB, "task-image-mib", 256, "size of the task image's data layer in MiB (0 skips the task-image rows)")
	flag.IntVar(&o.taskImageRounds, "task-image-rounds", 2, "interleaved rounds of the task-image rows")
	flag.IntVar(&o.statusPollMs, "status-poll-ms", 1000, "the worker's task.statusPollInterval for the cancellation row")
	flag.IntVar(&o.pulseCancelN, "pulse-cancel-n", 20, "cancellations to time with a Pulse-only worker (0 skips)")
	flag.StringVar(&o.pulseURL, "pulse-url", defaultBroker(), "RabbitMQ broker for the queue's Pulse messages and the Pulse cancellation row (empty skips the row)")
	flag.IntVar(&o.crashRounds, "crash-rounds", 3, "rounds of first claim after a crash vs after a clean start (0 skips)")
	flag.IntVar(&o.curveN, "curve-n", 40, "trivial tasks (and shell-loop containers) per capacity of the scale curve (0 skips)")
	flag.StringVar(&o.curveCaps, "curve-caps", "1,2,4,8,16", "capacities of the scale curve, comma-separated")
	flag.IntVar(&o.rssTasks, "rss-tasks", 16, "capacity and running tasks of the many-tasks RSS row (0 skips)")
	flag.StringVar(&o.image, "image", "docker-worker-test/busybox:latest", "image for every task and docker run")
	flag.StringVar(&o.out, "out", "bench-results.json", "where to write the JSON results")
	flag.StringVar(&o.workerLogs, "worker-logs", "", "directory to keep each worker process's log in (default: not kept)")
	flag.StringVar(&o.bin, "bin", "", "docker-worker binary (default: build ./cmd/docker-worker)")
	flag.IntVar(&o.queueRounds, "queue-rounds", 200, "sequential claim + resolve round trips on the embedded queue (0 skips the queue rows)")
	flag.IntVar(&o.queueTasks, "queue-tasks", 2000, "tasks created, claimed and resolved by the queue clients")
	flag.IntVar(&o.queueClients, "queue-clients", 16, "concurrent clients of the sustained queue row (and goroutines of its baseline)")
	flag.IntVar(&o.livelogReaders, "livelog-readers", 100, "live-log readers of the load rows (0 skips them)")
	flag.IntVar(&o.livelogTasks, "livelog-tasks", 4, "tasks of the second live-log load row, sharing -livelog-readers")
	flag.StringVar(&o.only, "only", "", "run only these rows, comma-separated (queue, livelog-load), and write only their figures")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// defaultBroker is the RabbitMQ broker test/setup-env.sh starts, or
// DW_TEST_AMQP_URL when set (as the tests take it).
func defaultBroker() string {
	if u := os.Getenv("DW_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}
