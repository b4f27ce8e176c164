package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

var listening = regexp.MustCompile(`parleyd listening on (https?://\S+)`)

// daemon is parleyd running as a child process.
type daemon struct {
	cmd  *exec.Cmd
	url  string
	logs chan string
}

// bin is the parleyd binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parleyd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "parleyd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startDaemon starts parleyd on db with a free port and extra flags.
func startDaemon(t *testing.T, db string, flags ...string) *daemon {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-db", db}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	d := &daemon{cmd: cmd, logs: make(chan string, 100)}
	urls := make(chan string, 1)
	go func() {
		defer close(d.logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
			select {
			case d.logs <- sc.Text():
			default:
			}
		}
	}()
	select {
	case d.url = <-urls:
	case <-time.After(30 * time.Second):
		t.Fatal("parleyd did not report its address")
	}
	return d
}

// TestSIGTERM starts the real binary, holds a stream open, and checks that
// SIGTERM ends the stream with Unavailable and the process exits cleanly,
// and that a restart keeps the data without re-applying the bootstrap.
func TestSIGTERM(t *testing.T) {
	db := storetest.Target(t, filepath.Join(t.TempDir(), "parley.db"))
	d := startDaemon(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	started, err := parley.New(d.url).Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order",
	})
	if err != nil {
		t.Fatal(err)
	}
	convID := started.GetConversation().GetId()
	guest := parley.New(d.url, parley.WithToken(started.GetGuestToken()), parley.WithProtocol(parley.GRPC))
	stream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	for seen := int64(0); seen < started.GetConversation().GetLastSeq(); {
		resp, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetEvent() != nil {
			seen++
		}
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Receive()
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "after_seq") {
		t.Fatalf("stream ended with %v, want Unavailable telling how to resume", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("parleyd exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("parleyd did not exit after SIGTERM")
	}

	// Restart on the same file: the data is there, the bootstrap is not
	// applied again.
	d = startDaemon(t, db)
	got, err := parley.New(d.url, parley.WithToken("ps_demo_admin_token")).Session.GetConversation(ctx,
		&parleyv1.GetConversationRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetConversation().GetInteraction().GetName() != "Ada" {
		t.Fatalf("after restart: %v", got.GetConversation())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	var log strings.Builder
	for line := range d.logs {
		log.WriteString(line + "\n")
	}
	if strings.Contains(log.String(), "new database configured") {
		t.Fatalf("bootstrap applied again on restart:\n%s", log.String())
	}
}
