package session_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// TestCustomerContinuityAcrossChannels follows a signed-in customer from
// the web portal to the mobile app: both devices are subscribed at once,
// the open conversation is resumed from mobile instead of duplicated, each
// event records the channel it came from, and the customer's conversation
// list spans channels.
func TestCustomerContinuityAcrossChannels(t *testing.T) {
	srv := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	jwt := srv.CustomerToken(t, "cust-42", "Grace Hopper", "grace@example.com")
	web := srv.Client(parley.Connect, jwt)
	mobile := srv.Client(parley.GRPC, jwt)

	started, err := web.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "billing", FirstMessage: "My invoice is wrong.", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	if err != nil {
		t.Fatal(err)
	}
	conv := started.GetConversation()
	if started.GetResumed() || conv.GetConsumerId() == "" || conv.GetInteraction().GetName() != "Grace Hopper" {
		t.Fatalf("started %v", started)
	}

	// Both devices follow the conversation.
	webStream, err := web.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: conv.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	defer webStream.Close()
	mobileStream, err := mobile.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: conv.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	defer mobileStream.Close()

	// From the app, the customer asks again: the open chat is resumed.
	resumed, err := mobile.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "billing", FirstMessage: "Any news? (from my phone)", Channel: parleyv1.Channel_CHANNEL_MOBILE,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.GetResumed() || resumed.GetConversation().GetId() != conv.GetId() {
		t.Fatalf("from mobile: %v, want the open conversation resumed", resumed)
	}
	sent, err := mobile.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: conv.GetId(), ClientMessageId: "m-2", Text: "Order 7", Channel: parleyv1.Channel_CHANNEL_MOBILE,
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every device gets every event, with the channel it came from.
	want := map[string]parleyv1.Channel{
		"My invoice is wrong.":      parleyv1.Channel_CHANNEL_WEB_PORTAL,
		"Any news? (from my phone)": parleyv1.Channel_CHANNEL_MOBILE,
		"Order 7":                   parleyv1.Channel_CHANNEL_MOBILE,
	}
	for name, stream := range map[string]interface {
		Receive() (*parleyv1.SubscribeResponse, error)
	}{"web": webStream, "mobile": mobileStream} {
		seen := map[string]parleyv1.Channel{}
		for {
			item, err := stream.Receive()
			if err != nil {
				t.Fatalf("%s stream: %v", name, err)
			}
			e := item.GetEvent()
			if m := e.GetMessagePosted(); m != nil {
				seen[m.GetText()] = e.GetChannel()
				if e.GetSender().GetRole() != parleyv1.ParticipantRole_PARTICIPANT_ROLE_CUSTOMER || e.GetSender().GetId() != conv.GetConsumerId() {
					t.Fatalf("%s: message sender %v", name, e.GetSender())
				}
			}
			if e.GetSeq() == sent.GetEvent().GetSeq() {
				break
			}
		}
		for text, ch := range want {
			if seen[text] != ch {
				t.Fatalf("%s stream: %q came with channel %v, want %v", name, text, seen[text], ch)
			}
		}
	}

	// Close it; the next chat, from the messenger, is a new conversation,
	// and the list spans both channels, newest first.
	if _, err := mobile.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: conv.GetId()}); err != nil {
		t.Fatal(err)
	}
	next, err := web.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "order", Channel: parleyv1.Channel_CHANNEL_MESSENGER,
	})
	if err != nil {
		t.Fatal(err)
	}
	if next.GetResumed() || next.GetConversation().GetId() == conv.GetId() {
		t.Fatalf("after close: %v, want a new conversation", next)
	}
	list, err := mobile.Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	page2, err := mobile.Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{PageSize: 1, PageToken: list.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	got := append(list.GetConversations(), page2.GetConversations()...)
	if len(got) != 2 || got[0].GetId() != next.GetConversation().GetId() || got[1].GetId() != conv.GetId() || page2.GetNextPageToken() != "" {
		t.Fatalf("ListMyConversations = %v then %v", list, page2)
	}
	if got[0].GetInteraction().GetChannel() != parleyv1.Channel_CHANNEL_MESSENGER || got[1].GetInteraction().GetChannel() != parleyv1.Channel_CHANNEL_WEB_PORTAL {
		t.Fatalf("channels: %v, %v", got[0].GetInteraction().GetChannel(), got[1].GetInteraction().GetChannel())
	}

	// Another customer sees none of it.
	other := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-43", "Alan", "alan@example.com"))
	_, err = other.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: conv.GetId()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("another customer reading: %v", err)
	}
	mine, err := other.Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{})
	if err != nil || len(mine.GetConversations()) != 0 {
		t.Fatalf("another customer's list: %v, %v", mine, err)
	}
}

