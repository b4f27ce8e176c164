package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// Demo tokens (server/internal/bootstrap/demo.yaml).
const (
	adminToken = "ps_demo_admin_token"
	bethToken  = "ps_demo_agent_beth"
)

// replicas starts n parleyd processes on one PostgreSQL database. Several
// replicas need PostgreSQL: the test is skipped on a SQLite run (CI runs
// the suite on both).
func replicas(t *testing.T, n int, flags ...string) []*daemon {
	t.Helper()
	if storetest.PostgresURL() == "" {
		t.Skipf("several replicas share a PostgreSQL database; set %s (CI does)", storetest.EnvPostgres)
	}
	db := storetest.Target(t, filepath.Join(t.TempDir(), "parley.db"))
	ds := make([]*daemon, n)
	for i := range ds {
		ds[i] = startDaemon(t, db, flags...)
	}
	return ds
}

// follower reads a Subscribe stream in the background and records when
// each event and typing signal arrived.
type follower struct {
	mu     sync.Mutex
	seen   map[int64]time.Time
	order  []int64
	typing []time.Time
	ended  chan error
	cancel context.CancelFunc
}

func follow(ctx context.Context, t *testing.T, c *parley.Client, convID string, after int64) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: after})
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	f := &follower{seen: map[int64]time.Time{}, ended: make(chan error, 1), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		for {
			item, err := stream.Receive()
			if err != nil {
				f.ended <- err
				return
			}
			now := time.Now()
			f.mu.Lock()
			if e := item.GetEvent(); e != nil {
				if _, dup := f.seen[e.GetSeq()]; !dup {
					f.seen[e.GetSeq()] = now
				}
				f.order = append(f.order, e.GetSeq())
			}
			if item.GetTyping() != nil {
				f.typing = append(f.typing, now)
			}
			f.mu.Unlock()
		}
	}()
	return f
}

// await waits until the follower has seq, and returns when it arrived.
func (f *follower) await(t *testing.T, seq int64, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		at, ok := f.seen[seq]
		f.mu.Unlock()
		if ok {
			return at
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("seq %d did not arrive within %s", seq, within)
	return time.Time{}
}

// TestReplicasServeOneConversation: three parleyd processes on one
// database. A guest starts a chat and sends on A, the agent watches for
// work, accepts and answers on B, and the guest's stream is on C: every
// event, and the agent's typing, reaches C within a second of being
// acknowledged on another replica, once each and in order.
func TestReplicasServeOneConversation(t *testing.T) {
	rs := replicas(t, 3)
	a, b, c := rs[0], rs[1], rs[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	started, err := parley.New(a.url).Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "billing",
	})
	if err != nil {
		t.Fatal(err)
	}
	convID := started.GetConversation().GetId()
	guestOnA := parley.New(a.url, parley.WithToken(started.GetGuestToken()), parley.WithProtocol(parley.GRPC))
	guestOnC := parley.New(c.url, parley.WithToken(started.GetGuestToken()))
	onC := follow(ctx, t, guestOnC, convID, 0)

	// The agent on B: available, watching work, accepts the chat's offer
	// whichever replica's routing pass made it.
	beth := parley.New(b.url, parley.WithToken(bethToken))
	work, err := beth.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := beth.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE}); err != nil {
		t.Fatal(err)
	}
	for {
		item, err := work.Receive()
		if err != nil {
			t.Fatalf("work stream: %v", err)
		}
		if o := item.GetOffer(); o != nil && o.GetConversation().GetId() == convID {
			if _, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: o.GetId()}); err != nil {
				t.Fatalf("accept on B: %v", err)
			}
			break
		}
	}

	var worst time.Duration
	for i := range 10 {
		var sent *parleyv1.SendMessageResponse
		if i%2 == 0 {
			sent, err = guestOnA.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
				ConversationId: convID, ClientMessageId: uuid.NewString(), Text: fmt.Sprint("guest on A ", i)})
		} else {
			sent, err = beth.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
				ConversationId: convID, ClientMessageId: uuid.NewString(), Text: fmt.Sprint("agent on B ", i)})
		}
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		acked := time.Now()
		arrived := onC.await(t, sent.GetEvent().GetSeq(), time.Second)
		worst = max(worst, arrived.Sub(acked))
	}
	t.Logf("slowest event from acknowledgement on A or B to the stream on C: %s", worst)

	typedAt := time.Now()
	if _, err := beth.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: convID, Typing: true}); err != nil {
		t.Fatal(err)
	}
	for {
		onC.mu.Lock()
		n := len(onC.typing)
		onC.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Since(typedAt) > time.Second {
			t.Fatal("the agent's typing on B did not reach the stream on C within a second")
		}
		time.Sleep(5 * time.Millisecond)
	}

	onC.mu.Lock()
	defer onC.mu.Unlock()
	for i, seq := range onC.order {
		if seq != int64(i+1) {
			t.Fatalf("the stream on C got seqs %v: want 1, 2, 3, ... once each", onC.order)
		}
	}
}

