package messaging_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
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

// startChat starts a guest chat and returns the guest's client and the
// conversation id.
func startChat(t *testing.T, srv *servertest.Server) (*parley.Client, string) {
	t.Helper()
	token, convID := startGuest(t, srv)
	return srv.Client(parley.Connect, token), convID
}

// startGuest starts a guest chat and returns the guest token and the
// conversation id.
func startGuest(t testing.TB, srv *servertest.Server) (string, string) {
	t.Helper()
	resp, err := srv.Client(parley.Connect, "").Session.StartGuestChat(context.Background(), &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "product",
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetGuestToken(), resp.GetConversation().GetId()
}

func countEvents(t *testing.T, srv *servertest.Server) int {
	t.Helper()
	n, err := srv.DB.Event.Query().Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSendRejectsBadInput(t *testing.T) {
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{MaxRequestBytes: 2048}))
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	before := countEvents(t, srv)
	tests := []struct {
		name    string
		req     *parleyv1.SendMessageRequest
		code    connect.Code
		message string
	}{
		{"request over the size limit", &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1", Text: strings.Repeat("é", 1100)},
			connect.CodeResourceExhausted, "larger than configured max"},
		{"empty text", &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1"},
			connect.CodeInvalidArgument, "a message needs text or at least one attachment"},
		{"missing client message id", &parleyv1.SendMessageRequest{ConversationId: convID, Text: "hi"},
			connect.CodeInvalidArgument, "client_message_id: must be at least 1 characters"},
		{"another conversation", &parleyv1.SendMessageRequest{ConversationId: uuid.NewString(), ClientMessageId: "m1", Text: "hi"},
			connect.CodePermissionDenied, "you have no access to conversation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := guest.Messaging.SendMessage(ctx, tt.req)
			if connect.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("got %v, want %v containing %q", err, tt.code, tt.message)
			}
		})
	}
	if after := countEvents(t, srv); after != before {
		t.Fatalf("rejected sends stored %d events", after-before)
	}
}

func TestMessageLengthLimit(t *testing.T) {
	srv := servertest.Start(t)
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	before := countEvents(t, srv)
	_, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1", Text: strings.Repeat("x", 4001)})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "text: must be at most 4000 characters") {
		t.Fatalf("got %v", err)
	}
	// 4000 characters, multi-byte ones included, are fine.
	if _, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m2", Text: strings.Repeat("é", 4000)}); err != nil {
		t.Fatal(err)
	}
	if after := countEvents(t, srv); after != before+1 {
		t.Fatalf("stored %d events, want 1", after-before)
	}
}

func TestSubscribeCursorBeyondLog(t *testing.T) {
	srv := servertest.Start(t)
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	conv, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	last := conv.GetConversation().GetLastSeq()
	stream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: last + 1})
	if err == nil {
		_, err = stream.Receive()
	}
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("after_seq beyond the log: %v", err)
	}
	// From the last seq, the stream is open and waits for what comes next.
	stream, err = guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: last})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1", Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := stream.Receive()
	for err == nil && got.GetQueuePosition() != nil { // the chat waits: its place comes first
		got, err = stream.Receive()
	}
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEvent().GetSeq() != last+1 || got.GetEvent().GetSeq() != sent.GetEvent().GetSeq() {
		t.Fatalf("got seq %d, want %d", got.GetEvent().GetSeq(), last+1)
	}
	stream.Close()
}

func TestClosedConversationRefusesMessages(t *testing.T) {
	srv := servertest.Start(t)
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	if _, err := guest.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID, Reason: "never mind"}); err != nil {
		t.Fatal(err)
	}
	// The guest's token died with the conversation.
	_, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1", Text: "hi"})
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("guest after close: %v", err)
	}
	// The admin still reads the log; it ends with the close.
	evs, err := srv.Client(parley.Connect, servertest.AdminToken).Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	if last := evs.GetEvents()[len(evs.GetEvents())-1]; last.GetConversationClosed().GetReason() != "never mind" {
		t.Fatalf("last event %v", last)
	}
}

// TestIdleStreamsSendHeartbeats: an idle stream sends a heartbeat each
// time the heartbeat interval passes on the server's clock (a fake one,
// advanced by the test), and only then.
func TestIdleStreamsSendHeartbeats(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)))
	guest, convID := startChat(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conv, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: conv.GetConversation().GetLastSeq()})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	// The chat waits: its place comes first. The stream armed its
	// heartbeat before it sent anything.
	if got, err := stream.Receive(); err != nil || got.GetQueuePosition() == nil {
		t.Fatalf("first item %v, %v; want the queue position", got, err)
	}
	for i := range 2 {
		srv.Clock.Advance(app.DefaultHeartbeat)
		got, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if !got.GetHeartbeat().GetSendTime().AsTime().Equal(srv.Clock.Now()) {
			t.Fatalf("item %d of an idle stream is %v, want a heartbeat sent at %v", i, got, srv.Clock.Now())
		}
	}
	// Heartbeats carry no seq and do not disturb the log: the next event
	// is the next seq.
	sent, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1", Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		got, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if e := got.GetEvent(); e != nil {
			if e.GetSeq() != sent.GetEvent().GetSeq() || e.GetSeq() != conv.GetConversation().GetLastSeq()+1 {
				t.Fatalf("event seq %d, want %d", e.GetSeq(), sent.GetEvent().GetSeq())
			}
			break
		}
	}

	// An agent's idle work stream beats too, once it armed its lifetime
	// and its heartbeat.
	armed := srv.Clock.Armed()
	work, err := srv.Client(parley.GRPC, servertest.AbelToken).Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close()
	if err := srv.Clock.WaitArmed(ctx, armed+2); err != nil {
		t.Fatal(err)
	}
	srv.Clock.Advance(app.DefaultHeartbeat)
	got, err := work.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetHeartbeat().GetSendTime() == nil {
		t.Fatalf("idle work stream sent %v, want a heartbeat", got)
	}
}

// TestGuestStreamsEndWithTheClose: a guest's token dies with its chat, and
// the revocation may reach a guest's open stream before the shared tail
// has read the close; the stream still ends with the closing event, never
// with Unauthenticated. Many chats close at once to give the race room.
func TestGuestStreamsEndWithTheClose(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	const chats = 12
	type chat struct {
		guest  *parley.Client
		id     string
		stream parleyv1connect.MessagingServiceSubscribeClientStream
	}
	all := make([]chat, chats)
	for i := range all {
		guest, id := startChat(t, srv)
		stream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stream.Close() })
		all[i] = chat{guest, id, stream}
	}
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() {
			if _, err := c.guest.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: c.id}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, c := range all {
		var last *parleyv1.Event
		var err error
		for {
			var item *parleyv1.SubscribeResponse
			if item, err = c.stream.Receive(); err != nil {
				break
			}
			if ev := item.GetEvent(); ev != nil {
				last = ev
			}
		}
		if !errors.Is(err, io.EOF) {
			t.Errorf("chat %s: the stream ended with %v instead of the closing event", c.id, err)
			continue
		}
		if last.GetConversationClosed() == nil {
			t.Errorf("chat %s: the stream ended after %v, not the closing event", c.id, last)
		}
	}
}
