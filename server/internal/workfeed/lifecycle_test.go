package workfeed_test

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// lastEventBefore returns the last event of convID that f received before
// its item at index i.
func (f *feed) lastEventBefore(convID string, i int) *parleyv1.Event {
	for j := i - 1; j >= 0; j-- {
		if e := f.items[j].GetEvent(); e != nil && f.items[j].GetConversationId() == convID {
			return e
		}
	}
	return nil
}

// releasedAt receives items until convID is released and returns the
// release's index in f.items.
func (f *feed) releasedAt(convID string) int {
	f.t.Helper()
	f.until(func(i *parleyv1.FollowWorkResponse) bool {
		return i.GetReleased() != nil && i.GetConversationId() == convID
	})
	return len(f.items) - 1
}

// TestTransferReleasesAndAssigns: a chat transferred to a colleague is
// released on the sender's stream once the colleague accepts it, after
// the events up to the sender leaving it, and nothing of it follows; the
// colleague's stream offers it, then assigns it and replays its whole log,
// then follows it live.
func TestTransferReleasesAndAssigns(t *testing.T) {
	r := newRig(t)
	_, ann := r.agent("Ann", 2)
	x, guestX := r.chat()
	r.accept(ann, x)
	y, guestY := r.chat()
	r.accept(ann, y)
	bobID, bob := r.agent("Bob", 2)
	fa := r.follow(ann, nil)
	fb := r.follow(bob, nil)
	fa.upTo(x, r.say(guestX, x, "before"))
	fa.upTo(y, r.lastSeq(y))

	tr, err := ann.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
		ConversationId: x, RequestId: uuid.NewString(), Note: "yours",
		Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: bobID},
	})
	must(t, err)
	offered := fb.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetOffer() != nil })
	if offered.GetConversationId() != x || offered.GetOffer().GetId() != tr.GetOfferId() {
		t.Fatalf("bob was offered %v, want the transfer of %s", offered, x)
	}
	_, err = bob.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: tr.GetOfferId()})
	must(t, err)

	// Ann: the rest of what she may read, up to her leaving, then released.
	at := fa.releasedAt(x)
	if left := fa.lastEventBefore(x, at); left.GetParticipantLeft() == nil {
		t.Fatalf("ann's last event of %s before its release is %v, want her leaving", x, left)
	}
	if got := fa.items[at].GetReleased().GetAgentId(); got != bobID {
		t.Fatalf("released conversation has agent %q, want bob %s", got, bobID)
	}
	// Bob: the offer closes, the chat is assigned and replayed from the
	// start (checked by next: seq 1 first), then followed live.
	fb.upTo(x, r.lastSeq(x))
	after := r.say(guestX, x, "after")
	fb.upTo(x, after)
	if fb.seq[x] != after {
		t.Fatalf("bob's stream at seq %d of %s, want %d", fb.seq[x], x, after)
	}
	// Nothing more of x reaches Ann (next fails on any item of a released
	// chat), while her other chat goes on.
	fa.upTo(y, r.say(guestY, y, "still here"))
}

