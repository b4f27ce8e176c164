package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// TestMain serves the bare server when the bench starts this test binary
// as its serve-bare child.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve-bare" {
		if err := serveBare(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serve-bare:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestTinySweep runs a tiny sweep (3 conversations x 2 subscribers, 50
// messages/s for 1 s) against the bare server and parleyd on SQLite, and
// checks what a correct delivery path must give whatever the machine's
// speed: nothing lost, duplicated or out of order, every acknowledged
// message delivered to every subscriber of its conversation, and the
// memory per idle stream measured.
func TestTinySweep(t *testing.T) {
	// Built first, outside the sweep's deadline: on a cold build cache,
	// with other packages compiling beside it, the build alone can take
	// minutes.
	bin, err := buildParleyd(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{
		"-parleyd", bin, "-target", "bare,parleyd", "-conversations", "3", "-subscribers", "2", "-rates", "50",
		"-duration", "1s", "-warmup", "0", "-drain", "10s", "-idle-streams", "4",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var log lockedBuffer
	rep, err := run(ctx, cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	if len(rep.Targets) != 2 {
		t.Fatalf("got %d targets, want 2", len(rep.Targets))
	}
	for _, target := range rep.Targets {
		if len(target.Sweeps) != 1 {
			t.Fatalf("%s: got %d sweeps, want 1", target.Target, len(target.Sweeps))
		}
		s := target.Sweeps[0]
		if s.Sends == 0 || s.SendErrors != 0 || s.Lost != 0 || s.Duplicates != 0 || s.OrderViolations != 0 ||
			s.Delivered != s.Sends*cfg.subscribers || s.Expected != s.Delivered {
			t.Errorf("%s: %d sent (%d send errors: %s), %d delivered, %d expected, %d lost, %d duplicates, %d order violations; want every send delivered to each of %d subscribers once, in order",
				target.Target, s.Sends, s.SendErrors, s.LastSendError, s.Delivered, s.Expected, s.Lost, s.Duplicates, s.OrderViolations, cfg.subscribers)
		}
		if s.ServerCPUPerDeliveryUs == nil || target.IdleRSSPerStreamBytes == nil {
			t.Errorf("%s: server CPU per delivery or memory per idle stream missing", target.Target)
		}
	}
	if t.Failed() {
		t.Log(log.String())
	}
}

// lockedBuffer collects the children's output, written from several
// goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
