package runnerproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// runner is the test's runner end: it writes lines to the worker's input
// and reads the worker's output lines.
type runner struct {
	t     *testing.T
	toW   *io.PipeWriter
	lines chan string
}

func start(t *testing.T, h Handlers, shutdown bool) (*Conn, *runner, chan error) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := New(inR, &LineWriter{W: outW}, h, shutdown, nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	r := &runner{t: t, toW: inW, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	t.Cleanup(func() {
		inW.Close()
		<-done
		outW.Close()
	})
	return c, r, done
}

func (r *runner) send(line string) {
	r.t.Helper()
	if _, err := io.WriteString(r.toW, line+"\n"); err != nil {
		r.t.Fatal(err)
	}
}

// next is the next protocol message the worker wrote.
func (r *runner) next() map[string]any {
	r.t.Helper()
	select {
	case l, ok := <-r.lines:
		if !ok {
			r.t.Fatal("the worker's output ended")
		}
		if !strings.HasPrefix(l, "~{") {
			r.t.Fatalf("not a protocol line: %q", l)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l[1:]), &m); err != nil {
			r.t.Fatalf("line %q: %v", l, err)
		}
		return m
	case <-time.After(30 * time.Second):
		r.t.Fatal("no message from the worker")
	}
	return nil
}

func TestHelloOffersTheCapabilitiesBothHave(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h        Handlers
		shutdown bool
		runner   string
		want     string
	}{
		{"all", Handlers{GracefulTermination: func(bool) {}, NewCredentials: func(Credentials) {}}, true,
			`["graceful-termination","shutdown","new-credentials","log","error-report"]`,
			`["graceful-termination","new-credentials","shutdown"]`},
		{"runner without new-credentials", Handlers{GracefulTermination: func(bool) {}, NewCredentials: func(Credentials) {}}, true,
			`["shutdown","graceful-termination"]`, `["graceful-termination","shutdown"]`},
		{"none", Handlers{}, false, `["graceful-termination"]`, `[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r, _ := start(t, tc.h, tc.shutdown)
			r.send(`~{"type":"welcome","capabilities":` + tc.runner + `}`)
			m := r.next()
			got, _ := json.Marshal(m["capabilities"])
			if m["type"] != "hello" || string(got) != tc.want {
				t.Errorf("answer %v, want hello with %s", m, tc.want)
			}
		})
	}
}

func TestMessagesReachTheHandlers(t *testing.T) {
	var mu sync.Mutex
	var finish []bool
	var creds []Credentials
	got := make(chan struct{}, 8)
	h := Handlers{
		GracefulTermination: func(f bool) { mu.Lock(); finish = append(finish, f); mu.Unlock(); got <- struct{}{} },
		NewCredentials:      func(c Credentials) { mu.Lock(); creds = append(creds, c); mu.Unlock(); got <- struct{}{} },
	}
	_, r, _ := start(t, h, true)
	// Before the welcome, messages are ignored.
	r.send(`~{"type":"graceful-termination","finish-tasks":true}`)
	r.send(`~{"type":"welcome","capabilities":["graceful-termination","new-credentials","shutdown"]}`)
	r.next()
	r.send(`some log line from somewhere`)
	r.send(`~{not json`)
	r.send(`~{"type":"new-credentials","client-id":"","access-token":"x"}`) // refused: no client id
	r.send(`~{"type":"new-credentials","client-id":"c1","access-token":"t1"}`)
	r.send(`~{"type":"new-credentials","client-id":"c2","access-token":"t2","certificate":"{\"version\":1}"}`)
	r.send(`~{"type":"graceful-termination","finish-tasks":false}`)
	r.send(`~{"type":"graceful-termination","finish-tasks":true}`)
	for range 4 {
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("handlers not called")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finish) != 2 || finish[0] || !finish[1] {
		t.Errorf("graceful-termination calls %v, want [false true]", finish)
	}
	want := []Credentials{{ClientID: "c1", AccessToken: "t1"}, {ClientID: "c2", AccessToken: "t2", Certificate: `{"version":1}`}}
	if len(creds) != 2 || creds[0] != want[0] || creds[1] != want[1] {
		t.Errorf("new-credentials calls %+v, want %+v", creds, want)
	}
}

// A capability the runner did not offer is not acted on.
func TestMessagesOutsideTheCapabilitiesAreIgnored(t *testing.T) {
	called := make(chan bool, 1)
	c, r, done := start(t, Handlers{GracefulTermination: func(bool) { called <- true }}, true)
	r.send(`~{"type":"welcome","capabilities":["new-credentials"]}`)
	r.next()
	r.send(`~{"type":"graceful-termination","finish-tasks":false}`)
	if err := c.Shutdown(context.Background()); !errors.Is(err, ErrNotNegotiated) {
		t.Errorf("Shutdown without the capability: %v", err)
	}
	// The input is handled in order: once a later message is handled, the
	// earlier one was too.
	r.send(`~{"type":"welcome","capabilities":["graceful-termination"]}`)
	r.toW.Close()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil // for the cleanup
	select {
	case <-called:
		t.Error("graceful-termination handled without the capability")
	default:
	}
}

func TestShutdownWaitsForTheWelcome(t *testing.T) {
	c, r, _ := start(t, Handlers{}, true)
	sent := make(chan error, 1)
	go func() { sent <- c.Shutdown(context.Background()) }()
	select {
	case err := <-sent:
		t.Fatalf("Shutdown returned before the welcome: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	r.send(`~{"type":"welcome","capabilities":["shutdown"]}`)
	if m := r.next(); m["type"] != "hello" {
		t.Fatalf("first message %v", m)
	}
	if m := r.next(); m["type"] != "shutdown" || len(m) != 1 {
		t.Errorf("second message %v, want {type: shutdown}", m)
	}
	if err := <-sent; err != nil {
		t.Error(err)
	}
}

// A runner that goes away before its welcome does not leave Shutdown
// waiting; Run returns nil at the end of the input.
func TestInputEndsBeforeWelcome(t *testing.T) {
	c, r, done := start(t, Handlers{}, true)
	r.toW.Close()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	done <- nil // for the cleanup
	if err := c.Shutdown(context.Background()); !errors.Is(err, ErrNotNegotiated) {
		t.Errorf("Shutdown: %v", err)
	}
}

// Log records and protocol lines written at once stay whole lines.
func TestLineWriterKeepsLinesWhole(t *testing.T) {
	pr, pw := io.Pipe()
	w := &LineWriter{W: pw}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := strings.Repeat(string(rune('a'+i)), 10000) + "\n"
			for range 20 {
				w.Write([]byte(line))
			}
		}()
	}
	go func() { wg.Wait(); pw.Close() }()
	sc := bufio.NewScanner(pr)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		l := sc.Text()
		if len(l) != 10000 || strings.Count(l, l[:1]) != 10000 {
			t.Fatalf("line %d mixed: %q...", n, l[:40])
		}
		n++
	}
	if n != 160 {
		t.Errorf("%d lines, want 160", n)
	}
}
