package routing_test

import (
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
)

// sameAgentRounds is how many offers each concurrent-decision test makes.
const sameAgentRounds = 50

// devicesRig is a rig with one agent signed in on several devices (each
// its own client, so its own connection). The agent holds one chat
// throughout, so a capacity released twice shows as a load below one.
type devicesRig struct {
	*rig
	agentID string
	devices []*parley.Client
}

func newDevicesRig(t *testing.T, devices int) *devicesRig {
	r := newRig(t)
	r.issueTypes("twice")
	q := r.queue("twice", 1, nil)
	a, err := r.adm.Routing.CreateAgent(r.ctx, &parleyv1.CreateAgentRequest{DisplayName: "Dee", Capacity: 3, QueueIds: []string{q}})
	must(t, err)
	d := &devicesRig{rig: r, agentID: a.GetAgent().GetId()}
	for range devices {
		d.devices = append(d.devices, r.srv.Client(parley.Connect, a.GetToken()))
	}
	r.presence(d.devices[0], parleyv1.Presence_PRESENCE_AVAILABLE)
	held, _ := r.chat("twice")
	offerID, _ := r.offeredTo(held)
	r.accept(d.devices[0], offerID)
	return d
}

// offer starts a chat and returns it with its offer, which is the agent's.
func (d *devicesRig) offer() (convID, offerID string) {
	d.t.Helper()
	convID, _ = d.chat("twice")
	offerID, to := d.offeredTo(convID)
	if to != d.agentID {
		d.t.Fatalf("offered to %s, want %s", to, d.agentID)
	}
	return convID, offerID
}

// decision is one call a device makes on an offer.
type decision struct {
	accept bool
	resp   *parleyv1.AcceptOfferResponse
	err    error
}

// decide makes the decisions at once, device i making the i-th, and
// returns them with their answers.
func (d *devicesRig) decide(offerID string, accepts ...bool) []decision {
	out := make([]decision, len(accepts))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, accept := range accepts {
		c := d.devices[i%len(d.devices)]
		wg.Go(func() {
			<-start
			out[i].accept = accept
			if accept {
				out[i].resp, out[i].err = c.Routing.AcceptOffer(d.ctx, &parleyv1.AcceptOfferRequest{OfferId: offerID})
			} else {
				_, out[i].err = c.Routing.DeclineOffer(d.ctx, &parleyv1.DeclineOfferRequest{OfferId: offerID})
			}
		})
	}
	close(start)
	wg.Wait()
	return out
}

// check verifies that the chat ended as the winning decision says (held by
// the agent once, or back in its queue), that the agent's load counts it
// exactly once, and then closes it.
func (d *devicesRig) check(round int, convID string, accepted bool) {
	d.t.Helper()
	conv := d.conversation(convID)
	offers, err := d.srv.DB.Offer.Query().Where(offer.ConversationID(conv.ID)).Order(ent.Asc(offer.FieldCreatedAt)).All(d.ctx)
	must(d.t, err)
	want := offer.StateDeclined
	if accepted {
		want = offer.StateAccepted
	}
	// A routing pass that read the chat as waiting before it was offered
	// must not offer it straight back once it is declined: the agent rests
	// from it (Dispatcher.offer re-checks refusals made since its snapshot).
	if len(offers) != 1 || offers[0].State != want {
		d.t.Fatalf("round %d: offers %v, want one %s", round, offers, want)
	}
	joins, err := d.srv.DB.Event.Query().Where(
		event.ConversationID(conv.ID), event.Kind("participant_joined"), event.SenderID(d.agentID),
	).Count(d.ctx)
	must(d.t, err)
	load := 1 // the chat held throughout
	if accepted {
		load = 2
		if conv.AgentID == nil || conv.AgentID.String() != d.agentID || conv.State != conversation.StateAssigned {
			d.t.Fatalf("round %d: the chat is %s with %v, want assigned to %s", round, conv.State, conv.AgentID, d.agentID)
		}
		if joins != 1 {
			d.t.Fatalf("round %d: the agent joined %d times", round, joins)
		}
	} else {
		if conv.AgentID != nil || conv.State != conversation.StateQueued {
			d.t.Fatalf("round %d: the chat is %s with %v, want queued", round, conv.State, conv.AgentID)
		}
		if joins != 0 {
			d.t.Fatalf("round %d: the agent joined a declined chat %d times", round, joins)
		}
	}
	if got := d.agentRow(d.agentID).Load; got != load {
		d.t.Fatalf("round %d: load %d, want %d", round, got, load)
	}
	_, err = d.adm.Session.CloseConversation(d.ctx, &parleyv1.CloseConversationRequest{ConversationId: convID})
	must(d.t, err)
	if got := d.agentRow(d.agentID).Load; got != 1 {
		d.t.Fatalf("round %d: load %d after closing the chat, want 1", round, got)
	}
}

