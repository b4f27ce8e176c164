package app_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
	"google.golang.org/protobuf/proto"
)

// waitTimeout bounds every wait for a streamed item; the flow itself takes
// milliseconds.
const waitTimeout = 10 * time.Second

// TestAnonymousChatFlow drives the whole anonymous-chat flow (issue 2,
// steps 1-9) through the generated clients, once per protocol, with the
// guest, two agents and an admin as separate principals.
func TestAnonymousChatFlow(t *testing.T) {
	for _, protocol := range []parley.Protocol{parley.Connect, parley.GRPC} {
		t.Run(protocol.String(), func(t *testing.T) {
			runFlow(t, protocol)
		})
	}
}

func runFlow(t *testing.T, protocol parley.Protocol) {
	srv := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := srv.Client(protocol, servertest.AdminToken)
	beth := srv.Client(protocol, servertest.BethToken)
	fred := srv.Client(protocol, servertest.FredToken)
	anon := srv.Client(protocol, "")

	// 1. Configuration from the bootstrap file, read back by the admin.
	queues := map[string]string{}
	qs, err := admin.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	must(t, err)
	for _, q := range qs.GetQueues() {
		queues[q.GetDisplayName()] = q.GetId()
	}
	for _, name := range []string{"Billing Support", "Order Support", "Product Support"} {
		if queues[name] == "" {
			t.Fatalf("queue %q missing; have %v", name, queues)
		}
	}
	rules, err := admin.Routing.ListMatchingRules(ctx, &parleyv1.ListMatchingRulesRequest{})
	must(t, err)
	if got := len(rules.GetRules()); got != 3 {
		t.Fatalf("got %d matching rules, want 3", got)
	}
	if r := rules.GetRules()[0]; r.GetDisplayName() != "Anonymous Connect - Billing Support" || r.GetQueueId() != queues["Billing Support"] {
		t.Fatalf("first rule = %v", r)
	}
	agents := map[string]string{}
	as, err := admin.Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
	must(t, err)
	for _, a := range as.GetAgents() {
		agents[a.GetDisplayName()] = a.GetId()
	}
	bethID, fredID := agents["Beth Anglin"], agents["Fred Luddy"]
	if bethID == "" || fredID == "" {
		t.Fatalf("demo agents missing: %v", agents)
	}

	// Fred is available and watching; Beth is watching but away.
	fredWork := watchWork(ctx, t, fred)
	bethWork := watchWork(ctx, t, beth)
	setPresence(ctx, t, fred, parleyv1.Presence_PRESENCE_AVAILABLE)

	// 2. The guest fills in the pre-chat form.
	form, err := anon.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
	must(t, err)
	if len(form.GetIssueTypes()) != 3 || form.GetIssueTypes()[0].GetValue() != "billing" {
		t.Fatalf("pre-chat form issue types = %v", form.GetIssueTypes())
	}
	started, err := anon.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId:    uuid.NewString(),
		Name:         "Ada Lovelace",
		Email:        "ada@example.com",
		IssueType:    "billing",
		FirstMessage: "I was charged twice for my order.",
		Channel:      parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	must(t, err)
	conv := started.GetConversation()
	convID := conv.GetId()
	if started.GetGuestToken() == "" {
		t.Fatal("no guest token")
	}
	in := conv.GetInteraction()
	if in.GetName() != "Ada Lovelace" || in.GetEmail() != "ada@example.com" || in.GetIssueType() != "billing" ||
		in.GetChannel() != parleyv1.Channel_CHANNEL_WEB_PORTAL || in.GetFirstMessage() != "I was charged twice for my order." {
		t.Fatalf("interaction = %v", in)
	}
	guest := srv.Client(protocol, started.GetGuestToken())

	// 4. The matching rule put it in Billing Support.
	if conv.GetQueueId() != queues["Billing Support"] {
		t.Fatalf("queue = %s, want Billing Support %s", conv.GetQueueId(), queues["Billing Support"])
	}

	// 6 (first half). The guest subscribes from the start of the log.
	guestEvents := subscribe(ctx, t, guest, convID, 0)
	first := guestEvents.next(t, func(e *parleyv1.Event) bool { return e.GetMessagePosted() != nil })
	if first.GetMessagePosted().GetText() != "I was charged twice for my order." || first.GetSender().GetRole() != parleyv1.ParticipantRole_PARTICIPANT_ROLE_GUEST {
		t.Fatalf("first message = %v", first)
	}

	// 5. Fred, the only available agent, gets the offer with the context,
	// and declines it; Beth becomes available and gets it, and accepts.
	offer := fredWork.nextOffer(t)
	if offer.GetConversation().GetId() != convID {
		t.Fatalf("offer for %s, want %s", offer.GetConversation().GetId(), convID)
	}
	if oi := offer.GetConversation().GetInteraction(); oi.GetName() != "Ada Lovelace" || oi.GetIssueType() != "billing" {
		t.Fatalf("offer lacks the interaction context: %v", oi)
	}
	if offer.GetSummary() == "" || offer.GetExpireTime() == nil {
		t.Fatalf("offer lacks summary or expiry: %v", offer)
	}
	setPresence(ctx, t, beth, parleyv1.Presence_PRESENCE_AVAILABLE)
	_, err = fred.Routing.DeclineOffer(ctx, &parleyv1.DeclineOfferRequest{OfferId: offer.GetId(), Reason: "on a call"})
	must(t, err)
	// A retried decline is a no-op; accepting a declined offer is refused.
	_, err = fred.Routing.DeclineOffer(ctx, &parleyv1.DeclineOfferRequest{OfferId: offer.GetId(), Reason: "on a call"})
	must(t, err)
	_, err = fred.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	wantCode(t, err, connect.CodeFailedPrecondition)
	offer = bethWork.nextOffer(t)
	if offer.GetConversation().GetId() != convID {
		t.Fatalf("Beth's offer is for %s", offer.GetConversation().GetId())
	}
	accepted, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	if accepted.GetConversation().GetState() != parleyv1.ConversationState_CONVERSATION_STATE_ASSIGNED || accepted.GetConversation().GetAgentId() != bethID {
		t.Fatalf("after accept: %v", accepted.GetConversation())
	}
	// A retried accept (the answer was lost) returns the conversation again.
	again, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	if again.GetConversation().GetAgentId() != bethID {
		t.Fatalf("retried accept: %v", again.GetConversation())
	}
	joined := guestEvents.next(t, func(e *parleyv1.Event) bool {
		return e.GetParticipantJoined() != nil && e.GetSender().GetId() == bethID
	})
	if joined.GetParticipantJoined().GetParticipant().GetDisplayName() != "Beth Anglin" {
		t.Fatalf("join event = %v", joined)
	}

	// 6. Messages both ways; a retried send is one message.
	bethEvents := subscribe(ctx, t, beth, convID, 0)
	reply, err := beth.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "b-1", Text: "Sorry about that! Let me check."})
	must(t, err)
	got := guestEvents.next(t, func(e *parleyv1.Event) bool { return e.GetMessagePosted() != nil && e.GetSender().GetId() == bethID })
	if got.GetSeq() != reply.GetEvent().GetSeq() || got.GetMessagePosted().GetText() != "Sorry about that! Let me check." {
		t.Fatalf("guest got %v, want %v", got, reply.GetEvent())
	}
	send := &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "g-1", Text: "Order 1042, thanks."}
	sent1, err := guest.Messaging.SendMessage(ctx, send)
	must(t, err)
	sent2, err := guest.Messaging.SendMessage(ctx, send)
	must(t, err)
	if sent1.GetEvent().GetSeq() != sent2.GetEvent().GetSeq() || sent1.GetEvent().GetSeq() != reply.GetEvent().GetSeq()+1 {
		t.Fatalf("retried send: seqs %d and %d, want both %d", sent1.GetEvent().GetSeq(), sent2.GetEvent().GetSeq(), reply.GetEvent().GetSeq()+1)
	}
	// Beth gets the message without the guest's idempotency key, which
	// only the guest sees.
	if e := bethEvents.next(t, func(e *parleyv1.Event) bool { return e.GetMessagePosted().GetText() == send.GetText() }); e.GetSeq() != sent1.GetEvent().GetSeq() || e.GetMessagePosted().GetClientMessageId() != "" {
		t.Fatalf("Beth got %v", e)
	}

	// 7. Beth creates a case, then a consumer and a case, for the guest.
	caseResp, err := beth.Cases.CreateCaseForGuest(ctx, &parleyv1.CreateCaseForGuestRequest{ConversationId: convID, RequestId: uuid.NewString(), ShortDescription: "Double charge on order 1042"})
	must(t, err)
	if c := caseResp.GetCase(); c.GetNumber() == "" || c.GetConversationId() != convID || c.GetOpenedByAgentId() != bethID || c.GetConsumerId() != "" {
		t.Fatalf("case = %v", c)
	}
	both, err := beth.Cases.CreateConsumerAndCaseForGuest(ctx, &parleyv1.CreateConsumerAndCaseForGuestRequest{ConversationId: convID, RequestId: uuid.NewString()})
	must(t, err)
	if both.GetConsumer().GetDisplayName() != "Ada Lovelace" || both.GetConsumer().GetEmail() != "ada@example.com" || both.GetCase().GetConsumerId() != both.GetConsumer().GetId() {
		t.Fatalf("consumer and case = %v", both)
	}
	if both.GetCase().GetNumber() == caseResp.GetCase().GetNumber() {
		t.Fatalf("two cases share number %s", both.GetCase().GetNumber())
	}
	gotCase, err := beth.Cases.GetCase(ctx, &parleyv1.GetCaseRequest{CaseId: both.GetCase().GetId()})
	must(t, err)
	if !hasMessage(gotCase.GetTranscript(), "Order 1042, thanks.") || !hasMessage(gotCase.GetTranscript(), "I was charged twice for my order.") {
		t.Fatalf("case transcript lacks the conversation's messages: %v", gotCase.GetTranscript())
	}
	guestEvents.next(t, func(e *parleyv1.Event) bool { return e.GetCaseLinked().GetCaseId() == both.GetCase().GetId() })

	// 8a. Beth transfers to Fred, who gets an offer and must accept; he
	// then sees the full history.
	transfer := &parleyv1.TransferConversationRequest{
		ConversationId: convID, RequestId: uuid.NewString(),
		Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: fredID}, Note: "needs a refund approval",
	}
	tr, err := beth.Routing.TransferConversation(ctx, transfer)
	must(t, err)
	if tr.GetConversation().GetAgentId() != bethID {
		t.Fatal("ownership moved before the transfer was accepted")
	}
	// A retry (the response was lost) returns the same offer; the same key
	// for another transfer is refused.
	retried, err := beth.Routing.TransferConversation(ctx, transfer)
	must(t, err)
	if !proto.Equal(retried, tr) {
		t.Fatalf("retried transfer = %v, want %v", retried, tr)
	}
	changed := proto.CloneOf(transfer)
	changed.Note = "something else"
	_, err = beth.Routing.TransferConversation(ctx, changed)
	wantCode(t, err, connect.CodeAlreadyExists)
	offer = fredWork.nextOffer(t)
	if offer.GetId() != tr.GetOfferId() || offer.GetTransferNote() != "needs a refund approval" || offer.GetTransferredBy().GetId() != bethID {
		t.Fatalf("transfer offer = %v", offer)
	}
	accepted, err = fred.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	if accepted.GetConversation().GetAgentId() != fredID {
		t.Fatalf("after transfer accept, agent = %s", accepted.GetConversation().GetAgentId())
	}
	bethWork.next(t, func(r *parleyv1.WatchWorkResponse) bool { return r.GetReleased().GetId() == convID })
	// Beth stops receiving the conversation; she may still read its history.
	bethEvents.endsWith(t, connect.CodePermissionDenied)
	history, err := fred.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID})
	must(t, err)
	if !hasMessage(history.GetEvents(), "Sorry about that! Let me check.") || !hasMessage(history.GetEvents(), "I was charged twice for my order.") {
		t.Fatal("Fred does not see the history from before the transfer")
	}
	_, err = beth.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "b-2", Text: "still here?"})
	wantCode(t, err, connect.CodePermissionDenied)

	// 8b. Fred transfers to Order Support; Beth (in that queue) gets it.
	tr, err = fred.Routing.TransferConversation(ctx, &parleyv1.TransferConversationRequest{
		ConversationId: convID, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_QueueId{QueueId: queues["Order Support"]}, Note: "order question",
	})
	must(t, err)
	if c := tr.GetConversation(); c.GetState() != parleyv1.ConversationState_CONVERSATION_STATE_QUEUED || c.GetQueueId() != queues["Order Support"] || c.GetAgentId() != "" {
		t.Fatalf("after queue transfer: %v", c)
	}
	guestEvents.next(t, func(e *parleyv1.Event) bool {
		return e.GetConversationTransferred().GetToQueueId() == queues["Order Support"]
	})
	offer = bethWork.nextOffer(t)
	if offer.GetConversation().GetQueueId() != queues["Order Support"] {
		t.Fatalf("offer from queue %s", offer.GetConversation().GetQueueId())
	}
	_, err = beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	bethEvents = subscribe(ctx, t, beth, convID, 0)

	// 9. Beth closes: every stream on the conversation ends cleanly, and
	// the guest token no longer writes.
	closed, err := beth.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID, Reason: "resolved"})
	must(t, err)
	if closed.GetConversation().GetState() != parleyv1.ConversationState_CONVERSATION_STATE_CLOSED || closed.GetConversation().GetCloseTime() == nil {
		t.Fatalf("after close: %v", closed.GetConversation())
	}
	for name, s := range map[string]*eventStream{"guest": guestEvents, "beth": bethEvents} {
		last := s.drain(t)
		if last.GetConversationClosed().GetReason() != "resolved" {
			t.Fatalf("%s's stream ended after %v, want the close event", name, last)
		}
	}
	_, err = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "g-2", Text: "one more thing"})
	wantCode(t, err, connect.CodeUnauthenticated)

	// The log is gap-free and in order, and the retried send is there once.
	var all []*parleyv1.Event
	for page := ""; ; {
		resp, err := admin.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageSize: 5, PageToken: page})
		must(t, err)
		all = append(all, resp.GetEvents()...)
		if page = resp.GetNextPageToken(); page == "" {
			break
		}
	}
	g1 := 0
	for i, e := range all {
		if e.GetSeq() != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.GetSeq())
		}
		if e.GetMessagePosted().GetText() == send.GetText() {
			g1++
		}
	}
	if g1 != 1 || all[len(all)-1].GetConversationClosed() == nil {
		t.Fatalf("log has g-1 %d times and ends with %v", g1, all[len(all)-1])
	}
	if h1, h2 := srv.HTTP1Requests.Load(), srv.HTTP2Requests.Load(); h1 != 0 || h2 == 0 {
		t.Fatalf("requests over HTTP/1: %d, over HTTP/2: %d; want all over HTTP/2", h1, h2)
	}
	if agentsNow, err := admin.Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{}); err == nil {
		for _, a := range agentsNow.GetAgents() {
			if a.GetLoad() != 0 {
				t.Fatalf("agent %s still has load %d after close", a.GetDisplayName(), a.GetLoad())
			}
		}
	} else {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got error %v, want code %v", err, code)
	}
}

