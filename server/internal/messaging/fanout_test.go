package messaging_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/messaging"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// following is a Subscribe stream read in the background: its events as
// they come, and the error it ended with.
type following struct {
	events chan *parleyv1.Event
	end    chan error
}

// follow subscribes c to convID from after and reads the stream in the
// background until it ends or the test does.
func follow(ctx context.Context, c *parley.Client, convID string, after int64) (*following, error) {
	stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: after})
	if err != nil {
		return nil, err
	}
	f := &following{events: make(chan *parleyv1.Event, 1024), end: make(chan error, 1)}
	go func() {
		defer stream.Close()
		for {
			item, err := stream.Receive()
			if err != nil {
				f.end <- err
				return
			}
			if e := item.GetEvent(); e != nil {
				f.events <- e
			}
		}
	}()
	return f, nil
}

// upTo returns the events the stream delivers up to seq, failing if it
// ends first.
func (f *following) upTo(t *testing.T, seq int64) []*parleyv1.Event {
	t.Helper()
	var out []*parleyv1.Event
	for len(out) == 0 || out[len(out)-1].GetSeq() < seq {
		select {
		case e := <-f.events:
			out = append(out, e)
		case err := <-f.end:
			t.Fatalf("the stream ended before seq %d: %v", seq, err)
		}
	}
	return out
}

// endsAfter waits for the stream to end and returns its error, failing if
// it delivered any event after seq first.
func (f *following) endsAfter(t *testing.T, seq int64) error {
	t.Helper()
	for {
		select {
		case e := <-f.events:
			if e.GetSeq() > seq {
				t.Fatalf("the stream was sent seq %d (%v) after it lost access", e.GetSeq(), e)
			}
		case err := <-f.end:
			return err
		}
	}
}

// wantRun fails unless evs have seqs from+1, from+2 ... to, in order.
func wantRun(t *testing.T, who string, evs []*parleyv1.Event, from, to int64) {
	t.Helper()
	if int64(len(evs)) != to-from {
		t.Fatalf("%s got %d events, want %d (seqs %d..%d)", who, len(evs), to-from, from+1, to)
	}
	for i, e := range evs {
		if e.GetSeq() != from+int64(i)+1 {
			t.Fatalf("%s: event %d has seq %d: a gap, a duplicate or out of order", who, i, e.GetSeq())
		}
	}
}

// TestManySubscribersGetEveryEventOnce: subscribers of one conversation,
// on the guest's token and the agent's, some from the start of the log,
// some joining while two senders race, all get every event exactly once,
// in order.
func TestManySubscribersGetEveryEventOnce(t *testing.T) {
	srv := servertest.Start(t, fast)
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a bound, not a measure
	defer cancel()
	const perSender = 60
	head := allEvents(t, guest, convID)
	last := head[len(head)-1].GetSeq() + 2*perSender

	var mu sync.Mutex
	var subscribers []*following
	subscribe := func(c *parley.Client) error {
		f, err := follow(ctx, c, convID, 0)
		mu.Lock()
		defer mu.Unlock()
		subscribers = append(subscribers, f)
		return err
	}
	for i := range 6 {
		c := guest
		if i%2 == 1 {
			c = fred
		}
		if err := subscribe(c); err != nil {
			t.Fatal(err)
		}
	}
	var sends sync.WaitGroup
	for _, c := range []*parley.Client{guest, fred} {
		sends.Go(func() {
			for i := range perSender {
				if _, err := c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: strconv.Itoa(i)}); err != nil {
					t.Error(err)
					return
				}
				if i == perSender/2 && c == guest {
					for range 4 { // late joiners, from the start of the log
						if err := subscribe(fred); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}
		})
	}
	sends.Wait()
	if t.Failed() {
		return
	}
	for i, f := range subscribers {
		wantRun(t, fmt.Sprintf("subscriber %d", i), f.upTo(t, last), 0, last)
	}
}

// TestResumeFromBehindTheTail: while a subscriber keeps the conversation's
// tail running at the head, a client resuming from an after_seq far
// behind the tail's window gets everything after it, then follows live.
func TestResumeFromBehindTheTail(t *testing.T) {
	srv := servertest.Start(t, fast)
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	head := allEvents(t, guest, convID)
	from := head[len(head)-1].GetSeq()
	live, err := follow(ctx, fred, convID, from)
	if err != nil {
		t.Fatal(err)
	}
	n := messaging.TailWindow + 40
	for i := range n {
		if _, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: strconv.Itoa(i), Text: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	end := from + int64(n)
	wantRun(t, "the live subscriber", live.upTo(t, end), from, end)

	resumed, err := follow(ctx, guest, convID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fred.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "after", Text: "live again"}); err != nil {
		t.Fatal(err)
	}
	wantRun(t, "the resumed subscriber", resumed.upTo(t, end+1), 1, end+1)
}