// TestReplicaKilledClientsResumeElsewhere: the guest's stream is on A and
// its sends go to B; A is killed with SIGKILL mid-conversation; the
// guest resumes on C from the last seq it saw and keeps sending through
// B. Every acknowledged message is then in the log once, and the stream
// saw every seq exactly once, in order.
func TestReplicaKilledClientsResumeElsewhere(t *testing.T) {
	rs := replicas(t, 3, "-send-rate", "1000000", "-send-burst", "1000000")
	a, b, c := rs[0], rs[1], rs[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started, err := parley.New(b.url).Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order",
	})
	if err != nil {
		t.Fatal(err)
	}
	convID, token := started.GetConversation().GetId(), started.GetGuestToken()
	sender := parley.New(b.url, parley.WithToken(token))
	onA := follow(ctx, t, parley.New(a.url, parley.WithToken(token), parley.WithProtocol(parley.GRPC)), convID, 0)

	acked := map[int64]string{}
	send := func(i int) {
		id := fmt.Sprint("msg-", i)
		resp, err := sender.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: id, Text: id})
		if err != nil {
			t.Fatalf("send %d through B: %v", i, err)
		}
		acked[resp.GetEvent().GetSeq()] = id
	}
	for i := range 30 {
		send(i)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-onA.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream on the killed replica did not end")
	}
	for i := 30; i < 60; i++ {
		send(i)
	}
	onA.mu.Lock()
	var last int64
	for _, seq := range onA.order {
		if seq != last+1 {
			onA.mu.Unlock()
			t.Fatalf("the stream on A got seqs %v before A died: want each once, in order", onA.order)
		}
		last = seq
	}
	onA.mu.Unlock()

	onC := follow(ctx, t, parley.New(c.url, parley.WithToken(token), parley.WithProtocol(parley.GRPC)), convID, last)
	var top int64
	for seq := range acked {
		top = max(top, seq)
	}
	onC.await(t, top, 10*time.Second)
	onC.mu.Lock()
	resumed := onC.order
	onC.mu.Unlock()
	for i, seq := range resumed {
		if seq != last+int64(i)+1 {
			t.Fatalf("resumed after seq %d on C and got %v: want every later seq once, in order", last, resumed)
		}
	}
	log, err := sender.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range log.GetEvents() {
		if m := e.GetMessagePosted(); m != nil {
			count[m.GetClientMessageId()]++
			if id, ok := acked[e.GetSeq()]; ok && id != m.GetClientMessageId() {
				t.Fatalf("seq %d holds %q, but was acknowledged for %q", e.GetSeq(), m.GetClientMessageId(), id)
			}
		}
	}
	for _, id := range acked {
		if count[id] != 1 {
			t.Fatalf("acknowledged message %s is in the log %d times", id, count[id])
		}
	}
}

// TestSendLimitsHoldAcrossReplicas: a guest's send burst is one budget
// however its sends are spread over three replicas: with a burst of 5 and
// one more every 20 s, 15 sends in quick succession round-robin over the
// replicas get 5 through, not 15.
func TestSendLimitsHoldAcrossReplicas(t *testing.T) {
	rs := replicas(t, 3, "-send-rate", "0.05", "-send-burst", "5")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started, err := parley.New(rs[0].url).Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order",
	})
	if err != nil {
		t.Fatal(err)
	}
	convID, token := started.GetConversation().GetId(), started.GetGuestToken()
	ok, limited := 0, 0
	for i := range 15 {
		c := parley.New(rs[i%3].url, parley.WithToken(token))
		_, err := c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: "hi"})
		switch {
		case err == nil:
			ok++
		case connect.CodeOf(err) == connect.CodeResourceExhausted:
			limited++
		default:
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if ok != 5 || limited != 10 {
		t.Fatalf("%d sends went through and %d were limited; want 5 and 10 (one burst for all replicas)", ok, limited)
	}
}

// TestRevokedTokenEndsStreamsOnEveryReplica: a supervisor watches the
// queues on three replicas; the admin revokes the supervisor's token on
// one of them; every one of the three streams ends within two seconds,
// with Unauthenticated.
func TestRevokedTokenEndsStreamsOnEveryReplica(t *testing.T) {
	rs := replicas(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := parley.New(rs[0].url, parley.WithToken(adminToken))
	issued, err := admin.Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{Role: parleyv1.StaffRole_STAFF_ROLE_SUPERVISOR, Label: "replica test"})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, len(rs))
	for _, r := range rs {
		stream, err := parley.New(r.url, parley.WithToken(issued.GetToken())).Routing.WatchQueueStatuses(ctx, &parleyv1.WatchQueueStatusesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Receive(); err != nil { // it is open
			t.Fatal(err)
		}
		go func() {
			for {
				if _, err := stream.Receive(); err != nil {
					ended <- err
					return
				}
			}
		}()
	}
	if _, err := parley.New(rs[1].url, parley.WithToken(adminToken)).Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: issued.GetInfo().GetId()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(2 * time.Second)
	for range rs {
		select {
		case err := <-ended:
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("a stream of the revoked token ended with %v, want Unauthenticated", err)
			}
		case <-deadline:
			t.Fatal("a stream of the revoked token is still open on a replica two seconds after the revocation")
		}
	}
}
