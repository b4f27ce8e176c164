package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// stalledBacklog is how many 4000-character messages a stalled reader's
// Subscribe replays: about 400 KB, far beyond its 64 KiB window.
const stalledBacklog = 100

// stalledSubscriber starts a chat with a backlog, subscribes to it with a
// client whose HTTP/2 window is 64 KiB, reads one event and stops reading,
// so the server's handler blocks in a write. It returns the stream (for the
// test to read the rest later) once the handler is open.
func stalledSubscriber(ctx context.Context, t *testing.T, srv *servertest.Server) parleyv1connect.MessagingServiceSubscribeClientStream {
	t.Helper()
	started, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "product", FirstMessage: "hello",
	})
	must(t, err)
	token, convID := started.GetGuestToken(), started.GetConversation().GetId()
	sendBacklog(ctx, t, srv.Client(parley.Connect, token), convID, stalledBacklog)
	stream := slowSubscription(ctx, t, srv, token, convID)
	if n := srv.App.OpenStreams(); n != 1 {
		t.Fatalf("%d streams open, want the stalled one", n)
	}
	return stream
}

// sendBacklog has sender post n messages of 4,000 characters of random text
// to convID (random, so that compression does not shrink the backlog).
func sendBacklog(ctx context.Context, t *testing.T, sender *parley.Client, convID string, n int) {
	t.Helper()
	for i := range n {
		text := base64.StdEncoding.EncodeToString(randomBytes(t, 3000))
		_, err := sender.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: fmt.Sprint(i), Text: text})
		must(t, err)
	}
}

// slowSubscription subscribes to convID as token with a 64 KiB HTTP/2
// window (slowReader) and reads up to the first event.
func slowSubscription(ctx context.Context, t *testing.T, srv *servertest.Server, token, convID string) parleyv1connect.MessagingServiceSubscribeClientStream {
	t.Helper()
	stream, err := slowReader(srv, token).Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	must(t, err)
	for {
		resp, err := stream.Receive()
		must(t, err)
		if resp.GetEvent() != nil {
			return stream
		}
	}
}

// cutShort reads what the stalled stream still delivers and fails unless
// it ended with an error before the whole backlog.
func cutShort(t *testing.T, stream parleyv1connect.MessagingServiceSubscribeClientStream) {
	t.Helper()
	events := 1
	for {
		resp, err := stream.Receive()
		if err != nil {
			t.Logf("the stalled reader got %d events, then %v", events, err)
			break
		}
		if resp.GetEvent() != nil {
			events++
		}
	}
	if events >= stalledBacklog {
		t.Fatalf("the stalled reader got all %d events: its stream was not cut", events)
	}
}

// waitNoStreams waits until no stream handler runs, and fails after within.
func waitNoStreams(t *testing.T, srv *servertest.Server, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for srv.App.OpenStreams() != 0 {
		if time.Since(start) > within {
			t.Fatalf("the stalled stream's handler still runs after %s", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestStalledReaderEndsAtWriteDeadline: a Subscribe whose client stops
// reading (its HTTP/2 window full) ends within the write timeout, though
// its heartbeat and lifetime are far off; the reader gets what was on its
// way, then an error, never the whole backlog.
func TestStalledReaderEndsAtWriteDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{WriteTimeout: timeout, Heartbeat: time.Hour, SendRate: 1e6, SendBurst: 1e6}))
	ctx := t.Context()
	stream := stalledSubscriber(ctx, t, srv)
	took := waitNoStreams(t, srv, 20*timeout)
	t.Logf("the stalled handler returned after %s", took)
	cutShort(t, stream)
}

// TestDrainEndsStalledStreams: SIGTERM's path (App.Shutdown, as parleyd
// runs it) finishes well within its deadline though a client stopped
// reading a stream whose write timeout is far off.
func TestDrainEndsStalledStreams(t *testing.T) {
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{WriteTimeout: time.Hour, Heartbeat: time.Hour, SendRate: 1e6, SendBurst: 1e6}))
	stream := stalledSubscriber(t.Context(), t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stalled reader: %v after %s", err, time.Since(start))
	}
	took := time.Since(start)
	t.Logf("shutdown took %s", took)
	if took > 5*time.Second {
		t.Fatalf("shutdown took %s with a stalled reader", took)
	}
	if n := srv.App.OpenStreams(); n != 0 {
		t.Fatalf("%d streams still open after shutdown", n)
	}
	cutShort(t, stream)
}

// TestStreamsPerCallerAreBounded: a caller's stream beyond the limit is
// refused with ResourceExhausted (TOO_MANY_STREAMS) and a message saying
// what to do; other callers are not affected; once one of the caller's
// streams ends, however it ends, the caller may open another.
func TestStreamsPerCallerAreBounded(t *testing.T) {
	const limit = 3
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{MaxStreamsPerCaller: limit}))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "product")
	open := func(ctx context.Context, c *parley.Client) (parleyv1connect.MessagingServiceSubscribeClientStream, error) {
		stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
		if err == nil {
			_, err = stream.Receive()
		}
		return stream, err
	}
	cancels := make([]context.CancelFunc, limit)
	for i := range limit {
		var streamCtx context.Context
		streamCtx, cancels[i] = context.WithCancel(ctx)
		defer cancels[i]()
		_, err := open(streamCtx, guest)
		must(t, err)
	}
	_, err := open(ctx, guest)
	wantReason(t, "a stream beyond the limit", err, connect.CodeResourceExhausted, "TOO_MANY_STREAMS")
	if !strings.Contains(err.Error(), "close one") {
		t.Fatalf("the refusal %q does not say what to do", err)
	}
	// The limit is the caller's, not the conversation's: an admin reading
	// it is another caller.
	admin, err := open(ctx, srv.Client(parley.GRPC, servertest.AdminToken))
	must(t, err)
	admin.Close()

	cancels[0]()
	deadline := time.Now().Add(waitTimeout)
	for srv.App.OpenStreams() != limit-1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open after one was closed, want %d", srv.App.OpenStreams(), limit-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	again, err := open(ctx, guest)
	if err != nil {
		t.Fatalf("a stream after one of the caller's ended: %v", err)
	}
	again.Close()
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
