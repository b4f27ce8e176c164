package routing_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/offer"
	"github.com/parleyhq/parley/ent/servicecase"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// rig is a server on a fake clock with helpers to configure routing and
// drive it step by step: the test moves the clock and makes routing passes.
type rig struct {
	t    *testing.T
	srv  *servertest.Server
	ctx  context.Context
	adm  *parley.Client
	anon *parley.Client
}

func newRig(t *testing.T, opts ...servertest.Option) *rig {
	t.Helper()
	opts = append([]servertest.Option{
		servertest.WithFakeClock(t0), unlimitedGuests, servertest.WithoutWriteLimits(),
		// The sweep runs on real time; a long one leaves passes to the test.
		servertest.WithAppOptions(app.Options{SweepInterval: time.Hour, Heartbeat: time.Hour}),
	}, opts...)
	srv := servertest.Start(t, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return &rig{t: t, srv: srv, ctx: ctx, adm: srv.Client(parley.Connect, servertest.AdminToken), anon: srv.Client(parley.Connect, "")}
}

// queue creates a queue that takes chats whose issue type is issue.
func (r *rig) queue(issue string, order int32, policy *parleyv1.QueuePolicy) string {
	r.t.Helper()
	q, err := r.adm.Routing.CreateQueue(r.ctx, &parleyv1.CreateQueueRequest{
		DisplayName: "Queue " + issue, OfferTimeout: durationpb.New(30 * time.Second), Policy: policy,
	})
	must(r.t, err)
	_, err = r.adm.Routing.CreateMatchingRule(r.ctx, &parleyv1.CreateMatchingRuleRequest{
		DisplayName: issue, Order: order, QueueId: q.GetQueue().GetId(),
		Condition: &parleyv1.Condition{Kind: &parleyv1.Condition_FieldIn{FieldIn: &parleyv1.FieldIn{Field: "issue_type", Values: []string{issue}}}},
	})
	must(r.t, err)
	return q.GetQueue().GetId()
}

// agent creates an available agent in queues.
func (r *rig) agent(name string, capacity int32, queues ...string) (string, *parley.Client) {
	r.t.Helper()
	a, err := r.adm.Routing.CreateAgent(r.ctx, &parleyv1.CreateAgentRequest{DisplayName: name, Capacity: capacity, QueueIds: queues})
	must(r.t, err)
	c := r.srv.Client(parley.Connect, a.GetToken())
	r.presence(c, parleyv1.Presence_PRESENCE_AVAILABLE)
	return a.GetAgent().GetId(), c
}

func (r *rig) presence(c *parley.Client, p parleyv1.Presence) {
	r.t.Helper()
	_, err := c.Routing.SetPresence(r.ctx, &parleyv1.SetPresenceRequest{Presence: p})
	must(r.t, err)
}

// issueTypes lets guests pick the rig's issue types.
func (r *rig) issueTypes(values ...string) {
	r.t.Helper()
	set, err := r.adm.Session.GetSettings(r.ctx, &parleyv1.GetSettingsRequest{})
	must(r.t, err)
	s := set.GetSettings()
	for _, v := range values {
		s.IssueTypes = append(s.IssueTypes, &parleyv1.IssueType{Value: v, DisplayName: v})
	}
	_, err = r.adm.Session.UpdateSettings(r.ctx, &parleyv1.UpdateSettingsRequest{Settings: s})
	must(r.t, err)
}

// chat starts a guest chat about issue and returns its id and the guest.
func (r *rig) chat(issue string) (string, *parley.Client) {
	r.t.Helper()
	resp, err := r.anon.Session.StartGuestChat(r.ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Guest", Email: "guest@example.com", IssueType: issue,
	})
	must(r.t, err)
	return resp.GetConversation().GetId(), r.srv.Client(parley.Connect, resp.GetGuestToken())
}

// pass makes one routing pass.
func (r *rig) pass() {
	r.t.Helper()
	must(r.t, r.srv.App.Dispatch(r.ctx))
}

// advance moves the clock and makes a routing pass.
func (r *rig) advance(d time.Duration) {
	r.t.Helper()
	r.srv.Clock.Advance(d)
	r.pass()
}

// pending returns a conversation's pending offer, or nil.
func (r *rig) pending(convID string) *ent.Offer {
	r.t.Helper()
	o, err := r.srv.DB.Offer.Query().Where(offer.ConversationID(uuid.MustParse(convID)), offer.StateEQ(offer.StatePending)).Only(r.ctx)
	if ent.IsNotFound(err) {
		return nil
	}
	must(r.t, err)
	return o
}

