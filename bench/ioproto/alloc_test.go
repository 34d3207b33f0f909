package main

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestNoAllocationsPerMessage runs simple-protocol transactions through
// each forwarder from a client that itself does not allocate, and checks
// that the process allocates next to nothing per transaction once warm:
// the forwarders reuse their buffers and decode nothing into memory.
func TestNoAllocationsPerMessage(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			f := startForwarder(t, v, 1)
			c, err := net.Dial("tcp", f.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 4096)
			if _, err := c.Write(startupPacket(codeProtocol3, "user\x00postgres\x00\x00")); err != nil {
				t.Fatal(err)
			}
			if err := readUntilReady(c, buf); err != nil {
				t.Fatal(err)
			}
			query := msg('Q', "SELECT 1\x00")
			run := func(n int) {
				for range n {
					if _, err := c.Write(query); err != nil {
						t.Fatal(err)
					}
					if err := readUntilReady(c, buf); err != nil {
						t.Fatal(err)
					}
				}
			}
			run(50) // warm up: goroutine stacks, the pool's first bindings
			const n = 500
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			run(n)
			runtime.ReadMemStats(&after)
			// The runtime and the test's own machinery allocate now and
			// then; a forwarder that allocated per message would show at
			// least one per transaction.
			if per := float64(after.Mallocs-before.Mallocs) / n; per > 0.2 {
				t.Fatalf("%.2f allocations per transaction, want none", per)
			}
		})
	}
}

// readUntilReady reads from c until the data read ends with a
// ReadyForQuery, with buf for every read.
func readUntilReady(c io.Reader, buf []byte) error {
	end := 0
	for {
		n, err := c.Read(buf[end:])
		if err != nil {
			return err
		}
		end += n
		if end >= 6 && buf[end-6] == msgReady && bytes.Equal(buf[end-5:end-1], []byte{0, 0, 0, 5}) {
			return nil
		}
		if end == len(buf) {
			end = 0
		}
	}
}
