package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

var operations = regexp.MustCompile(`parleyd operations on (http://\S+)`)

// TestOperationsListener starts the real binary with -metrics-addr and
// checks the side listener: probes, metrics of a real call, and pprof
// there but not on the public port.
func TestOperationsListener(t *testing.T) {
	d := startDaemon(t, storetest.Target(t, filepath.Join(t.TempDir(), "parley.db")), "-metrics-addr", "127.0.0.1:0")
	var ops string
	for ops == "" {
		line, ok := <-d.logs
		if !ok {
			t.Fatal("parleyd did not report its operations address")
		}
		if m := operations.FindStringSubmatch(line); m != nil {
			ops = m[1]
		}
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}

	for _, path := range []string{"/livez", "/readyz", "/debug/pprof/"} {
		if status, body := get(ops + path); status != http.StatusOK {
			t.Errorf("%s: %d %q, want 200", path, status, body)
		}
	}
	if status, _ := get(d.url + "/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("public /debug/pprof/: %d, want 404", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := parley.New(d.url).Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{}); err != nil {
		t.Fatal(err)
	}
	want := `parley_rpcs_total{code="ok",procedure="/parley.v1.SessionService/GetPreChatForm"} 1`
	if _, body := get(ops + "/metrics"); !strings.Contains(body, want+"\n") {
		t.Errorf("/metrics lacks %s", want)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("parleyd exited with %v", err)
	}
}