// offeredTo makes a pass and returns the agent a conversation's pending
// offer is for, failing if there is none.
func (r *rig) offeredTo(convID string) (offerID, agentID string) {
	r.t.Helper()
	r.pass()
	o := r.pending(convID)
	if o == nil {
		r.t.Fatalf("conversation %s has no pending offer", convID)
	}
	return o.ID.String(), o.AgentID.String()
}

func (r *rig) conversation(convID string) *ent.Conversation {
	r.t.Helper()
	c, err := r.srv.DB.Conversation.Get(r.ctx, uuid.MustParse(convID))
	must(r.t, err)
	return c
}

func (r *rig) agentRow(id string) *ent.Agent {
	r.t.Helper()
	a, err := r.srv.DB.Agent.Get(r.ctx, uuid.MustParse(id))
	must(r.t, err)
	return a
}

// kinds lists a conversation's event kinds in seq order.
func (r *rig) kinds(convID string) []string {
	r.t.Helper()
	evs, err := r.srv.DB.Event.Query().Where(event.ConversationID(uuid.MustParse(convID))).Order(ent.Asc(event.FieldSeq)).All(r.ctx)
	must(r.t, err)
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

func (r *rig) accept(c *parley.Client, offerID string) {
	r.t.Helper()
	_, err := c.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: offerID})
	must(r.t, err)
}

// TestTimeoutPresenceAndReofferOrder: an agent who lets an offer lapse
// moves to the queue's timeout presence and the next agent is offered the
// chat; an agent who declined is passed over while another can take it,
// and offered it again when nobody else can.
func TestTimeoutPresenceAndReofferOrder(t *testing.T) {
	r := newRig(t)
	r.issueTypes("race")
	q := r.queue("race", 1, &parleyv1.QueuePolicy{TimeoutPresence: parleyv1.Presence_PRESENCE_AWAY})
	clients := map[string]*parley.Client{}
	for _, name := range []string{"Ann", "Bob", "Cid"} {
		id, c := r.agent(name, 2, q)
		clients[id] = c
	}
	conv, _ := r.chat("race")

	_, first := r.offeredTo(conv)
	r.advance(31 * time.Second) // the offer lapses
	if p := r.agentRow(first).Presence; p != agent.PresenceAway {
		t.Fatalf("after letting the offer lapse, %s is %s, want away", first, p)
	}
	offer2, second := r.offeredTo(conv)
	if second == first {
		t.Fatal("the chat was offered again to the agent who let it lapse")
	}
	_, err := clients[second].Routing.DeclineOffer(r.ctx, &parleyv1.DeclineOfferRequest{OfferId: offer2})
	must(t, err)
	offer3, third := r.offeredTo(conv)
	if third == first || third == second {
		t.Fatalf("after a decline, offered to %s; want the one agent left", third)
	}
	_, err = clients[third].Routing.DeclineOffer(r.ctx, &parleyv1.DeclineOfferRequest{OfferId: offer3})
	must(t, err)
	// Both available agents refused and the third is away. They rest from
	// the chat for the offer timeout, so one who comes back gets it first...
	r.pass()
	if o := r.pending(conv); o != nil {
		t.Fatalf("re-offered at once to %s, who just refused it", o.AgentID)
	}
	// ...and after it, rather than leave the customer waiting, a refuser
	// is asked again.
	r.srv.Clock.Advance(31 * time.Second)
	_, again := r.offeredTo(conv)
	if again != second && again != third {
		t.Fatalf("offered to %s, want one of the agents who declined", again)
	}
	if a := r.agentRow(again); a.Load != 1 {
		t.Fatalf("load of the agent offered the chat = %d, want 1", a.Load)
	}
}