// TestAccessLossEndsOnlyThatSubscriber: of several streams sharing one
// conversation's tail, the one whose token is revoked, and then the one of
// the agent who hands the chat back to a queue, end before anything else
// is sent to them (the transfer's own events included), while the guest's
// go on receiving everything.
func TestAccessLossEndsOnlyThatSubscriber(t *testing.T) {
	srv := servertest.Start(t, fast)
	token, convID := startGuest(t, srv)
	guest := srv.Client(parley.Connect, token)
	fred := assign(t, srv, convID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	agents, err := admin.Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var fredID string
	for _, a := range agents.GetAgents() {
		if a.GetDisplayName() == "Fred Luddy" {
			fredID = a.GetId()
		}
	}
	issued, err := admin.Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_AGENT, AgentId: fredID, Label: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	head := allEvents(t, guest, convID)
	from := head[len(head)-1].GetSeq()
	open := func(c *parley.Client) *following {
		t.Helper()
		f, err := follow(ctx, c, convID, from)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	laptop := open(srv.Client(parley.GRPC, issued.GetToken()))
	holder := open(fred)
	guests := []*following{open(guest), open(guest), open(srv.Client(parley.GRPC, token))}
	send := func(c *parley.Client, text string) int64 {
		t.Helper()
		sent, err := c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: text})
		if err != nil {
			t.Fatal(err)
		}
		return sent.GetEvent().GetSeq()
	}
	shared := send(guest, "for everyone")
	laptop.upTo(t, shared)
	if _, err := admin.Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: issued.GetInfo().GetId()}); err != nil {
		t.Fatal(err)
	}
	afterRevoke := send(guest, "not for the laptop")
	if err := laptop.endsAfter(t, shared); apierr.Reason(err) != "TOKEN_REVOKED" {
		t.Fatalf("the revoked stream ended with %v", err)
	}
	holder.upTo(t, afterRevoke)

	queues, err := admin.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var billing string
	for _, q := range queues.GetQueues() {
		if q.GetDisplayName() == "Billing Support" {
			billing = q.GetId()
		}
	}
	if _, err := fred.Routing.TransferConversation(ctx, &parleyv1.TransferConversationRequest{
		ConversationId: convID, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_QueueId{QueueId: billing},
	}); err != nil {
		t.Fatal(err)
	}
	last := send(guest, "after the transfer")
	if err := holder.endsAfter(t, afterRevoke); connect.CodeOf(err) != connect.CodePermissionDenied || apierr.Reason(err) != "NO_LONGER_HOLDING" {
		t.Fatalf("the former holder's stream ended with %v", err)
	}
	for i, g := range guests {
		wantRun(t, fmt.Sprintf("guest stream %d", i), g.upTo(t, last), from, last)
	}
}

// TestWaitingCustomersFollowTheLine: the streams of waiting customers
// (one of them on two devices) tell each their place, and the new one
// once the chat ahead leaves the queue.
func TestWaitingCustomersFollowTheLine(t *testing.T) {
	srv := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, firstID := startChat(t, srv)
	secondToken, secondID := startGuest(t, srv)
	thirdToken, thirdID := startGuest(t, srv)
	place := func(stream parleyv1connect.MessagingServiceSubscribeClientStream) int32 {
		t.Helper()
		for {
			item, err := stream.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if p := item.GetQueuePosition(); p != nil {
				if p.GetEstimatedWait() != nil {
					t.Fatalf("an estimate though no chat was taken: %v", p)
				}
				return p.GetPosition()
			}
		}
	}
	open := func(c *parley.Client, convID string) parleyv1connect.MessagingServiceSubscribeClientStream {
		t.Helper()
		stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stream.Close() })
		return stream
	}
	second := open(srv.Client(parley.Connect, secondToken), secondID)
	phone := open(srv.Client(parley.GRPC, thirdToken), thirdID)
	laptop := open(srv.Client(parley.Connect, thirdToken), thirdID)
	if p := place(second); p != 2 {
		t.Fatalf("the second chat is at %d", p)
	}
	for _, s := range []parleyv1connect.MessagingServiceSubscribeClientStream{phone, laptop} {
		if p := place(s); p != 3 {
			t.Fatalf("the third chat is at %d", p)
		}
	}
	if _, err := first.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: firstID}); err != nil {
		t.Fatal(err)
	}
	if p := place(second); p != 1 {
		t.Fatalf("once the first left, the second chat is at %d", p)
	}
	for _, s := range []parleyv1connect.MessagingServiceSubscribeClientStream{phone, laptop} {
		if p := place(s); p != 2 {
			t.Fatalf("once the first left, the third chat is at %d", p)
		}
	}
}