// TestSameAgentAcceptsConcurrently: an agent accepts one offer from four
// devices at once (or retries while the first call is in flight). Every
// call answers with the conversation, now the agent's; the agent holds it
// once: one accepted offer, one join in the log, capacity counted once.
func TestSameAgentAcceptsConcurrently(t *testing.T) {
	d := newDevicesRig(t, 4)
	for round := range sameAgentRounds {
		convID, offerID := d.offer()
		for i, got := range d.decide(offerID, true, true, true, true) {
			if got.err != nil {
				t.Fatalf("round %d: accept %d: %v (%s)", round, i, got.err, apierr.Reason(got.err))
			}
			c := got.resp.GetConversation()
			if c.GetId() != convID || c.GetAgentId() != d.agentID || c.GetState() != parleyv1.ConversationState_CONVERSATION_STATE_ASSIGNED {
				t.Fatalf("round %d: accept %d answered %v", round, i, c)
			}
		}
		d.check(round, convID, true)
	}
}

// TestSameAgentDeclinesConcurrently: an agent declines one offer from
// four devices at once. Every call succeeds; the offer is declined once
// and the agent's capacity released once.
func TestSameAgentDeclinesConcurrently(t *testing.T) {
	d := newDevicesRig(t, 4)
	for round := range sameAgentRounds {
		convID, offerID := d.offer()
		for i, got := range d.decide(offerID, false, false, false, false) {
			if got.err != nil {
				t.Fatalf("round %d: decline %d: %v (%s)", round, i, got.err, apierr.Reason(got.err))
			}
		}
		d.check(round, convID, false)
	}
}

// TestSameAgentAcceptsAndDeclinesConcurrently: an agent accepts one offer
// from two devices and declines it from two others, all at once. One
// decision wins: both of its calls succeed, both of the other's answer
// FailedPrecondition OFFER_CLOSED naming the winning outcome, and the chat
// and the agent's load are as the winner says.
func TestSameAgentAcceptsAndDeclinesConcurrently(t *testing.T) {
	d := newDevicesRig(t, 4)
	wins := map[bool]int{}
	for round := range sameAgentRounds {
		convID, offerID := d.offer()
		got := d.decide(offerID, true, false, true, false)
		accepted := got[0].err == nil || got[2].err == nil
		wins[accepted]++
		outcome := "declined"
		if accepted {
			outcome = "accepted"
		}
		for i, g := range got {
			if g.accept == accepted {
				if g.err != nil {
					t.Fatalf("round %d: call %d (accept %t) failed although the offer was %s: %v", round, i, g.accept, outcome, g.err)
				}
				continue
			}
			if connect.CodeOf(g.err) != connect.CodeFailedPrecondition || apierr.Reason(g.err) != "OFFER_CLOSED" ||
				!strings.Contains(g.err.Error(), outcome) {
				t.Fatalf("round %d: call %d (accept %t) answered %v (%s), want FailedPrecondition OFFER_CLOSED naming %s",
					round, i, g.accept, g.err, apierr.Reason(g.err), outcome)
			}
		}
		d.check(round, convID, accepted)
	}
	t.Logf("accept won %d rounds, decline %d", wins[true], wins[false])
}