// TestAgentDropAndGracePeriod: an agent whose work stream drops keeps
// their work through the grace period and gets it all back by
// reconnecting; one who stays away past it goes offline, their offer goes
// to another agent and their chat is re-queued ahead of newer ones.
func TestAgentDropAndGracePeriod(t *testing.T) {
	r := newRig(t)
	r.issueTypes("drop")
	q := r.queue("drop", 1, nil)
	// Offers wait long here: this test is about the stream, not offer expiry.
	_, err := r.adm.Routing.UpdateQueue(r.ctx, &parleyv1.UpdateQueueRequest{QueueId: q, DisplayName: "Queue drop", OfferTimeout: durationpb.New(time.Hour)})
	must(t, err)
	annID, ann := r.agent("Ann", 2, q)
	watch := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(r.ctx)
		stream, err := ann.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
		must(t, err)
		go func() {
			for {
				if _, err := stream.Receive(); err != nil {
					return
				}
			}
		}()
		// The lease is taken when the stream opens: wait for it.
		for a := r.agentRow(annID); a.StreamLeaseUntil == nil || !a.StreamLeaseUntil.After(r.srv.Clock.Now()); a = r.agentRow(annID) {
			time.Sleep(time.Millisecond)
		}
		return cancel
	}
	// drop closes the stream and waits until the server stops renewing
	// the lease (the handler has ended).
	drop := func(cancel context.CancelFunc) {
		cancel()
		for {
			r.pass()
			if !r.agentRow(annID).StreamLeaseUntil.Equal(r.srv.Clock.Now().Add(time.Minute)) {
				return
			}
			r.srv.Clock.Advance(time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	}
	held, _ := r.chat("drop")
	offerID, _ := r.offeredTo(held)
	r.accept(ann, offerID)
	r.advance(time.Minute)
	waiting, _ := r.chat("drop")
	if _, to := r.offeredTo(waiting); to != annID {
		t.Fatal("the second chat was not offered to Ann")
	}

	drop(watch())
	r.advance(30 * time.Second)
	cancel := watch() // back within the grace period
	r.advance(45 * time.Second)
	if a := r.agentRow(annID); a.Presence != agent.PresenceAvailable || r.pending(waiting) == nil || r.conversation(held).AgentID == nil {
		t.Fatalf("Ann lost her work although she came back within the grace period: %s", a.Presence)
	}

	drop(cancel)
	bobID, _ := r.agent("Bob", 1, q)
	r.advance(61 * time.Second)
	if a := r.agentRow(annID); a.Presence != agent.PresenceOffline || a.Load != 0 {
		t.Fatalf("after the grace period Ann is %s with load %d, want offline with 0", a.Presence, a.Load)
	}
	c := r.conversation(held)
	if c.State != "queued" || c.AgentID != nil || !c.QueuedAt.Equal(c.CreatedAt) {
		t.Fatalf("Ann's chat was not re-queued in its place: %s, agent %v, queued %v", c.State, c.AgentID, c.QueuedAt)
	}
	kinds := r.kinds(held)
	if got := kinds[len(kinds)-3:]; got[0] != "participant_left" || got[1] != "conversation_queued" || got[2] != "controller_changed" {
		t.Fatalf("the log ends with %v", got)
	}
	// Bob has room for one: the re-queued chat started first, so it goes first.
	if _, to := r.offeredTo(held); to != bobID {
		t.Fatalf("the re-queued chat went to %s, want Bob", to)
	}
	if o := r.pending(waiting); o != nil {
		t.Fatalf("the newer chat is offered to %s although Bob is full", o.AgentID)
	}
}

// TestTransferDeclinedOrLapsedStaysWithAgent: a transfer to an agent who
// declines or lets it lapse leaves the chat with the transferring agent,
// who keeps it; capacity is given back.
func TestTransferDeclinedOrLapsedStaysWithAgent(t *testing.T) {
	r := newRig(t)
	r.issueTypes("xfer")
	q := r.queue("xfer", 1, nil)
	annID, ann := r.agent("Ann", 2, q)
	conv, _ := r.chat("xfer")
	offerID, _ := r.offeredTo(conv)
	r.accept(ann, offerID)
	bobID, bob := r.agent("Bob", 2)

	transfer := func() string {
		resp, err := ann.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
			ConversationId: conv, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: bobID}, Note: "please",
		})
		must(t, err)
		return resp.GetOfferId()
	}
	_, err := bob.Routing.DeclineOffer(r.ctx, &parleyv1.DeclineOfferRequest{OfferId: transfer()})
	must(t, err)
	if c := r.conversation(conv); c.AgentID == nil || c.AgentID.String() != annID || c.State != "assigned" {
		t.Fatalf("after a declined transfer the chat is %s with %v", c.State, c.AgentID)
	}
	transfer()
	r.advance(31 * time.Second)
	if c := r.conversation(conv); c.AgentID.String() != annID {
		t.Fatalf("after a lapsed transfer the chat is with %v", c.AgentID)
	}
	if b := r.agentRow(bobID); b.Load != 0 || b.Presence != agent.PresenceAway {
		t.Fatalf("Bob after letting the transfer lapse: load %d, %s", b.Load, b.Presence)
	}
	if a := r.agentRow(annID); a.Load != 1 {
		t.Fatalf("Ann's load = %d, want 1", a.Load)
	}
	for _, k := range r.kinds(conv) {
		if k == "conversation_transferred" {
			t.Fatal("a transfer that never happened is in the log")
		}
	}
}