func hasMessage(evs []*parleyv1.Event, text string) bool {
	for _, e := range evs {
		if e.GetMessagePosted().GetText() == text {
			return true
		}
	}
	return false
}

func setPresence(ctx context.Context, t *testing.T, c *parley.Client, p parleyv1.Presence) {
	t.Helper()
	_, err := c.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: p})
	must(t, err)
}

// eventStream collects a Subscribe stream in the background.
type eventStream struct {
	events chan *parleyv1.Event
	done   chan error
}

func subscribe(ctx context.Context, t *testing.T, c *parley.Client, convID string, after int64) *eventStream {
	t.Helper()
	stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: after})
	must(t, err)
	s := &eventStream{events: make(chan *parleyv1.Event, 100), done: make(chan error, 1)}
	go func() {
		defer close(s.events)
		for {
			resp, err := stream.Receive()
			if err != nil {
				s.done <- err
				return
			}
			if e := resp.GetEvent(); e != nil {
				s.events <- e
			}
		}
	}()
	return s
}

// next returns the first event that matches, skipping others.
func (s *eventStream) next(t *testing.T, match func(*parleyv1.Event) bool) *parleyv1.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended before the awaited event: %v", <-s.done)
			}
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// drain reads to the end of the stream, checks it ended cleanly, and
// returns the last event.
func (s *eventStream) drain(t *testing.T) *parleyv1.Event {
	t.Helper()
	var last *parleyv1.Event
	deadline := time.After(waitTimeout)
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				if err := <-s.done; !errors.Is(err, io.EOF) {
					t.Fatalf("stream ended with %v, want a clean end", err)
				}
				return last
			}
			last = e
		case <-deadline:
			t.Fatal("stream did not end")
		}
	}
}

