package interactive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func frame(typ byte, p string) []byte {
	h := make([]byte, 8)
	h[0] = typ
	binary.BigEndian.PutUint32(h[4:], uint32(len(p)))
	return append(h, p...)
}

func TestOutputMessages(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, maxChunk+10)
	tests := []struct {
		name string
		in   []byte
		raw  bool
		want [][]byte
	}{
		{"raw stream", []byte("hello"), true, [][]byte{append([]byte{MsgStdout}, "hello"...)}},
		{"empty raw stream", nil, true, nil},
		{"multiplexed", append(frame(1, "out"), frame(2, "err")...), false, [][]byte{
			append([]byte{MsgStdout}, "out"...),
			append([]byte{MsgStderr}, "err"...),
		}},
		{"system stream skipped", append(frame(3, "sys"), frame(1, "a")...), false, [][]byte{
			append([]byte{MsgStdout}, 'a'),
		}},
		{"large frame split", frame(1, string(big)), false, [][]byte{
			append([]byte{MsgStdout}, big[:maxChunk]...),
			append([]byte{MsgStdout}, big[maxChunk:]...),
		}},
		{"binary bytes kept", frame(1, "\xfa\xff\n"), false, [][]byte{{MsgStdout, 0xfa, 0xff, 0x0a}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]byte
			err := outputMessages(bytes.NewReader(tc.in), tc.raw, func(m []byte) error {
				got = append(got, bytes.Clone(m))
				return nil
			})
			if err != nil {
				t.Fatalf("outputMessages: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutputMessagesErrors(t *testing.T) {
	t.Run("truncated frame", func(t *testing.T) {
		in := frame(1, "abcdef")[:10]
		if err := outputMessages(bytes.NewReader(in), false, func([]byte) error { return nil }); err == nil {
			t.Error("got nil error for a truncated frame, want one")
		}
	})
	t.Run("send error stops", func(t *testing.T) {
		stop := errors.New("closed")
		in := append(frame(1, "a"), frame(1, "b")...)
		calls := 0
		err := outputMessages(bytes.NewReader(in), false, func([]byte) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("got err %v after %d sends, want %v after 1", err, calls, stop)
		}
	})
}

func TestMessages(t *testing.T) {
	if got, want := stoppedMessage(3), []byte{200, 3}; !bytes.Equal(got, want) {
		t.Errorf("stopped: got %v, want %v", got, want)
	}
	if got, want := stoppedMessage(256+7), []byte{200, 7}; !bytes.Equal(got, want) {
		t.Errorf("stopped 263: got %v, want %v", got, want)
	}
	if got, want := encode(MsgError, []byte("no")), []byte{202, 'n', 'o'}; !bytes.Equal(got, want) {
		t.Errorf("error: got %v, want %v", got, want)
	}
	m := resizeMessage(24, 80)
	if want := []byte{50, 24, 0, 80, 0}; !bytes.Equal(m, want) {
		t.Errorf("resize: got %v, want %v", m, want)
	}
	h, w, err := decodeResize(m)
	if err != nil || h != 24 || w != 80 {
		t.Errorf("decodeResize: got %d, %d, %v; want 24, 80, nil", h, w, err)
	}
	if _, _, err := decodeResize([]byte{50, 1}); err == nil {
		t.Error("decodeResize of a short message: got nil error")
	}
}