// TestOverflowAndLeaveMessage: after a queue's maximum wait a chat moves to
// the overflow queue (keeping its place) and is offered there; in a queue
// without one, the customer is told and may leave a message, which
// becomes a case and closes the chat.
func TestOverflowAndLeaveMessage(t *testing.T) {
	r := newRig(t)
	r.issueTypes("first", "last")
	backup := r.queue("backup", 3, nil)
	r.queue("first", 1, &parleyv1.QueuePolicy{MaxWait: durationpb.New(2 * time.Minute), OverflowQueueId: backup})
	r.queue("last", 2, &parleyv1.QueuePolicy{MaxWait: durationpb.New(5 * time.Minute)})
	helperID, _ := r.agent("Helper", 2, backup)

	conv, _ := r.chat("first")
	queuedAt := *r.conversation(conv).QueuedAt
	r.advance(119 * time.Second)
	if c := r.conversation(conv); c.QueueID.String() == backup {
		t.Fatal("moved before the maximum wait")
	}
	r.advance(2 * time.Second)
	c := r.conversation(conv)
	if c.QueueID.String() != backup || !c.QueuedAt.Equal(queuedAt) {
		t.Fatalf("after the maximum wait: queue %s, queued at %v", c.QueueID, c.QueuedAt)
	}
	if _, to := r.offeredTo(conv); to != helperID {
		t.Fatal("the overflowed chat was not offered in the overflow queue")
	}

	waiting, guest := r.chat("last")
	_, err := guest.Session.LeaveMessage(r.ctx, &parleyv1.LeaveMessageRequest{ConversationId: waiting, RequestId: uuid.NewString(), Text: "x"})
	if err != nil {
		t.Fatalf("leaving a message before the wait is exceeded: %v", err)
	}
	waiting, guest = r.chat("last")
	r.advance(5*time.Minute + time.Second)
	kinds := r.kinds(waiting)
	if kinds[len(kinds)-1] != "wait_exceeded" {
		t.Fatalf("log ends with %v, want wait_exceeded", kinds)
	}
	r.advance(5 * time.Minute)
	if n := len(r.kinds(waiting)); n != len(kinds) {
		t.Fatal("the customer was told twice")
	}
	left, err := guest.Session.LeaveMessage(r.ctx, &parleyv1.LeaveMessageRequest{
		ConversationId: waiting, RequestId: uuid.NewString(), Text: "Please call me back about invoice 77.",
	})
	must(t, err)
	if left.GetCaseNumber() == "" || left.GetConversation().GetState() != parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatalf("LeaveMessage = %v", left)
	}
	sc, err := r.srv.DB.ServiceCase.Query().Where(servicecase.Number(left.GetCaseNumber())).Only(r.ctx)
	must(t, err)
	if sc.ConversationID.String() != waiting || sc.OpenedByAgentID != nil {
		t.Fatalf("case for the left message: %+v", sc)
	}
}

// TestQueuePositionUpdates: a waiting customer's stream tells their place
// and the estimated wait, and tells again as chats ahead leave.
func TestQueuePositionUpdates(t *testing.T) {
	r := newRig(t)
	r.issueTypes("line")
	q := r.queue("line", 1, nil)
	first, _ := r.chat("line")
	second, secondGuest := r.chat("line")
	third, guest := r.chat("line")
	stream, err := guest.Messaging.Subscribe(r.ctx, &parleyv1.SubscribeRequest{ConversationId: third})
	must(t, err)
	defer stream.Close()
	position := func() *parleyv1.QueuePosition {
		t.Helper()
		for {
			item, err := stream.Receive()
			must(t, err)
			if p := item.GetQueuePosition(); p != nil {
				return p
			}
		}
	}
	if p := position(); p.GetPosition() != 3 || p.GetQueueId() != q || p.GetEstimatedWait() != nil {
		t.Fatalf("at first: %v (no chat taken yet, so no estimate)", p)
	}
	annID, ann := r.agent("Ann", 1, q)
	offerID, to := r.offeredTo(first)
	if to != annID {
		t.Fatal("not offered to Ann")
	}
	r.accept(ann, offerID)
	// One chat taken in the last hour: one every hour, so two ahead is two hours.
	if p := position(); p.GetPosition() != 2 || p.GetEstimatedWait().AsDuration() != 2*time.Hour {
		t.Fatalf("after the first was taken: %v", p)
	}
	_, err = secondGuest.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: second})
	must(t, err)
	if p := position(); p.GetPosition() != 1 || p.GetEstimatedWait().AsDuration() != time.Hour {
		t.Fatalf("after the second left: %v", p)
	}
}