// endsWith reads to the end of the stream and checks it ended with code.
func (s *eventStream) endsWith(t *testing.T, code connect.Code) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				if err := <-s.done; connect.CodeOf(err) != code {
					t.Fatalf("stream ended with %v, want %v", err, code)
				}
				return
			}
		case <-deadline:
			t.Fatal("stream did not end")
		}
	}
}

// workStream collects a WatchWork stream in the background.
type workStream struct {
	items chan *parleyv1.WatchWorkResponse
}

func watchWork(ctx context.Context, t *testing.T, c *parley.Client) *workStream {
	t.Helper()
	stream, err := c.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	must(t, err)
	w := &workStream{items: make(chan *parleyv1.WatchWorkResponse, 100)}
	go func() {
		defer close(w.items)
		for {
			resp, err := stream.Receive()
			if err != nil {
				return
			}
			w.items <- resp
		}
	}()
	return w
}

func (w *workStream) next(t *testing.T, match func(*parleyv1.WatchWorkResponse) bool) *parleyv1.WatchWorkResponse {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case r, ok := <-w.items:
			if !ok {
				t.Fatal("work stream ended")
			}
			if match(r) {
				return r
			}
		case <-deadline:
			t.Fatal("timed out waiting for work")
		}
	}
}

func (w *workStream) nextOffer(t *testing.T) *parleyv1.Offer {
	t.Helper()
	return w.next(t, func(r *parleyv1.WatchWorkResponse) bool { return r.GetOffer() != nil }).GetOffer()
}
