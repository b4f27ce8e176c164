package messaging_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// nextItem returns the stream's next item that is not a heartbeat.
func nextItem(t *testing.T, stream interface {
	Receive() (*parleyv1.SubscribeResponse, error)
}) *parleyv1.SubscribeResponse {
	t.Helper()
	for {
		item, err := stream.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if item.GetHeartbeat() == nil {
			return item
		}
	}
}

func TestTypingReachesOthersOnlyAndIsNotStored(t *testing.T) {
	srv := servertest.Start(t)
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last := allEvents(t, guest, convID)
	head := last[len(last)-1].GetSeq()
	guestStream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: head})
	if err != nil {
		t.Fatal(err)
	}
	defer guestStream.Close()
	fredStream, err := fred.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: head})
	if err != nil {
		t.Fatal(err)
	}
	defer fredStream.Close()
	before := countEvents(t, srv)

	if _, err := guest.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: convID, Typing: true}); err != nil {
		t.Fatal(err)
	}
	typing := nextItem(t, fredStream).GetTyping()
	if !typing.GetTyping() || typing.GetParticipant().GetRole() != parleyv1.ParticipantRole_PARTICIPANT_ROLE_GUEST || typing.GetExpireTime() == nil {
		t.Fatalf("Fred got %v, want the guest typing", typing)
	}
	if _, err := fred.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: convID, Typing: true}); err != nil {
		t.Fatal(err)
	}
	if got := nextItem(t, guestStream).GetTyping(); got.GetParticipant().GetRole() != parleyv1.ParticipantRole_PARTICIPANT_ROLE_AGENT {
		t.Fatalf("guest got %v, want Fred typing", got)
	}
	// Fred does not hear his own typing: his next item is the guest's message.
	sent, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "m1", Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if got := nextItem(t, fredStream); got.GetEvent().GetSeq() != sent.GetEvent().GetSeq() {
		t.Fatalf("Fred's next item is %v, want the message", got)
	}
	if after := countEvents(t, srv); after != before+1 {
		t.Fatalf("typing stored %d events", after-before-1)
	}
	// Nobody types into a closed conversation.
	if _, err := fred.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID}); err != nil {
		t.Fatal(err)
	}
	_, err = fred.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: convID, Typing: true})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("typing after close: %v", err)
	}
}

func TestReadCursorsArePersistedAndShared(t *testing.T) {
	srv := servertest.Start(t)
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent, err := fred.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "f1", Text: "How can I help?"})
	if err != nil {
		t.Fatal(err)
	}
	seq := sent.GetEvent().GetSeq()
	fredStream, err := fred.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: seq})
	if err != nil {
		t.Fatal(err)
	}
	defer fredStream.Close()

	// Delivered first, then read; Fred sees both moves.
	delivered, err := guest.Messaging.MarkDelivered(ctx, &parleyv1.MarkDeliveredRequest{ConversationId: convID, RequestId: uuid.NewString(), DeliveredSeq: seq})
	if err != nil {
		t.Fatal(err)
	}
	if c := delivered.GetReadCursor(); c.GetDeliveredSeq() != seq || c.GetReadSeq() != 0 {
		t.Fatalf("after MarkDelivered: %v", c)
	}
	if c := nextItem(t, fredStream).GetReadCursor(); c.GetDeliveredSeq() != seq || c.GetParticipant().GetRole() != parleyv1.ParticipantRole_PARTICIPANT_ROLE_GUEST {
		t.Fatalf("Fred saw %v", c)
	}
	markRead := &parleyv1.MarkReadRequest{ConversationId: convID, RequestId: uuid.NewString(), ReadSeq: seq}
	read, err := guest.Messaging.MarkRead(ctx, markRead)
	if err != nil {
		t.Fatal(err)
	}
	// A cursor that moved while Fred's stream opened may reach him twice
	// (as the stored cursor and as the live notice); cursors only move
	// forward, so the repeat is harmless.
	c := nextItem(t, fredStream).GetReadCursor()
	for c.GetReadSeq() == 0 && c.GetDeliveredSeq() == seq {
		c = nextItem(t, fredStream).GetReadCursor()
	}
	if c.GetReadSeq() != seq {
		t.Fatalf("Fred saw %v", c)
	}

	// A retry returns the first response; the same key with another seq is refused.
	again, err := guest.Messaging.MarkRead(ctx, markRead)
	if err != nil || !proto.Equal(again, read) {
		t.Fatalf("retry = %v, %v; want %v", again, err, read)
	}
	reused := proto.CloneOf(markRead)
	reused.ReadSeq = seq - 1
	if _, err := guest.Messaging.MarkRead(ctx, reused); connect.CodeOf(err) != connect.CodeAlreadyExists || apierr.Reason(err) != "REQUEST_ID_REUSED" {
		t.Fatalf("same key, other seq: %v", err)
	}
	// Cursors never move back.
	back, err := guest.Messaging.MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: convID, RequestId: uuid.NewString(), ReadSeq: 1})
	if err != nil || back.GetReadCursor().GetReadSeq() != seq {
		t.Fatalf("marking an older seq: %v, %v", back, err)
	}
	// Nothing beyond the log.
	_, err = guest.Messaging.MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: convID, RequestId: uuid.NewString(), ReadSeq: seq + 100})
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("read beyond the log: %v", err)
	}
	// Admins read conversations but do not take part in them.
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	_, err = admin.Messaging.MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: convID, RequestId: uuid.NewString(), ReadSeq: 1})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("admin marking read: %v", err)
	}

	// The cursor is in the store: a new subscription starts with it, and
	// the list shows it.
	late, err := fred.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: seq})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if c := nextItem(t, late).GetReadCursor(); c.GetReadSeq() != seq || c.GetDeliveredSeq() != seq {
		t.Fatalf("a new subscription starts with %v", c)
	}
	list, err := admin.Messaging.ListReadCursors(ctx, &parleyv1.ListReadCursorsRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetReadCursors()) != 1 || list.GetReadCursors()[0].GetReadSeq() != seq {
		t.Fatalf("ListReadCursors = %v", list)
	}
}
