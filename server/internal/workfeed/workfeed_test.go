package workfeed_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
)

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

// rig is a server on a fake clock whose "billing" chats go to one queue,
// with agents created by the test.
type rig struct {
	t     testing.TB
	srv   *servertest.Server
	ctx   context.Context
	adm   *parley.Client
	anon  *parley.Client
	queue string
}

var unlimitedGuests = servertest.WithBootstrap(func(f *bootstrap.File) {
	f.Settings.MaxGuestSessionsPerHour = 1_000_000
	f.Settings.MaxGuestSessionsPerHourPerAddress = 0
})

func newRig(t testing.TB, opts ...servertest.Option) *rig {
	t.Helper()
	opts = append([]servertest.Option{
		servertest.WithFakeClock(t0), unlimitedGuests, servertest.WithoutWriteLimits(),
		// No heartbeat unless a test advances the clock by an hour.
		servertest.WithAppOptions(app.Options{SweepInterval: time.Hour, Heartbeat: time.Hour}),
	}, opts...)
	return rigOn(t, servertest.Start(t, opts...))
}

// rigOn configures srv's routing: "billing" chats go to a new queue.
func rigOn(t testing.TB, srv *servertest.Server) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &rig{t: t, srv: srv, ctx: ctx, adm: srv.Client(parley.Connect, servertest.AdminToken), anon: srv.Client(parley.Connect, "")}
	q, err := r.adm.Routing.CreateQueue(ctx, &parleyv1.CreateQueueRequest{DisplayName: "Feed", OfferTimeout: durationpb.New(time.Hour)})
	must(t, err)
	r.queue = q.GetQueue().GetId()
	_, err = r.adm.Routing.CreateMatchingRule(ctx, &parleyv1.CreateMatchingRuleRequest{
		DisplayName: "feed", Order: 1, QueueId: r.queue,
		Condition: &parleyv1.Condition{Kind: &parleyv1.Condition_FieldIn{FieldIn: &parleyv1.FieldIn{Field: "issue_type", Values: []string{"billing"}}}},
	})
	must(t, err)
	return r
}

// agent creates an available agent of the rig's queue and returns its id
// and a client of srv (the rig's server unless given).
func (r *rig) agent(name string, capacity int32) (string, *parley.Client) {
	r.t.Helper()
	id, token := r.agentToken(name, capacity)
	return id, r.srv.Client(parley.Connect, token)
}

// agentToken creates an available agent of the rig's queue and returns
// its id and token.
func (r *rig) agentToken(name string, capacity int32) (id, token string) {
	r.t.Helper()
	a, err := r.adm.Routing.CreateAgent(r.ctx, &parleyv1.CreateAgentRequest{DisplayName: name, Capacity: capacity, QueueIds: []string{r.queue}})
	must(r.t, err)
	_, err = r.srv.Client(parley.Connect, a.GetToken()).Routing.SetPresence(r.ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
	must(r.t, err)
	return a.GetAgent().GetId(), a.GetToken()
}

// chat starts a guest chat and returns its id and the guest.
func (r *rig) chat() (string, *parley.Client) {
	r.t.Helper()
	resp, err := r.anon.Session.StartGuestChat(r.ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Guest", Email: "guest@example.com", IssueType: "billing",
	})
	must(r.t, err)
	return resp.GetConversation().GetId(), r.srv.Client(parley.Connect, resp.GetGuestToken())
}

// accept routes conversation convID and has agent (the only one
// available with room) accept its offer.
func (r *rig) accept(agent *parley.Client, convID string) {
	r.t.Helper()
	id := uuid.MustParse(convID)
	for {
		must(r.t, r.srv.App.Dispatch(r.ctx))
		o, err := r.srv.DB.Offer.Query().Where(offer.ConversationID(id), offer.StateEQ(offer.StatePending)).Only(r.ctx)
		if err == nil {
			_, err = agent.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: o.ID.String()})
			must(r.t, err)
			return
		}
		if r.ctx.Err() != nil {
			r.t.Fatalf("no offer of %s", convID)
		}
	}
}

// say posts text as c in convID and returns the event's seq.
func (r *rig) say(c *parley.Client, convID, text string) int64 {
	r.t.Helper()
	resp, err := c.Messaging.SendMessage(r.ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: text})
	must(r.t, err)
	return resp.GetEvent().GetSeq()
}

// lastSeq is the last seq of convID's log.
func (r *rig) lastSeq(convID string) int64 {
	r.t.Helper()
	c, err := r.srv.DB.Conversation.Get(r.ctx, uuid.MustParse(convID))
	must(r.t, err)
	return c.LastSeq
}