// TestChatsThatLeftWhileAwayAreReleased: an agent's client that was away
// while one chat was transferred to a colleague and another closed reopens
// the stream with its cursors: each gets the events the agent may still
// read after its cursor (up to the agent leaving it; up to the close),
// then released, and synced follows; a chat still held is assigned and
// resumes; a cursor of a chat the agent may not read is released alone,
// with nothing of it but its id. Nothing more of the gone chats follows.
func TestChatsThatLeftWhileAwayAreReleased(t *testing.T) {
	r := newRig(t)
	_, ann := r.agent("Ann", 3)
	x, guestX := r.chat()
	r.accept(ann, x)
	y, guestY := r.chat()
	r.accept(ann, y)
	z, guestZ := r.chat()
	r.accept(ann, z)
	bobID, bob := r.agent("Bob", 3)
	before := map[string]int64{x: r.lastSeq(x), y: r.lastSeq(y), z: r.lastSeq(z)}

	// While Ann's client is away: x goes to Bob, y is closed, z goes on.
	r.say(guestX, x, "anyone?")
	tr, err := ann.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
		ConversationId: x, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: bobID},
	})
	must(t, err)
	_, err = bob.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: tr.GetOfferId()})
	must(t, err)
	r.say(guestY, y, "thanks, bye")
	_, err = guestY.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: y})
	must(t, err)
	r.say(guestZ, z, "still here")
	// A chat of another queue, which Ann may not read.
	other, err := r.anon.Session.StartGuestChat(r.ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Other", Email: "other@example.com", IssueType: "order",
	})
	must(t, err)
	stranger := other.GetConversation().GetId()

	cursors := maps.Clone(before)
	cursors[stranger] = 0
	fa := r.follow(ann, cursors)
	fa.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetSynced() != nil })
	for _, id := range []string{x, y, stranger} {
		if !fa.released[id] {
			t.Fatalf("conversation %s was not released before synced", id)
		}
	}
	releasedAt := func(id string) int {
		return slices.IndexFunc(fa.items, func(i *parleyv1.FollowWorkResponse) bool {
			return i.GetReleased() != nil && i.GetConversationId() == id
		})
	}
	if left := fa.lastEventBefore(x, releasedAt(x)); left.GetParticipantLeft() == nil {
		t.Fatalf("ann's last event of %s is %v, want her leaving", x, left)
	}
	if closing := fa.lastEventBefore(y, releasedAt(y)); closing.GetConversationClosed() == nil || fa.seq[y] != r.lastSeq(y) {
		t.Fatalf("ann's last event of %s is %v at %d, want its close at %d", y, closing, fa.seq[y], r.lastSeq(y))
	}
	if fa.seq[stranger] != 0 || fa.items[releasedAt(stranger)].GetReleased().GetState() != parleyv1.ConversationState_CONVERSATION_STATE_UNSPECIFIED {
		t.Fatalf("ann got %d events, or the state, of a chat she may not read", fa.seq[stranger])
	}
	if !fa.held[z] {
		t.Fatalf("the held chat %s was not assigned before synced", z)
	}
	// z resumes from its cursor (checked by next), and nothing more of x
	// reaches Ann while Bob and the guest go on there.
	r.say(bob, x, "Bob here")
	fa.upTo(z, r.say(guestZ, z, "hello again"))
}

// TestClosedChatEndsWithItsClosingEvent: a closed chat's last items are
// its closing event, then released.
func TestClosedChatEndsWithItsClosingEvent(t *testing.T) {
	r := newRig(t)
	_, agent := r.agent("Closer", 2)
	x, guestX := r.chat()
	r.accept(agent, x)
	y, guestY := r.chat()
	r.accept(agent, y)
	f := r.follow(agent, nil)
	f.upTo(x, r.say(guestX, x, "bye"))
	_, err := guestX.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: x})
	must(t, err)
	at := f.releasedAt(x)
	if last := f.lastEventBefore(x, at); last.GetConversationClosed() == nil {
		t.Fatalf("last event of %s before its release is %v, want its closing", x, last)
	}
	if f.items[at].GetReleased().GetState() != parleyv1.ConversationState_CONVERSATION_STATE_CLOSED {
		t.Fatalf("released %v, want it closed", f.items[at].GetReleased())
	}
	f.upTo(y, r.say(guestY, y, "still here"))

	// The agent closing it: the same.
	_, err = agent.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: y})
	must(t, err)
	at = f.releasedAt(y)
	if last := f.lastEventBefore(y, at); last.GetConversationClosed() == nil {
		t.Fatalf("last event of %s before its release is %v, want its closing", y, last)
	}
}

// TestRevocationEndsTheStream: a revoked token's stream ends with
// Unauthenticated, and nothing written after the revocation reaches it.
func TestRevocationEndsTheStream(t *testing.T) {
	r := newRig(t)
	id, _ := r.agent("Revoked", 2)
	issued, err := r.adm.Access.IssueToken(r.ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_AGENT, AgentId: id, Label: "test"})
	must(t, err)
	agent := r.srv.Client(parley.Connect, issued.GetToken())
	x, guest := r.chat()
	r.accept(agent, x)
	f := r.follow(agent, nil)
	f.upTo(x, r.lastSeq(x))
	_, err = r.adm.Access.RevokeToken(r.ctx, &parleyv1.RevokeTokenRequest{TokenId: issued.GetInfo().GetId()})
	must(t, err)
	secret := r.say(guest, x, "my card number is ...")
	for {
		item, err := f.stream.Receive()
		if err != nil {
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("revoked stream ended with %v, want Unauthenticated", err)
			}
			break
		}
		if item.GetEvent().GetSeq() >= secret {
			t.Fatalf("revoked stream sent %v", item)
		}
	}
	// The token no longer opens one.
	stream, err := agent.Routing.FollowWork(r.ctx, &parleyv1.FollowWorkRequest{})
	if err == nil {
		_, err = stream.Receive()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("revoked token opened FollowWork: %v", err)
	}
}

