package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// dirSample is the directory-artifact row: one task writes dirFiles small
// files into a directory artifact, uploaded by a worker reading the
// container's layers and, in the same run, by one told to use the Docker
// archive API only (artifacts.archiveOnly).
type dirSample struct {
	Files int `json:"files"`
	// Seconds of the worker's artifacts phase, per round.
	LayersSeconds  []float64 `json:"layers_seconds"`
	ArchiveSeconds []float64 `json:"archive_seconds"`
	// Worker RSS before the task and its peak while it ran, per round
	// (layers worker).
	RSSBeforeMiB []float64 `json:"rss_before_mib"`
	RSSPeakMiB   []float64 `json:"rss_peak_mib"`
}

// artifactDir times the directory artifact of dirFiles small files
// through both paths, interleaved (layers first).
func (e *env) artifactDir(ctx context.Context, r *results) error {
	s := &r.Samples.ArtifactDir
	s.Files = e.o.dirFiles
	// 100 files a directory, as a build's output tree would spread them.
	gen := fmt.Sprintf("i=0; while [ $i -lt %d ]; do d=/many/d$((i/100)); [ -d $d ] || mkdir -p $d; echo \"small file $i\" > $d/f$i.txt; i=$((i+1)); done", e.o.dirFiles)
	for _, mode := range []struct {
		extra string
		out   *[]float64
	}{{"", &s.LayersSeconds}, {"artifacts: {archiveOnly: true}\n", &s.ArchiveSeconds}} {
		secs, before, peak, err := e.dirOnce(ctx, gen, mode.extra)
		if err != nil {
			return err
		}
		*mode.out = append(*mode.out, secs)
		if mode.extra == "" {
			s.RSSBeforeMiB = append(s.RSSBeforeMiB, before)
			s.RSSPeakMiB = append(s.RSSPeakMiB, peak)
		}
	}
	return nil
}

func (e *env) dirOnce(ctx context.Context, gen, extra string) (secs, before, peak float64, err error) {
	w, err := e.startWorkerWith(ctx, 1, extra)
	if err != nil {
		return 0, 0, 0, err
	}
	defer w.stop()
	time.Sleep(time.Second)
	if before, err = rssMiB(w.cmd.Process.Pid); err != nil {
		return 0, 0, 0, err
	}
	id, err := e.createTaskPayload(ctx, w, map[string]any{
		"command":   []string{"/bin/sh", "-c", gen},
		"artifacts": map[string]any{"public/many": map[string]any{"type": "directory", "path": "/many"}},
	}, 1800)
	if err != nil {
		return 0, 0, 0, err
	}
	stop := sampleRSS(w.cmd.Process.Pid)
	_, err = e.waitResolved(ctx, id, 30*time.Minute)
	peak = stop()
	if err != nil {
		return 0, 0, 0, err
	}
	timings := w.waitTimings(time.Minute)
	if len(timings) == 0 {
		return 0, 0, 0, fmt.Errorf("no task timings from the worker")
	}
	n, token := 0, ""
	for {
		page, err := e.client.ListArtifacts(ctx, id, 0, token)
		if err != nil {
			return 0, 0, 0, err
		}
		for _, a := range page.Artifacts {
			if strings.HasPrefix(a.Name, "public/many/") {
				n++
			}
		}
		if token = page.ContinuationToken; token == "" {
			break
		}
	}
	if n != e.o.dirFiles {
		return 0, 0, 0, fmt.Errorf("the worker uploaded %d of the %d files", n, e.o.dirFiles)
	}
	return timings[len(timings)-1]["artifactsMs"] / 1000, before, peak, nil
}

// dirRow is the table row of the directory artifact.
func dirRow(s dirSample) string {
	if len(s.LayersSeconds) == 0 {
		return ""
	}
	l, a := median(s.LayersSeconds), median(s.ArchiveSeconds)
	g := 0.0
	for i := range s.RSSPeakMiB {
		g = max(g, s.RSSPeakMiB[i]-s.RSSBeforeMiB[i])
	}
	return fmt.Sprintf("| artifact upload, directory of small files | %d files of ~20 bytes (100 a directory) as one directory artifact (worker's artifacts phase), read from the container's layers vs through the Docker archive API (`artifacts.archiveOnly`) | %.1f s (%.1f ms a file), RSS growth %.1f MiB | %.1f s (%.1f ms a file) | %.1f× faster | ≥ 5× faster than the archive path |\n",
		s.Files, l, 1000*l/float64(s.Files), g, a, 1000*a/float64(s.Files), a/l)
}