// feed is an open FollowWork stream that checks, on every item, what the
// RPC promises: every item but heartbeats names its conversation; a
// conversation is assigned before its events, which come in seq order
// without a gap from the cursor it resumed from, never twice; nothing of
// it follows released until it is assigned again.
type feed struct {
	t      testing.TB
	stream parleyv1connect.RoutingServiceFollowWorkClientStream
	// seq is the last seq received of each conversation (or the cursor
	// the stream was opened with).
	seq      map[string]int64
	held     map[string]bool
	released map[string]bool
	// away are the conversations the stream was opened with a cursor for
	// and has neither assigned nor released yet: until synced, such a
	// conversation may get events and released without being assigned
	// (it left the agent while the client was away).
	away   map[string]bool
	synced bool
	// items are all the items received, in order.
	items []*parleyv1.FollowWorkResponse
}

func (r *rig) follow(c *parley.Client, cursors map[string]int64) *feed {
	r.t.Helper()
	req := &parleyv1.FollowWorkRequest{}
	f := &feed{t: r.t, seq: map[string]int64{}, held: map[string]bool{}, released: map[string]bool{}, away: map[string]bool{}}
	for id, seq := range cursors {
		req.Cursors = append(req.Cursors, &parleyv1.FollowCursor{ConversationId: id, AfterSeq: seq})
		f.seq[id] = seq
		f.away[id] = true
	}
	stream, err := c.Routing.FollowWork(r.ctx, req)
	must(r.t, err)
	r.t.Cleanup(func() { stream.Close() })
	f.stream = stream
	return f
}

// next receives one item and checks it.
func (f *feed) next() *parleyv1.FollowWorkResponse {
	f.t.Helper()
	item, err := f.stream.Receive()
	if err != nil {
		f.t.Fatalf("receive after %d items: %v", len(f.items), err)
	}
	f.check(item)
	return item
}

// check checks one item received and records it.
func (f *feed) check(item *parleyv1.FollowWorkResponse) {
	f.t.Helper()
	f.items = append(f.items, item)
	id := item.GetConversationId()
	if item.GetHeartbeat() != nil {
		if id != "" {
			f.t.Fatalf("heartbeat names conversation %s", id)
		}
		return
	}
	if item.GetSynced() != nil {
		if id != "" || f.synced {
			f.t.Fatalf("synced names conversation %q or comes twice (before: %v)", id, f.synced)
		}
		f.synced = true
		return
	}
	// Until synced, a conversation of the request's cursors that the
	// agent no longer holds may get its rest and its release.
	gone := f.away[id] && !f.synced
	if id == "" {
		f.t.Fatalf("item %v names no conversation", item)
	}
	switch {
	case item.GetAssigned() != nil:
		if f.held[id] {
			f.t.Fatalf("conversation %s assigned twice", id)
		}
		f.held[id], f.released[id], f.away[id] = true, false, false
	case item.GetReleased() != nil:
		if !f.held[id] && !gone {
			f.t.Fatalf("conversation %s released but not held", id)
		}
		f.held[id], f.released[id], f.away[id] = false, true, false
	case item.GetEvent() != nil && gone:
		if e := item.GetEvent(); e.GetSeq() != f.seq[id]+1 {
			f.t.Fatalf("conversation %s (gone while away): event seq %d after %d", id, e.GetSeq(), f.seq[id])
		}
		f.seq[id] = item.GetEvent().GetSeq()
	case item.GetEvent() != nil, item.GetTyping() != nil, item.GetReadCursor() != nil:
		if !f.held[id] {
			f.t.Fatalf("%v of conversation %s, which is not held (released: %v)", item, id, f.released[id])
		}
		if e := item.GetEvent(); e != nil {
			if e.GetSeq() != f.seq[id]+1 {
				f.t.Fatalf("conversation %s: event seq %d after %d", id, e.GetSeq(), f.seq[id])
			}
			f.seq[id] = e.GetSeq()
		}
	case item.GetOffer() != nil:
		if item.GetOffer().GetConversation().GetId() != id {
			f.t.Fatalf("offer %v names conversation %s", item.GetOffer(), id)
		}
	case item.GetOfferClosed() != nil:
		if item.GetOfferClosed().GetConversationId() != id {
			f.t.Fatalf("offer closed %v names conversation %s", item.GetOfferClosed(), id)
		}
	default:
		f.t.Fatalf("unexpected item %v", item)
	}
}