// TestAgentsOnly: guests, customers, supervisors and admins are refused.
func TestAgentsOnly(t *testing.T) {
	r := newRig(t)
	_, guest := r.chat()
	sup, err := r.adm.Access.IssueToken(r.ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "sup"})
	must(t, err)
	for name, c := range map[string]*parley.Client{
		"guest":      guest,
		"customer":   r.srv.Client(parley.Connect, r.srv.CustomerToken(t, "c-1", "Carla", "carla@example.com")),
		"supervisor": r.srv.Client(parley.Connect, sup.GetToken()),
		"admin":      r.adm,
	} {
		stream, err := c.Routing.FollowWork(r.ctx, &parleyv1.FollowWorkRequest{})
		if err == nil {
			_, err = stream.Receive()
		}
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	anon, err := r.anon.Routing.FollowWork(r.ctx, &parleyv1.FollowWorkRequest{})
	if err == nil {
		_, err = anon.Receive()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}
}

// TestIdleStreamBeats: a stream silent for the heartbeat interval sends a
// heartbeat, timed from its last item; offers and assignments of new work
// reach an open stream, which keeps the agent online.
func TestIdleStreamBeats(t *testing.T) {
	r := newRig(t, servertest.WithAppOptions(app.Options{SweepInterval: time.Hour}))
	id, agent := r.agent("Beater", 2)
	x, guest := r.chat()
	r.accept(agent, x)
	f := r.follow(agent, nil)
	f.upTo(x, r.lastSeq(x))
	// The open stream holds the agent's work stream lease.
	a, err := r.srv.DB.Agent.Get(r.ctx, uuid.MustParse(id))
	must(t, err)
	if a.StreamLeaseUntil == nil || !a.StreamLeaseUntil.After(r.srv.Clock.Now()) {
		t.Fatalf("agent's stream lease %v, want one after %v", a.StreamLeaseUntil, r.srv.Clock.Now())
	}
	for range 2 {
		r.srv.Clock.Advance(app.DefaultHeartbeat)
		beat := f.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetHeartbeat() != nil })
		if !beat.GetHeartbeat().GetSendTime().AsTime().Equal(r.srv.Clock.Now()) {
			t.Fatalf("heartbeat %v, want one sent at %v", beat, r.srv.Clock.Now())
		}
	}
	f.upTo(x, r.say(guest, x, "hi"))
	// A new chat is offered on the stream.
	y, _ := r.chat()
	must(t, r.srv.App.Dispatch(r.ctx))
	offered := f.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetOffer() != nil })
	if offered.GetConversationId() != y {
		t.Fatalf("offer %v, want one of %s", offered, y)
	}
	_, err = agent.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: offered.GetOffer().GetId()})
	must(t, err)
	closed := f.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetOfferClosed() != nil })
	if closed.GetOfferClosed().GetOutcome() != "accepted" {
		t.Fatalf("offer closed %v, want accepted", closed)
	}
	f.upTo(y, r.lastSeq(y))
}

