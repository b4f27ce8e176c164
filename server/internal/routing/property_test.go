package routing_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// TestRoutingProperties drives the real server with random sequences of
// what happens in a contact center (chats start, agents change presence,
// accept, decline or ignore offers, chats close, time passes) on a fake
// clock, and after every routing pass checks, from the store:
//
//   - no chat waits while an agent who could take it has free capacity
//     (one who refused it in the last offer timeout rests from it);
//   - within a queue, nothing still waiting ranks before (priority, then
//     first in, first out) a chat offered in the pass;
//   - every agent's load is exactly their held chats plus pending offers,
//     and never above capacity;
//
// and at the end that every offer ended: accepted, declined, expired, or
// withdrawn because the chat closed or the agent left.
func TestRoutingProperties(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { runRoutingProperties(t, uint64(seed)) })
	}
}

type simAgent struct {
	id     string
	client *parley.Client
}

type simChat struct {
	id    string
	guest *parley.Client
}

func runRoutingProperties(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	r := newRig(t)
	r.issueTypes("low", "high")
	queues := []string{
		r.queue("low", 1, nil),
		r.queue("high", 2, &parleyv1.QueuePolicy{Priority: 5, Strategy: parleyv1.RoutingStrategy_ROUTING_STRATEGY_LEAST_RECENTLY_ASSIGNED}),
	}
	var agents []simAgent
	for i := range 4 {
		var member []string
		for _, q := range queues {
			if rng.IntN(3) > 0 {
				member = append(member, q)
			}
		}
		id, c := r.agent(fmt.Sprint("Agent ", i), int32(1+rng.IntN(3)), member...)
		agents = append(agents, simAgent{id, c})
	}
	var chats []simChat
	known := map[uuid.UUID]bool{} // offers seen so far
	presences := []parleyv1.Presence{parleyv1.Presence_PRESENCE_AVAILABLE, parleyv1.Presence_PRESENCE_AVAILABLE, parleyv1.Presence_PRESENCE_AWAY, parleyv1.Presence_PRESENCE_OFFLINE}

	for step := range 150 {
		a := agents[rng.IntN(len(agents))]
		switch rng.IntN(7) {
		case 0, 1:
			id, guest := r.chat([]string{"low", "high"}[rng.IntN(2)])
			chats = append(chats, simChat{id, guest})
		case 2:
			r.presence(a.client, presences[rng.IntN(len(presences))])
		case 3, 4:
			if o := r.offerOf(a.id, rng); o != nil {
				if rng.IntN(3) > 0 {
					_, err := a.client.Routing.AcceptOffer(r.ctx, &parleyv1.AcceptOfferRequest{OfferId: o.ID.String()})
					must(t, err)
				} else {
					_, err := a.client.Routing.DeclineOffer(r.ctx, &parleyv1.DeclineOfferRequest{OfferId: o.ID.String()})
					must(t, err)
				}
			}
		case 5:
			if len(chats) > 0 {
				c := chats[rng.IntN(len(chats))]
				if r.conversation(c.id).State != conversation.StateClosed {
					closer := c.guest
					if held := r.conversation(c.id).AgentID; held != nil && rng.IntN(2) == 0 {
						closer = agents[r.agentIndex(agents, held.String())].client
					}
					_, err := closer.Session.CloseConversation(r.ctx, &parleyv1.CloseConversationRequest{ConversationId: c.id})
					must(t, err)
				}
			}
		case 6:
			r.srv.Clock.Advance(time.Duration(rng.IntN(40)) * time.Second)
		}
		before := r.waitingUnoffered()
		r.pass()
		r.checkInvariants(step, before, known)
	}
	// Everyone leaves: every offer has ended.
	for _, a := range agents {
		r.presence(a.client, parleyv1.Presence_PRESENCE_OFFLINE)
	}
	r.pass()
	offers, err := r.srv.DB.Offer.Query().All(r.ctx)
	must(t, err)
	for _, o := range offers {
		if o.State == offer.StatePending {
			t.Fatalf("offer %s is still pending after every agent left", o.ID)
		}
	}
	if len(offers) == 0 {
		t.Fatal("the run made no offers, so it proved nothing")
	}
}

// resting tells whether agent a declined chat c or let its offer lapse
// within the queue's offer timeout (30 s in these tests), so it is not
// offered c again yet.
func (r *rig) resting(c *ent.Conversation, a *ent.Agent) bool {
	r.t.Helper()
	n, err := r.srv.DB.Offer.Query().Where(
		offer.ConversationID(c.ID), offer.AgentID(a.ID),
		offer.StateIn(offer.StateDeclined, offer.StateExpired),
		offer.DecidedAtGT(r.srv.Clock.Now().Add(-30*time.Second)),
	).Count(r.ctx)
	must(r.t, err)
	return n > 0
}