// until receives items until done says so.
func (f *feed) until(done func(*parleyv1.FollowWorkResponse) bool) *parleyv1.FollowWorkResponse {
	f.t.Helper()
	for {
		if item := f.next(); done(item) {
			return item
		}
	}
}

// upTo receives items until it has the events of convID up to seq.
func (f *feed) upTo(convID string, seq int64) {
	f.t.Helper()
	for f.seq[convID] < seq {
		f.next()
	}
}

// endsWith receives items until the stream fails, which must be with code
// and reason.
func (f *feed) endsWith(code connect.Code, reason string) {
	f.t.Helper()
	for {
		item, err := f.stream.Receive()
		if err == nil {
			f.check(item)
			continue
		}
		if connect.CodeOf(err) != code || apierr.Reason(err) != reason {
			f.t.Fatalf("stream ended with %v (reason %q), want %v %s", err, apierr.Reason(err), code, reason)
		}
		return
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEightChatsOnOneStream: an agent holding 8 chats gets, on one
// stream, each one assigned, its whole log, the guests' read cursors, then
// every message of every chat in order, their typing and cursor moves.
func TestEightChatsOnOneStream(t *testing.T) {
	r := newRig(t)
	_, agent := r.agent("Octo", 8)
	convs := make([]string, 8)
	guests := map[string]*parley.Client{}
	for i := range convs {
		var g *parley.Client
		convs[i], g = r.chat()
		guests[convs[i]] = g
		r.accept(agent, convs[i])
		r.say(g, convs[i], "hello "+convs[i])
	}
	// One guest read what it has before the agent follows: its cursor is
	// sent when the chat is first followed.
	_, err := guests[convs[0]].Messaging.MarkRead(r.ctx, &parleyv1.MarkReadRequest{ConversationId: convs[0], RequestId: uuid.NewString(), ReadSeq: r.lastSeq(convs[0])})
	must(t, err)
	f := r.follow(agent, nil)
	for _, c := range convs {
		f.upTo(c, r.lastSeq(c))
	}
	// Every chat was announced before its events (checked by next), and
	// its whole log replayed.
	cursorSeen := false
	for _, item := range f.items {
		rc := item.GetReadCursor()
		if rc != nil && item.GetConversationId() == convs[0] && rc.GetReadSeq() > 0 {
			cursorSeen = true
		}
	}
	if !cursorSeen {
		t.Fatalf("the guest's read cursor of %s was not sent when it was first followed", convs[0])
	}

	// Live: three rounds of a message in every chat, then typing and a
	// read cursor move in one.
	want := map[string]int64{}
	for round := range 3 {
		for _, c := range convs {
			want[c] = r.say(guests[c], c, fmt.Sprintf("round %d", round))
		}
	}
	for _, c := range convs {
		f.upTo(c, want[c])
	}
	_, err = guests[convs[5]].Messaging.SetTyping(r.ctx, &parleyv1.SetTypingRequest{ConversationId: convs[5], Typing: true})
	must(t, err)
	typing := f.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetTyping() != nil })
	if typing.GetConversationId() != convs[5] || !typing.GetTyping().GetTyping() {
		t.Fatalf("typing %v, want the guest of %s typing", typing, convs[5])
	}
	_, err = guests[convs[6]].Messaging.MarkRead(r.ctx, &parleyv1.MarkReadRequest{ConversationId: convs[6], RequestId: uuid.NewString(), ReadSeq: want[convs[6]]})
	must(t, err)
	moved := f.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetReadCursor() != nil })
	if moved.GetConversationId() != convs[6] || moved.GetReadCursor().GetReadSeq() != want[convs[6]] {
		t.Fatalf("read cursor %v, want the guest of %s at %d", moved, convs[6], want[convs[6]])
	}
	// The agent's own messages come back on its stream too (once).
	own := r.say(agent, convs[7], "agent here")
	f.upTo(convs[7], own)
}