// TestAcrossReplicas: on PostgreSQL, an agent following its work on one
// replica gets what guests and a colleague do on another: every message
// of its chats in order, typing, a transfer's release, a close.
func TestAcrossReplicas(t *testing.T) {
	if storetest.PostgresURL() == "" {
		t.Skip("PARLEY_TEST_POSTGRES is not set")
	}
	file := filepath.Join(t.TempDir(), "shared.db")
	clk := clock.NewFake(t0)
	opts := []servertest.Option{
		servertest.WithDBFile(file), servertest.WithClock(clk), unlimitedGuests, servertest.WithoutWriteLimits(),
		servertest.WithAppOptions(app.Options{SweepInterval: time.Hour, Heartbeat: time.Hour}),
	}
	a := servertest.Start(t, opts...)
	b := servertest.Start(t, opts...)
	r := rigOn(t, a)
	_, token := r.agentToken("Ann", 8)
	annA := a.Client(parley.Connect, token)
	convs := make([]string, 8)
	guests := map[string]*parley.Client{}
	for i := range convs {
		var g *parley.Client
		convs[i], g = r.chat()
		guests[convs[i]] = g
		r.accept(annA, convs[i])
	}
	bobID, bob := r.agent("Bob", 2)
	// Ann follows on replica b; everything else happens on a.
	annB := b.Client(parley.Connect, token)
	f := r.follow(annB, nil)
	fb := r.follow(bob, nil)
	want := map[string]int64{}
	for round := range 2 {
		for _, c := range convs {
			want[c] = r.say(guests[c], c, fmt.Sprintf("round %d", round))
		}
	}
	for _, c := range convs {
		f.upTo(c, want[c])
	}
	_, err := guests[convs[1]].Messaging.SetTyping(r.ctx, &parleyv1.SetTypingRequest{ConversationId: convs[1], Typing: true})
	must(t, err)
	if typing := f.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetTyping() != nil }); typing.GetConversationId() != convs[1] {
		t.Fatalf("typing %v, want in %s", typing, convs[1])
	}
	tr, err := annA.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
		ConversationId: convs[2], RequestId: uuid.NewString(),
		Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: bobID},
	})
	must(t, err)
	fb.until(func(i *parleyv1.FollowWorkResponse) bool { return i.GetOffer() != nil })
	_, err = bob.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: tr.GetOfferId()})
	must(t, err)
	at := f.releasedAt(convs[2])
	if left := f.lastEventBefore(convs[2], at); left.GetParticipantLeft() == nil {
		t.Fatalf("last event of %s before its release on replica b is %v, want Ann leaving", convs[2], left)
	}
	fb.upTo(convs[2], r.lastSeq(convs[2]))
	_, err = guests[convs[3]].Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: convs[3]})
	must(t, err)
	at = f.releasedAt(convs[3])
	if last := f.lastEventBefore(convs[3], at); last.GetConversationClosed() == nil {
		t.Fatalf("last event of %s before its release on replica b is %v, want its closing", convs[3], last)
	}
	f.upTo(convs[4], r.say(guests[convs[4]], convs[4], "last"))
}

// TestStreamEndsWithResumeCode: at its maximum lifetime, and when the
// server drains, the stream ends with Unavailable and the reason; opened
// again with its cursors, it goes on where it was.
func TestStreamEndsWithResumeCode(t *testing.T) {
	// Shorter than the demo's abandon_after, so that the chat stays open.
	const lifetime = 20 * time.Minute
	r := newRig(t, servertest.WithAppOptions(app.Options{SweepInterval: time.Hour, Heartbeat: 10 * lifetime, MaxStreamLifetime: lifetime}))
	_, agent := r.agent("Mortal", 2)
	x, guest := r.chat()
	r.accept(agent, x)
	f := r.follow(agent, nil)
	f.upTo(x, r.lastSeq(x))
	sent := r.say(guest, x, "still there?")
	r.srv.Clock.Advance(lifetime)
	f.endsWith(connect.CodeUnavailable, "STREAM_LIFETIME_REACHED")

	again := r.follow(agent, map[string]int64{x: f.seq[x]})
	again.upTo(x, sent)
	r.srv.App.Drain()
	again.endsWith(connect.CodeUnavailable, "SERVER_DRAINING")
}

// TestTransferToQueueReleases: a chat the agent puts back in a queue is
// released at once, after the events of its hand-back, and nothing of it
// follows while it waits.
func TestTransferToQueueReleases(t *testing.T) {
	r := newRig(t)
	_, ann := r.agent("Ann", 2)
	x, guestX := r.chat()
	r.accept(ann, x)
	y, guestY := r.chat()
	r.accept(ann, y)
	f := r.follow(ann, nil)
	f.upTo(x, r.say(guestX, x, "before"))
	f.upTo(y, r.lastSeq(y))
	_, err := ann.Routing.TransferConversation(r.ctx, &parleyv1.TransferConversationRequest{
		ConversationId: x, RequestId: uuid.NewString(),
		Target: &parleyv1.TransferConversationRequest_QueueId{QueueId: r.queue},
	})
	must(t, err)
	at := f.releasedAt(x)
	left := false
	for _, item := range f.items[:at] {
		left = left || item.GetConversationId() == x && item.GetEvent().GetParticipantLeft() != nil
	}
	if !left {
		t.Fatalf("%s released before the event of the agent leaving it", x)
	}
	if state := f.items[at].GetReleased().GetState(); state != parleyv1.ConversationState_CONVERSATION_STATE_QUEUED {
		t.Fatalf("released in state %v, want queued", state)
	}
	r.say(guestX, x, "anyone?")
	f.upTo(y, r.say(guestY, y, "still here"))
}
