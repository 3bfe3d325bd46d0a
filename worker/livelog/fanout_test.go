package livelog

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fanoutContent is n numbered lines, then one write larger than twice the
// in-memory tail, then more lines: chunks of varied sizes.
func fanoutContent(n int) [][]byte {
	var chunks [][]byte
	for i := range n {
		chunks = append(chunks, fmt.Appendf(nil, "line %06d %s\n", i, bytes.Repeat([]byte{'a' + byte(i%26)}, i%97)))
	}
	chunks = append(chunks, bytes.Repeat([]byte("0123456789abcdef"), 2*TailBytes/16+123))
	for i := range n / 4 {
		chunks = append(chunks, fmt.Appendf(nil, "after %06d\n", i))
	}
	return chunks
}

// Many HTTP readers of one stream each get every byte, in order, exactly
// once: readers there from the start (served from the in-memory tail),
// readers that join after the tail moved past the start (served from the
// file first), across tail trims and a write larger than the tail.
func TestFanOutAllReadersGetAllBytesInOrder(t *testing.T) {
	srv := start(t, Config{})
	s := newStream(t)
	url := "http://127.0.0.1:" + strconv.Itoa(srv.Port()) + "/log/" + srv.Add(s)
	const lines = 3000
	chunks := fanoutContent(lines)
	want := bytes.Join(chunks, nil)
	if len(want) < 4*TailBytes {
		t.Fatalf("content %d bytes, too short to move the tail", len(want))
	}

	const early, late = 40, 10
	results := make([][]byte, early+late)
	errs := make([]error, early+late)
	var wg sync.WaitGroup
	read := func(i int) {
		resp, err := http.Get(url)
		if err != nil {
			errs[i] = err
			return
		}
		defer resp.Body.Close()
		results[i], errs[i] = io.ReadAll(resp.Body)
	}
	for i := range early {
		wg.Go(func() { read(i) })
	}
	written := 0
	for i, c := range chunks {
		if _, err := s.Write(c); err != nil {
			t.Fatal(err)
		}
		written += len(c)
		if i == lines { // just after the write larger than the tail
			// Readers joining now find the start only in the file.
			if int64(written) <= 2*TailBytes {
				t.Fatalf("only %d bytes written, the tail still holds the start", written)
			}
			for j := early; j < early+late; j++ {
				wg.Go(func() { read(j) })
			}
		}
	}
	s.Close()
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Errorf("reader %d: %v", i, errs[i])
			continue
		}
		if !bytes.Equal(results[i], want) {
			t.Errorf("reader %d got %d bytes, want %d; first difference at byte %d", i, len(results[i]), len(want), firstDiff(results[i], want))
		}
	}
}

// Follow from an offset inside, before and after the in-memory tail gives
// exactly the bytes from there.
func TestFollowFromOffsets(t *testing.T) {
	s := newStream(t)
	chunks := fanoutContent(2000)
	for _, c := range chunks {
		if _, err := s.Write(c); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	all := bytes.Join(chunks, nil)
	s.mu.Lock()
	tailStart := s.tailStart
	s.mu.Unlock()
	if tailStart == 0 {
		t.Fatal("the tail never moved")
	}
	for _, from := range []int64{0, tailStart - 1, tailStart, tailStart + 1, int64(len(all)) - 1, int64(len(all))} {
		var got bytes.Buffer
		if err := s.Follow(t.Context(), &got, from, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), all[from:]) {
			t.Errorf("from %d: got %d bytes, want %d; first difference at %d", from, got.Len(), len(all)-int(from), firstDiff(got.Bytes(), all[from:]))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkFanOut100Readers writes b.N lines of 60 bytes, each after the
// previous one reached all 100 HTTP readers, and reports the time from
// write to the last reader's receipt (ns/op) and the readers' p99.
func BenchmarkFanOut100Readers(b *testing.B) {
	const readers = 100
	srv, err := Start(Config{Address: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	s, err := NewStream(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Remove()
	url := "http://127.0.0.1:" + strconv.Itoa(srv.Port()) + "/log/" + srv.Add(s)
	line := append(bytes.Repeat([]byte("x"), 59), '\n')
	got := make(chan time.Time, readers)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: readers + 1, MaxIdleConnsPerHost: readers + 1}}
	var wg sync.WaitGroup
	for range readers {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			buf := make([]byte, 4096)
			pending := 0
			for {
				n, err := resp.Body.Read(buf)
				pending += n
				for ; pending >= len(line); pending -= len(line) {
					got <- time.Now()
				}
				if err != nil {
					return
				}
			}
		})
	}
	var delays []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		s.Write(line)
		for range readers {
			delays = append(delays, (<-got).Sub(start))
		}
	}
	b.StopTimer()
	s.Close()
	wg.Wait()
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds()), "p99-µs")
}