// TestResumeWithCursors: a stream opened again with the last seq received
// of each chat sends each one's events after it (no gap, no duplicate:
// checked by next), and a held chat without a cursor from the start.
func TestResumeWithCursors(t *testing.T) {
	r := newRig(t)
	_, agent := r.agent("Resumer", 3)
	a, guestA := r.chat()
	r.accept(agent, a)
	b, guestB := r.chat()
	r.accept(agent, b)
	first := r.follow(agent, nil)
	first.upTo(a, r.lastSeq(a))
	first.upTo(b, r.lastSeq(b))
	first.upTo(a, r.say(guestA, a, "one"))
	must(t, first.stream.Close())

	// Meanwhile: more in both, and a third chat.
	r.say(guestA, a, "two")
	r.say(guestB, b, "two")
	c, guestC := r.chat()
	r.accept(agent, c)
	again := r.follow(agent, map[string]int64{a: first.seq[a], b: first.seq[b]})
	again.upTo(a, r.lastSeq(a))
	again.upTo(b, r.lastSeq(b))
	again.upTo(c, r.lastSeq(c))
	again.upTo(c, r.say(guestC, c, "three"))
	for _, item := range again.items {
		if e := item.GetEvent(); e != nil && item.GetConversationId() == a && e.GetSeq() <= first.seq[a] {
			t.Fatalf("resumed stream sent seq %d of %s again", e.GetSeq(), a)
		}
	}
	if again.seq[c] != r.lastSeq(c) {
		t.Fatalf("chat %s replayed to %d, want %d", c, again.seq[c], r.lastSeq(c))
	}
	// A cursor of a conversation the agent does not hold is ignored.
	other, _ := r.chat()
	r.say(guestA, a, "four")
	ignoring := r.follow(agent, map[string]int64{other: 3, a: r.lastSeq(a) - 1})
	ignoring.upTo(a, r.lastSeq(a))
}

// TestBadCursors: a cursor beyond a held chat's log refuses the stream,
// naming the chat; two cursors of one chat, or a malformed id, are
// refused as invalid.
func TestBadCursors(t *testing.T) {
	r := newRig(t)
	_, agent := r.agent("Cursor", 2)
	conv, _ := r.chat()
	r.accept(agent, conv)
	stream, err := agent.Routing.FollowWork(r.ctx, &parleyv1.FollowWorkRequest{Cursors: []*parleyv1.FollowCursor{{ConversationId: conv, AfterSeq: r.lastSeq(conv) + 1}}})
	must(t, err)
	_, err = stream.Receive()
	if connect.CodeOf(err) != connect.CodeOutOfRange || apierr.Reason(err) != "CURSOR_BEYOND_LOG" {
		t.Fatalf("cursor beyond the log: %v, want OutOfRange CURSOR_BEYOND_LOG", err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message(), conv) {
		t.Fatalf("error %v does not name conversation %s", err, conv)
	}
	for name, cursors := range map[string][]*parleyv1.FollowCursor{
		"duplicate":  {{ConversationId: conv, AfterSeq: 1}, {ConversationId: conv, AfterSeq: 2}},
		"not a uuid": {{ConversationId: "nope", AfterSeq: 1}},
		"negative":   {{ConversationId: conv, AfterSeq: -1}},
	} {
		stream, err := agent.Routing.FollowWork(r.ctx, &parleyv1.FollowWorkRequest{Cursors: cursors})
		if err == nil {
			_, err = stream.Receive()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s cursors: %v, want InvalidArgument", name, err)
		}
		if name == "duplicate" && !strings.Contains(err.Error(), "one cursor only") {
			t.Errorf("duplicate cursors: %v does not say what is wrong", err)
		}
	}
}

// TestConcurrentSenders: eight guests sending at once, each twenty
// messages, reach the agent's one stream complete, each chat in order and
// without a duplicate (checked by next).
func TestConcurrentSenders(t *testing.T) {
	r := newRig(t, servertest.WithAppOptions(app.Options{SweepInterval: time.Hour, Heartbeat: time.Hour, SendRate: 1e9, SendBurst: 1e9}))
	_, agent := r.agent("Busy", 8)
	convs := make([]string, 8)
	guests := make([]*parley.Client, 8)
	for i := range convs {
		convs[i], guests[i] = r.chat()
		r.accept(agent, convs[i])
	}
	f := r.follow(agent, nil)
	errs := make(chan error, len(convs))
	for i := range convs {
		go func() {
			for n := range 20 {
				_, err := guests[i].Messaging.SendMessage(r.ctx, &parleyv1.SendMessageRequest{
					ConversationId: convs[i], ClientMessageId: uuid.NewString(), Text: fmt.Sprintf("message %d", n),
				})
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range convs {
		must(t, <-errs)
	}
	for _, c := range convs {
		f.upTo(c, r.lastSeq(c))
	}
	for _, c := range convs {
		texts := 0
		for _, item := range f.items {
			if item.GetConversationId() == c && strings.HasPrefix(item.GetEvent().GetMessagePosted().GetText(), "message ") {
				texts++
			}
		}
		if texts != 20 {
			t.Errorf("conversation %s: %d of its 20 messages received", c, texts)
		}
	}
}
