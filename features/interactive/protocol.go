package interactive

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Message types of the docker-exec-websocket-server protocol (v3). Every
// websocket message is binary: its first byte is the type, the rest its
// payload.
const (
	// MsgStdin (client to server) carries bytes for the process's input.
	MsgStdin byte = 0
	// MsgStdout and MsgStderr (server to client) carry process output.
	MsgStdout byte = 1
	MsgStderr byte = 2
	// MsgResize (client to server) sets the terminal size: height then
	// width, each a little-endian uint16.
	MsgResize byte = 50
	// MsgResume and MsgPause control the flow of output (client to
	// server) or of input (server to client). The server sends MsgResume
	// once the process is ready for input.
	MsgResume byte = 100
	MsgPause  byte = 101
	// MsgEnd (client to server) closes the process's input.
	MsgEnd byte = 102
	// MsgStopped (server to client): the process exited; the payload is
	// one byte, its exit code.
	MsgStopped byte = 200
	// MsgShutdown (server to client): the server is going away.
	MsgShutdown byte = 201
	// MsgError (server to client): something went wrong; the payload is a
	// UTF-8 reason.
	MsgError byte = 202
)

// encode returns the message of type typ with payload p.
func encode(typ byte, p []byte) []byte {
	m := make([]byte, 1+len(p))
	m[0] = typ
	copy(m[1:], p)
	return m
}

// stoppedMessage reports an exit code; codes outside 0..255 are sent
// modulo 256, as a single byte can hold.
func stoppedMessage(code int) []byte {
	return []byte{MsgStopped, byte(code)}
}

// resizeMessage encodes a terminal size (clients send it; tests use it).
func resizeMessage(height, width uint16) []byte {
	m := make([]byte, 5)
	m[0] = MsgResize
	binary.LittleEndian.PutUint16(m[1:], height)
	binary.LittleEndian.PutUint16(m[3:], width)
	return m
}

// decodeResize reads the terminal size of a MsgResize message.
func decodeResize(m []byte) (height, width uint16, err error) {
	if len(m) < 5 || m[0] != MsgResize {
		return 0, 0, fmt.Errorf("resize message of %d bytes", len(m))
	}
	return binary.LittleEndian.Uint16(m[1:]), binary.LittleEndian.Uint16(m[3:]), nil
}

// maxChunk bounds one output message read from a terminal stream.
const maxChunk = 32 * 1024

// outputMessages reads a process's output and calls send with one message
// for each piece of it: with a terminal (raw) every chunk read becomes a
// MsgStdout message; without one the daemon's multiplexed frames (an
// 8-byte header: stream type, three zero bytes, big-endian length; then
// the payload) become messages of the frame's stream type. It returns nil
// at the end of the output and send's first error otherwise.
func outputMessages(r io.Reader, raw bool, send func([]byte) error) error {
	if raw {
		buf := make([]byte, maxChunk)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if serr := send(encode(MsgStdout, buf[:n])); serr != nil {
					return serr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	br := bufio.NewReader(r)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("output frame header: %w", err)
		}
		typ := hdr[0]
		size := binary.BigEndian.Uint32(hdr[4:])
		if typ != MsgStdout && typ != MsgStderr {
			// Stdin echo (0) or the daemon's system stream (3): skip.
			if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
				return fmt.Errorf("output frame: %w", err)
			}
			continue
		}
		for size > 0 {
			n := min(size, maxChunk)
			m := make([]byte, 1+n)
			m[0] = typ
			if _, err := io.ReadFull(br, m[1:]); err != nil {
				return fmt.Errorf("output frame: %w", err)
			}
			if err := send(m); err != nil {
				return err
			}
			size -= n
		}
	}
}
