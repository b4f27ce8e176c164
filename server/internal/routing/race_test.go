package routing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// TestFiftyAgentsRaceForOneOffer: 50 available agents of one queue race
// to accept the one offer of a waiting chat (each sends AcceptOffer for
// it at once, while four routing passes run too), 100 times (1,000 in a
// soak run, 20 with -short). Exactly one wins, the offered agent; the 49
// others get FailedPrecondition; the chat ends with one agent; no agent's
// load exceeds its capacity. On PostgreSQL the agents are spread over
// three replicas (servers on one database), each making routing passes.
func TestFiftyAgentsRaceForOneOffer(t *testing.T) {
	rounds := soakOr(20, 100, 1000)
	replicas := []*servertest.Server{servertest.Start(t, unlimitedGuests, servertest.WithoutWriteLimits())}
	if storetest.PostgresURL() != "" {
		file := filepath.Join(t.TempDir(), "parley.db")
		replicas = nil
		for range 3 {
			replicas = append(replicas, servertest.Start(t, unlimitedGuests, servertest.WithoutWriteLimits(), servertest.WithDBFile(file)))
		}
	}
	srv := replicas[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	adm := srv.Client(parley.Connect, servertest.AdminToken)
	q, err := adm.Routing.CreateQueue(ctx, &parleyv1.CreateQueueRequest{DisplayName: "Race"})
	must(t, err)
	_, err = adm.Routing.CreateMatchingRule(ctx, &parleyv1.CreateMatchingRuleRequest{
		DisplayName: "race", Order: 1, QueueId: q.GetQueue().GetId(),
		Condition: &parleyv1.Condition{Kind: &parleyv1.Condition_FieldIn{FieldIn: &parleyv1.FieldIn{Field: "issue_type", Values: []string{"billing"}}}},
	})
	must(t, err)
	agents := make([]*parley.Client, 50)
	ids := map[string]int{}
	for i := range agents {
		a, err := adm.Routing.CreateAgent(ctx, &parleyv1.CreateAgentRequest{
			DisplayName: fmt.Sprintf("Racer %02d", i), Capacity: 2, QueueIds: []string{q.GetQueue().GetId()},
		})
		must(t, err)
		agents[i] = replicas[i%len(replicas)].Client(parley.Connect, a.GetToken())
		ids[a.GetAgent().GetId()] = i
		_, err = agents[i].Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
		must(t, err)
	}
	anon := srv.Client(parley.Connect, "")
	for round := range rounds {
		start, err := anon.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
			RequestId: uuid.NewString(), Name: "Racer", Email: "r@example.com", IssueType: "billing",
		})
		must(t, err)
		convID := uuid.MustParse(start.GetConversation().GetId())
		var o offerRow
		for o.id == "" {
			must(t, srv.App.Dispatch(ctx))
			row, err := srv.DB.Offer.Query().Where(offer.ConversationID(convID), offer.StateEQ(offer.StatePending)).Only(ctx)
			if err == nil {
				o = offerRow{row.ID.String(), row.AgentID.String()}
			}
		}
		var wg sync.WaitGroup
		codes := make([]connect.Code, len(agents))
		won := make([]bool, len(agents))
		for i, c := range agents {
			wg.Go(func() {
				_, err := c.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: o.id})
				won[i], codes[i] = err == nil, connect.CodeOf(err)
			})
		}
		for i := range 4 {
			wg.Go(func() { _ = replicas[i%len(replicas)].App.Dispatch(ctx) })
		}
		wg.Wait()
		winners := 0
		for i := range agents {
			switch {
			case won[i]:
				winners++
				if i != ids[o.agent] {
					t.Fatalf("round %d: agent %d won an offer made to agent %d", round, i, ids[o.agent])
				}
			case codes[i] != connect.CodeFailedPrecondition:
				t.Fatalf("round %d: agent %d got %v, want FailedPrecondition", round, i, codes[i])
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d winners", round, winners)
		}
		conv, err := srv.DB.Conversation.Get(ctx, convID)
		must(t, err)
		if conv.AgentID == nil || conv.AgentID.String() != o.agent {
			t.Fatalf("round %d: the chat is with %v, want %s", round, conv.AgentID, o.agent)
		}
		if n, err := srv.DB.Offer.Query().Where(offer.ConversationID(convID), offer.StateEQ(offer.StateAccepted)).Count(ctx); err != nil || n != 1 {
			t.Fatalf("round %d: %d accepted offers (%v)", round, n, err)
		}
		_, err = agents[ids[o.agent]].Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: conv.ID.String()})
		must(t, err)
	}
	all, err := srv.DB.Agent.Query().Where(agent.LoadGT(0)).Count(ctx)
	must(t, err)
	if all != 0 {
		t.Fatalf("%d agents still hold capacity after every chat closed", all)
	}
}

type offerRow struct{ id, agent string }