// TestPriorityThenFIFO: a higher-priority queue's chat is offered before
// an older chat of a lower-priority queue; within a priority, first in,
// first out.
func TestPriorityThenFIFO(t *testing.T) {
	r := newRig(t)
	r.issueTypes("normal", "vip")
	normal := r.queue("normal", 1, nil)
	vip := r.queue("vip", 2, &parleyv1.QueuePolicy{Priority: 10})
	old, _ := r.chat("normal")
	r.srv.Clock.Advance(time.Minute)
	older, _ := r.chat("vip")
	r.srv.Clock.Advance(time.Minute)
	newer, _ := r.chat("vip")
	_, ann := r.agent("Ann", 1, normal, vip)
	offerID, _ := r.offeredTo(older)
	if r.pending(old) != nil || r.pending(newer) != nil {
		t.Fatal("more than the one offer Ann has room for")
	}
	r.accept(ann, offerID)
	_, err := ann.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: older})
	must(t, err)
	r.offeredTo(newer)
	if r.pending(old) != nil {
		t.Fatal("the normal chat was offered before the waiting VIP chat")
	}
}

// TestPassLooksPastARefusedHead: a pass first reads only the head of the
// line (a few dozen chats more than the free places); when the one agent
// with room rests from every chat there (she declined them a moment ago),
// the pass reads the rest of the line and offers her the first chat behind
// the head.
func TestPassLooksPastARefusedHead(t *testing.T) {
	r := newRig(t)
	r.issueTypes("busy")
	q := r.queue("busy", 1, nil)
	const declined = 40 // more than a pass reads first for one free place
	var chats []string
	for range declined + 1 {
		id, _ := r.chat("busy")
		chats = append(chats, id)
		r.srv.Clock.Advance(time.Second)
	}
	_, ann := r.agent("Ann", 1, q)
	for _, c := range chats[:declined] {
		offerID, _ := r.offeredTo(c)
		_, err := ann.Routing.DeclineOffer(r.ctx, &parleyv1.DeclineOfferRequest{OfferId: offerID})
		must(t, err)
	}
	r.offeredTo(chats[declined])
}

// TestWrapUpAndAutoAccept: an auto-accept queue assigns at once; after a
// chat of a queue with wrap-up closes, the agent's capacity stays held for
// the wrap-up time.
func TestWrapUpAndAutoAccept(t *testing.T) {
	r := newRig(t)
	r.issueTypes("auto")
	q := r.queue("auto", 1, &parleyv1.QueuePolicy{AutoAccept: true, WrapUp: durationpb.New(time.Minute)})
	annID, ann := r.agent("Ann", 1, q)
	first, _ := r.chat("auto")
	r.pass()
	if c := r.conversation(first); c.State != "assigned" || c.AgentID.String() != annID {
		t.Fatalf("auto-accept: %s with %v", c.State, c.AgentID)
	}
	_, err := ann.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: first})
	must(t, err)
	second, _ := r.chat("auto")
	r.advance(59 * time.Second)
	if c := r.conversation(second); c.State != "queued" || r.agentRow(annID).Load != 1 {
		t.Fatalf("during wrap-up: %s, load %d", c.State, r.agentRow(annID).Load)
	}
	r.advance(2 * time.Second)
	r.pass()
	if c := r.conversation(second); c.State != "assigned" {
		t.Fatalf("after wrap-up the next chat is %s", c.State)
	}
}

// TestRestartRecovery: offers, waiting chats and leases survive a restart:
// after it, a pending offer still expires on time and goes to the next
// agent, and waiting chats are assigned.
func TestRestartRecovery(t *testing.T) {
	file := t.TempDir() + "/parley.db"
	r := newRig(t, servertest.WithDBFile(file))
	r.issueTypes("again")
	q := r.queue("again", 1, nil)
	annID, _ := r.agent("Ann", 1, q)
	conv, _ := r.chat("again")
	offered, to := r.offeredTo(conv)
	if to != annID {
		t.Fatal("not offered to Ann")
	}
	waiting, _ := r.chat("again")
	r.srv.Stop()

	clk := r.srv.Clock
	r2 := newRig(t, servertest.WithDBFile(file), servertest.WithClock(clk))
	if o := r2.pending(conv); o == nil || o.ID.String() != offered {
		t.Fatal("the pending offer did not survive the restart")
	}
	// A new agent gets the chat that waited through the restart at once.
	bobID, bob := r2.agent("Bob", 2, q)
	offerID, to := r2.offeredTo(waiting)
	if to != bobID {
		t.Fatalf("the waiting chat went to %s, want Bob", to)
	}
	r2.accept(bob, offerID)
	// Ann's offer from before the restart still lapses on time, and the
	// chat goes on to the next agent.
	r2.advance(29 * time.Second)
	if r2.pending(conv) == nil {
		t.Fatal("the offer lapsed early")
	}
	r2.advance(2 * time.Second)
	if _, to := r2.offeredTo(conv); to != bobID {
		t.Fatalf("after the restart the lapsed offer went to %s, want Bob", to)
	}
	if a := r2.agentRow(annID); a.Presence != agent.PresenceAway || a.Load != 0 {
		t.Fatalf("Ann after the lapse: %s, load %d", a.Presence, a.Load)
	}
}

// TestSupervisorView: queue statuses count waiting chats and tell the
// oldest wait; the stream sends a queue's status again when it changes.
func TestSupervisorView(t *testing.T) {
	r := newRig(t)
	r.issueTypes("watch")
	q := r.queue("watch", 1, nil)
	sup, err := r.adm.Access.IssueToken(r.ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "lead"})
	must(t, err)
	supervisor := r.srv.Client(parley.Connect, sup.GetToken())
	stream, err := supervisor.Routing.WatchQueueStatuses(r.ctx, &parleyv1.WatchQueueStatusesRequest{})
	must(t, err)
	defer stream.Close()
	status := func(want int32) *parleyv1.QueueStatus {
		t.Helper()
		for {
			item, err := stream.Receive()
			must(t, err)
			if s := item.GetQueueStatus(); s.GetQueue().GetId() == q && s.GetWaiting() == want {
				return s
			}
		}
	}
	if s := status(0); s.GetOldestQueueTime() != nil {
		t.Fatalf("empty queue: %v", s)
	}
	r.chat("watch")
	if s := status(1); !s.GetOldestQueueTime().AsTime().Equal(t0) {
		t.Fatalf("one waiting: %v", s)
	}
	r.srv.Clock.Advance(time.Minute)
	r.chat("watch")
	status(2)
	list, err := supervisor.Routing.ListQueueStatuses(r.ctx, &parleyv1.ListQueueStatusesRequest{})
	must(t, err)
	for _, s := range list.GetStatuses() {
		if s.GetQueue().GetId() == q && (s.GetWaiting() != 2 || !s.GetOldestQueueTime().AsTime().Equal(t0)) {
			t.Fatalf("listed: %v", s)
		}
	}
}

// TestWithdrawnOfferReachesTheAgent: when a transfer offer is withdrawn
// because the chat moved to a queue instead, the offered agent's work
// stream says so at once (its heartbeat, an hour here, would be too late).
func TestWithdrawnOfferReachesTheAgent(t *testing.T) {
	r := newRig(t)
	r.issueTypes("move")
	q := r.queue("move", 1, nil)
	_, ann := r.agent("Ann", 2, q)
	conv, _ := r.chat("move")
	offerID, _ := r.offeredTo(conv)
	r.accept(ann, offerID)
	bobID, bob := r.agent("Bob", 2)
	// Past this deadline, a notice that never came fails the test.
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	stream, err := bob.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	must(t, err)
	defer stream.Close()
	transfer, err := ann.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
		ConversationId: conv, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: bobID},
	})
	must(t, err)
	for {
		item, err := stream.Receive()
		must(t, err)
		if item.GetOffer().GetId() == transfer.GetOfferId() {
			break
		}
	}
	_, err = ann.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
		ConversationId: conv, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_QueueId{QueueId: q},
	})
	must(t, err)
	item, err := stream.Receive()
	must(t, err)
	if c := item.GetOfferClosed(); c.GetOfferId() != transfer.GetOfferId() || c.GetOutcome() != "withdrawn" {
		t.Fatalf("Bob's stream said %v, want the offer withdrawn", item)
	}
}
