package routing_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/conversation"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store"
)

// backlog is how many chats wait throughout the routing benchmarks.
const backlog = 1000

// benchServer starts a server on real time for a routing benchmark: no
// demo agents, no write or guest limits, and one queue, "Bench" (chats of
// issue type billing go there), auto-accepting or not. On PostgreSQL its
// pools have parleyd's default size, not the tests' smaller one.
func benchServer(b *testing.B, autoAccept bool) *servertest.Server {
	b.Helper()
	pools := servertest.WithStoreOptions(store.Options{MaxConns: store.DefaultMaxConns})
	return servertest.Start(b, pools, servertest.WithoutWriteLimits(), servertest.WithBootstrap(func(f *bootstrap.File) {
		f.Settings.MaxGuestSessionsPerHour = 1_000_000
		f.Settings.MaxGuestSessionsPerHourPerAddress = 0
		f.Agents = nil
		f.Queues = []bootstrap.Queue{{Name: "Bench", OfferTimeout: time.Hour, AutoAccept: autoAccept}}
		f.Rules = []bootstrap.Rule{{Name: "bench", Order: 1, Queue: "Bench", When: map[string][]string{"issue_type": {"billing"}}}}
	}))
}

// startChats starts n guest chats, eight at a time.
func startChats(ctx context.Context, b *testing.B, srv *servertest.Server, n int) {
	b.Helper()
	anon := srv.Client(parley.Connect, "")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				_, err := anon.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
					RequestId: uuid.NewString(), Name: "Waiting", Email: "w@example.com", IssueType: "billing",
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// benchAgents creates n agents of capacity in the Bench queue, not yet
// available, and returns their clients.
func benchAgents(ctx context.Context, b *testing.B, srv *servertest.Server, n int, capacity int32) []*parley.Client {
	b.Helper()
	adm := srv.Client(parley.Connect, servertest.AdminToken)
	qs, err := adm.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	must(b, err)
	var agents []*parley.Client
	for i := range n {
		a, err := adm.Routing.CreateAgent(ctx, &parleyv1.CreateAgentRequest{
			DisplayName: fmt.Sprintf("Bench %02d", i), Capacity: capacity, QueueIds: []string{qs.GetQueues()[0].GetId()},
		})
		must(b, err)
		agents = append(agents, srv.Client(parley.Connect, a.GetToken()))
	}
	return agents
}

// BenchmarkAssignWithBacklog measures routing throughput with a backlog:
// 2,000 chats wait in an auto-accept queue, then 50 agents of capacity 20
// become available (SetPresence, one after the other), and each iteration
// times until 1,000 chats are assigned, so at least 1,000 wait throughout.
// It reports assignments/s. Each iteration runs on a new server; setting it
// up (starting the chats) is not timed.
func BenchmarkAssignWithBacklog(b *testing.B) {
	const agents, capacity = 50, 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var elapsed time.Duration
	rounds := 0
	for b.Loop() {
		rounds++
		b.StopTimer()
		srv := benchServer(b, true)
		startChats(ctx, b, srv, backlog+agents*capacity)
		clients := benchAgents(ctx, b, srv, agents, capacity)
		b.StartTimer()
		start := time.Now()
		for _, c := range clients {
			_, err := c.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
			must(b, err)
		}
		for {
			n, err := srv.DB.Conversation.Query().Where(conversation.StateEQ(conversation.StateAssigned)).Count(ctx)
			must(b, err)
			if n == agents*capacity {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		srv.Stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(rounds*agents*capacity)/elapsed.Seconds(), "assignments/s")
}

// BenchmarkCapacityFreedToOffer measures how soon an agent who frees
// capacity is offered the next chat, with 1,000 chats waiting: 20 agents
// of capacity 1 watch their work (WatchWork) and each holds one chat. Then,
// b.N times in all, an agent closes their chat, waits for the next offer
// on their stream, accepts it, and starts a new chat (as a guest would), so
// the backlog stays at 1,000: one agent at a time, the 20 in turn
// ("one-at-a-time"), or all 20 at once, as fast as the server lets them
// ("all-at-once", a saturated server). It reports the time from the close
// call to the offer's arrival on the stream (p50, p99) and the
// assignments/s made.
func BenchmarkCapacityFreedToOffer(b *testing.B) {
	b.Run("one-at-a-time", func(b *testing.B) { benchFreedToOffer(b, 1) })
	b.Run("all-at-once", func(b *testing.B) { benchFreedToOffer(b, 20) })
}

// benchFreedToOffer runs BenchmarkCapacityFreedToOffer with 20 agents
// acting in turn in each of workers goroutines.
func benchFreedToOffer(b *testing.B, workers int) {
	const agents = 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	srv := benchServer(b, false)
	startChats(ctx, b, srv, backlog+agents)
	clients := benchAgents(ctx, b, srv, agents, 1)
	type arrival struct {
		offerID, convID string
		at              time.Time
	}
	offers := make([]chan arrival, agents)
	for i, c := range clients {
		offers[i] = make(chan arrival, 16)
		stream, err := c.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
		must(b, err)
		go func() {
			for {
				item, err := stream.Receive()
				if err != nil {
					return
				}
				if o := item.GetOffer(); o != nil {
					offers[i] <- arrival{o.GetId(), o.GetConversation().GetId(), time.Now()}
				}
			}
		}()
		_, err = c.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
		must(b, err)
	}
	// next waits for agent i's next offer and accepts it.
	next := func(i int) (arrival, error) {
		select {
		case o := <-offers[i]:
			_, err := clients[i].Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: o.offerID})
			return o, err
		case <-time.After(time.Minute):
			return arrival{}, fmt.Errorf("agent %d got no offer within a minute", i)
		}
	}
	held := make([]string, agents)
	for i := range clients {
		o, err := next(i)
		must(b, err)
		held[i] = o.convID
	}
	anon := srv.Client(parley.Connect, "")
	var (
		mu        sync.Mutex
		latencies []time.Duration
		turns     atomic.Int64
		wg        sync.WaitGroup
	)
	b.ResetTimer()
	for w := range workers {
		wg.Go(func() {
			for i := w; turns.Add(1) <= int64(b.N); i = (i + workers) % agents {
				start := time.Now()
				_, err := clients[i].Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: held[i]})
				if err != nil {
					b.Error(err)
					return
				}
				o, err := next(i)
				if err != nil {
					b.Error(err)
					return
				}
				held[i] = o.convID
				mu.Lock()
				latencies = append(latencies, o.at.Sub(start))
				mu.Unlock()
				_, err = anon.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
					RequestId: uuid.NewString(), Name: "Waiting", Email: "w@example.com", IssueType: "billing",
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(latencies))/b.Elapsed().Seconds(), "assignments/s")
}