func (r *rig) agentIndex(agents []simAgent, id string) int {
	for i, a := range agents {
		if a.id == id {
			return i
		}
	}
	r.t.Fatalf("no agent %s", id)
	return -1
}

// offerOf returns one of an agent's pending offers at random, or nil.
func (r *rig) offerOf(agentID string, rng *rand.Rand) *ent.Offer {
	r.t.Helper()
	offers, err := r.srv.DB.Offer.Query().Where(offer.AgentID(uuid.MustParse(agentID)), offer.StateEQ(offer.StatePending)).All(r.ctx)
	must(r.t, err)
	if len(offers) == 0 {
		return nil
	}
	return offers[rng.IntN(len(offers))]
}

// waitingUnoffered returns the ids of queued chats without a pending offer.
func (r *rig) waitingUnoffered() map[uuid.UUID]bool {
	r.t.Helper()
	ids, err := r.srv.DB.Conversation.Query().Where(
		conversation.StateEQ(conversation.StateQueued),
		conversation.Not(conversation.HasOffersWith(offer.StateEQ(offer.StatePending))),
	).IDs(r.ctx)
	must(r.t, err)
	out := map[uuid.UUID]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// ranksBefore tells whether a is served before b: higher priority, then
// queued earlier, then smaller id.
func ranksBefore(a, b *ent.Conversation) bool {
	return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.QueuedAt.Compare(*b.QueuedAt), cmp.Compare(a.ID.String(), b.ID.String())) < 0
}

func (r *rig) checkInvariants(step int, waitingBefore map[uuid.UUID]bool, known map[uuid.UUID]bool) {
	t := r.t
	t.Helper()
	agents, err := r.srv.DB.Agent.Query().WithQueues().All(r.ctx)
	must(t, err)
	// Load is exactly what the agent holds, and within capacity.
	for _, a := range agents {
		held, err := r.srv.DB.Conversation.Query().Where(conversation.AgentID(a.ID), conversation.StateEQ(conversation.StateAssigned)).Count(r.ctx)
		must(t, err)
		pending, err := r.srv.DB.Offer.Query().Where(offer.AgentID(a.ID), offer.StateEQ(offer.StatePending)).Count(r.ctx)
		must(t, err)
		if a.Load != held+pending || a.Load > a.Capacity {
			t.Fatalf("step %d: %s has load %d with %d held and %d offered, capacity %d", step, a.DisplayName, a.Load, held, pending, a.Capacity)
		}
	}
	waiting, err := r.srv.DB.Conversation.Query().Where(conversation.StateEQ(conversation.StateQueued)).WithOffers().All(r.ctx)
	must(t, err)
	var unoffered, offeredNow []*ent.Conversation
	offeredAgent := map[uuid.UUID]*ent.Agent{}
	for _, c := range waiting {
		hasPending := false
		for _, o := range c.Edges.Offers {
			if o.State == offer.StatePending {
				hasPending = true
				if !known[o.ID] {
					offeredNow = append(offeredNow, c)
					for _, a := range agents {
						if a.ID == o.AgentID {
							offeredAgent[c.ID] = a
						}
					}
				}
			}
			known[o.ID] = true
		}
		if !hasPending {
			unoffered = append(unoffered, c)
		}
	}
	for _, c := range unoffered {
		// Nobody who could take it has room.
		for _, a := range agents {
			member := false
			for _, q := range a.Edges.Queues {
				member = member || q.ID == *c.QueueID
			}
			if member && a.Presence == agent.PresenceAvailable && a.Load < a.Capacity && !r.resting(c, a) {
				t.Fatalf("step %d: chat %s waits while %s (load %d of %d) could take it", step, c.ID, a.DisplayName, a.Load, a.Capacity)
			}
		}
		// Nothing it ranks before was offered instead to an agent who could
		// have taken it.
		for _, o := range offeredNow {
			if waitingBefore[o.ID] && waitingBefore[c.ID] && *o.QueueID == *c.QueueID && ranksBefore(c, o) && !r.resting(c, offeredAgent[o.ID]) {
				t.Fatalf("step %d: chat %s was offered before %s, which ranks first", step, o.ID, c.ID)
			}
		}
	}
}