func TestCustomerTokensMustVerify(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	good := srv.CustomerToken(t, "cust-1", "Ada", "ada@example.com")
	tampered := good[:len(good)-4] + "AAAA"
	for name, token := range map[string]string{
		"bad signature": tampered,
		"alg none":      "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL3BvcnRhbC5leGFtcGxlLmNvbSIsImF1ZCI6InBhcmxleSIsInN1YiI6ImN1c3QtMSIsImV4cCI6NDEwMjQ0NDgwMH0.",
	} {
		_, err := srv.Client(parley.Connect, token).Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{})
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := srv.Client(parley.Connect, good).Session.ListMyConversations(ctx, &parleyv1.ListMyConversationsRequest{}); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	// A customer is not a guest: the guest-only and staff RPCs refuse them.
	_, err := srv.Client(parley.Connect, good).Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("customer listing queues: %v", err)
	}
}

// TestCustomersKeysDoNotCollide: two signed-in customers who happen to
// send the same request_id each start their own conversation, and each
// one's retry returns their own.
func TestCustomersKeysDoNotCollide(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	requestID := uuid.NewString()
	start := func(c *parley.Client) *parleyv1.Conversation {
		t.Helper()
		resp, err := c.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
			RequestId: requestID, IssueType: "billing", FirstMessage: "Hello.", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetConversation()
	}
	grace := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-1", "Grace Hopper", "grace@example.com"))
	alan := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-2", "Alan Turing", "alan@example.com"))
	graces, alans := start(grace), start(alan)
	if graces.GetId() == alans.GetId() || graces.GetConsumerId() == alans.GetConsumerId() {
		t.Fatalf("two customers with one request_id share a conversation: %v and %v", graces, alans)
	}
	if again := start(grace); again.GetId() != graces.GetId() {
		t.Fatalf("Grace's retry got %s, want %s", again.GetId(), graces.GetId())
	}
	if again := start(alan); again.GetId() != alans.GetId() {
		t.Fatalf("Alan's retry got %s, want %s", again.GetId(), alans.GetId())
	}
}

// TestRequestIDOfAnotherMessageIsRefused: StartCustomerChat (resuming a
// chat) and LeaveMessage post the customer's message under its request
// id, in the same key space as SendMessage's client_message_id; an id that
// already names another message of theirs there is refused with
// AlreadyExists, not an internal error.
func TestRequestIDOfAnotherMessageIsRefused(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	ada := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-ada", "Ada", "ada@example.com"))
	first := uuid.NewString()
	started, err := ada.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: first, IssueType: "order", FirstMessage: "Hello.", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	if err != nil {
		t.Fatal(err)
	}
	convID := started.GetConversation().GetId()
	sent := uuid.NewString()
	if _, err := ada.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: sent, Text: "Anyone?"}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{first, sent} {
		_, err := ada.Session.LeaveMessage(ctx, &parleyv1.LeaveMessageRequest{ConversationId: convID, RequestId: key, Text: "Call me back."})
		if connect.CodeOf(err) != connect.CodeAlreadyExists || apierr.Reason(err) != "REQUEST_ID_REUSED" {
			t.Fatalf("LeaveMessage with the key of another message: %v (reason %q), want AlreadyExists REQUEST_ID_REUSED", err, apierr.Reason(err))
		}
	}
	// Resuming the open chat from another channel with a used key.
	_, err = ada.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: sent, IssueType: "order", FirstMessage: "Me again.", Channel: parleyv1.Channel_CHANNEL_MOBILE,
	})
	if connect.CodeOf(err) != connect.CodeAlreadyExists || apierr.Reason(err) != "REQUEST_ID_REUSED" {
		t.Fatalf("StartCustomerChat resuming with the key of another message: %v, want AlreadyExists REQUEST_ID_REUSED", err)
	}
	if _, err := ada.Session.LeaveMessage(ctx, &parleyv1.LeaveMessageRequest{ConversationId: convID, RequestId: uuid.NewString(), Text: "Call me back."}); err != nil {
		t.Fatalf("LeaveMessage with a new key: %v", err)
	}
}