// soakOr returns long in a soak run (PARLEY_SOAK=1, make soak: too slow
// for every test run under the race detector), short with -short, else
// normal.
func soakOr(short, normal, long int) int {
	switch {
	case os.Getenv("PARLEY_SOAK") != "":
		return long
	case testing.Short():
		return short
	}
	return normal
}

// unlimitedGuests lifts the demo's guest session limits, for tests that
// start many chats from one address.
var unlimitedGuests = servertest.WithBootstrap(func(f *bootstrap.File) {
	f.Settings.MaxGuestSessionsPerHour = 1_000_000
	f.Settings.MaxGuestSessionsPerHourPerAddress = 0
})

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCapacityUnderConcurrentLoad: many guests and agents act at once
// (chats start and close, agents accept, decline and change presence)
// while routing passes run concurrently. No call fails for a reason other
// than a lost race, no agent ever holds more than its capacity, and at the
// end every agent's load is exactly what it holds. (Goroutines report with
// t.Error: only the test's own goroutine may stop it.)
func TestCapacityUnderConcurrentLoad(t *testing.T) {
	srv := servertest.Start(t, unlimitedGuests, servertest.WithoutWriteLimits())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	adm := srv.Client(parley.Connect, servertest.AdminToken)
	queues, err := adm.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	must(t, err)
	var queueIDs []string
	for _, q := range queues.GetQueues() {
		queueIDs = append(queueIDs, q.GetId())
	}
	agents := make([]*parley.Client, 12)
	for i := range agents {
		a, err := adm.Routing.CreateAgent(ctx, &parleyv1.CreateAgentRequest{
			DisplayName: fmt.Sprintf("Loaded %02d", i), Capacity: int32(1 + i%3), QueueIds: queueIDs[:1+i%len(queueIDs)],
		})
		must(t, err)
		agents[i] = srv.Client(parley.Connect, a.GetToken())
		_, err = agents[i].Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
		must(t, err)
	}
	lostRace := func(err error) bool {
		switch connect.CodeOf(err) {
		case connect.CodeFailedPrecondition, connect.CodeNotFound:
			return true
		}
		return err == nil
	}
	stop := make(chan struct{})
	var passes sync.WaitGroup
	passes.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if err := srv.App.Dispatch(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := newRand(uint64(g))
			var mine []string
			for range 60 {
				a := agents[rng.IntN(len(agents))]
				switch rng.IntN(5) {
				case 0, 1:
					start, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
						RequestId: uuid.NewString(), Name: "Load", Email: "l@example.com", IssueType: []string{"billing", "order", "product"}[rng.IntN(3)],
					})
					if err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, start.GetConversation().GetId())
				case 2:
					offers, err := srv.DB.Offer.Query().Where(offer.StateEQ(offer.StatePending)).All(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					for _, o := range offers {
						c := agents[rng.IntN(len(agents))]
						var err error
						if rng.IntN(3) > 0 {
							_, err = c.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: o.ID.String()})
						} else {
							_, err = c.Routing.DeclineOffer(ctx, &parleyv1.DeclineOfferRequest{OfferId: o.ID.String()})
						}
						if !lostRace(err) {
							t.Errorf("deciding an offer: %v", err)
						}
					}
				case 3:
					if len(mine) > 0 {
						_, err := adm.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: mine[rng.IntN(len(mine))]})
						if !lostRace(err) {
							t.Errorf("closing: %v", err)
						}
					}
				case 4:
					p := []parleyv1.Presence{parleyv1.Presence_PRESENCE_AVAILABLE, parleyv1.Presence_PRESENCE_AWAY, parleyv1.Presence_PRESENCE_OFFLINE}[rng.IntN(3)]
					_, err := a.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: p})
					if err != nil {
						t.Error(err)
						return
					}
				}
				rows, err := srv.DB.Agent.Query().All(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				for _, row := range rows {
					if row.Load > row.Capacity || row.Load < 0 {
						t.Errorf("%s holds %d with capacity %d", row.DisplayName, row.Load, row.Capacity)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	passes.Wait()
	rows, err := srv.DB.Agent.Query().All(ctx)
	must(t, err)
	for _, a := range rows {
		held, err := srv.DB.Conversation.Query().Where(conversation.AgentID(a.ID), conversation.StateEQ(conversation.StateAssigned)).Count(ctx)
		must(t, err)
		pending, err := srv.DB.Offer.Query().Where(offer.AgentID(a.ID), offer.StateEQ(offer.StatePending)).Count(ctx)
		must(t, err)
		if a.Load != held+pending || a.Load > a.Capacity {
			t.Errorf("%s: load %d, holds %d and is offered %d, capacity %d", a.DisplayName, a.Load, held, pending, a.Capacity)
		}
	}
	accepted, err := srv.DB.Offer.Query().Where(offer.StateEQ(offer.StateAccepted)).Count(ctx)
	must(t, err)
	if accepted == 0 {
		t.Fatal("no offer was accepted, so the load proved nothing")
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }
