package messaging_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// fast lifts the send limit for tests that send a lot.
var fast = servertest.WithAppOptions(app.Options{SendRate: 1e6, SendBurst: 1e6})

// assign makes Fred (Product Support) accept the conversation and returns
// his client.
func assign(t testing.TB, srv *servertest.Server, convID string) *parley.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fred := srv.Client(parley.Connect, servertest.FredToken)
	work, err := fred.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close()
	if _, err := fred.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE}); err != nil {
		t.Fatal(err)
	}
	for {
		item, err := work.Receive()
		if err != nil {
			t.Fatalf("waiting for the offer: %v", err)
		}
		if o := item.GetOffer(); o.GetConversation().GetId() == convID {
			if _, err := fred.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: o.GetId()}); err != nil {
				t.Fatal(err)
			}
			return fred
		}
	}
}

// allEvents reads the whole log through ListEvents.
func allEvents(t testing.TB, c *parley.Client, convID string) []*parleyv1.Event {
	t.Helper()
	var out []*parleyv1.Event
	token := ""
	for {
		page, err := c.Messaging.ListEvents(context.Background(), &parleyv1.ListEventsRequest{ConversationId: convID, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.GetEvents()...)
		if token = page.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// checkContiguous fails unless evs have seqs 1, 2, 3... in order.
func checkContiguous(t *testing.T, evs []*parleyv1.Event) {
	t.Helper()
	for i, e := range evs {
		if e.GetSeq() != int64(i+1) {
			t.Fatalf("event %d has seq %d: the log has a gap, a duplicate or is out of order", i, e.GetSeq())
		}
	}
}

func TestConcurrentSendsGetDistinctContiguousSeqs(t *testing.T) {
	srv := servertest.Start(t, fast)
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx := context.Background()
	const perSender = 40
	var mu sync.Mutex
	acked := map[int64]string{}
	var wg sync.WaitGroup
	for _, sender := range []struct {
		name string
		c    *parley.Client
	}{{"guest", guest}, {"fred", fred}} {
		for w := range 4 {
			wg.Go(func() {
				for i := range perSender / 4 {
					id := sender.name + "-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
					resp, err := sender.c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: id, Text: id})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if prev, dup := acked[resp.GetEvent().GetSeq()]; dup {
						t.Errorf("seq %d acknowledged for %s and %s", resp.GetEvent().GetSeq(), prev, id)
					}
					acked[resp.GetEvent().GetSeq()] = id
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	evs := allEvents(t, guest, convID)
	checkContiguous(t, evs)
	if len(acked) != 2*perSender {
		t.Fatalf("%d sends acknowledged, want %d", len(acked), 2*perSender)
	}
	for seq, id := range acked {
		if got := evs[seq-1].GetMessagePosted().GetText(); got != id {
			t.Fatalf("seq %d holds %q, acknowledged for %q", seq, got, id)
		}
	}
}

func TestSendRetriesAreIdempotent(t *testing.T) {
	srv := servertest.Start(t)
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	req := &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: "where is my parcel?"}
	first, err := guest.Messaging.SendMessage(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Retries, also concurrent ones, return the original event.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			again, err := guest.Messaging.SendMessage(ctx, req)
			if err != nil {
				t.Error(err)
				return
			}
			if !proto.Equal(again, first) {
				t.Errorf("retry returned %v, want %v", again, first)
			}
		})
	}
	wg.Wait()
	changed := proto.CloneOf(req)
	changed.Text = "something else"
	_, err = guest.Messaging.SendMessage(ctx, changed)
	if connect.CodeOf(err) != connect.CodeAlreadyExists || apierr.Reason(err) != "CLIENT_MESSAGE_ID_REUSED" {
		t.Fatalf("same id, other text: %v", err)
	}
	n := 0
	for _, e := range allEvents(t, guest, convID) {
		if e.GetMessagePosted().GetClientMessageId() == req.GetClientMessageId() {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the message is in the log %d times", n)
	}
}

// TestResumeWithRacingSendsAndRandomDrops subscribes while messages are
// being sent, drops the stream at random points and resumes from the last
// seq received; the transcript the client assembles must equal the log.
func TestResumeWithRacingSendsAndRandomDrops(t *testing.T) {
	// Heartbeats count as items, so a connection at the head of the log
	// reads its budget soon.
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{SendRate: 1e6, SendBurst: 1e6, Heartbeat: 20 * time.Millisecond}))
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a bound, not a measure: a loaded machine under -race is slow
	defer cancel()
	const messages = 300
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range messages {
			c := guest
			if i%3 == 0 {
				c = fred
			}
			id := "m" + strconv.Itoa(i)
			if _, err := c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: id, Text: id}); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	var got []*parleyv1.Event
	var cursor int64
	drops := 0
	// Each connection reads a random number of items (events or
	// heartbeats) and drops; every other one is also cut after a random
	// few milliseconds, wherever it is. The next resumes from cursor. It
	// stops once the sends are done and the client has the whole log.
	// Progress never depends on the machine's speed: the connections that
	// are not cut by time always read their items.
resume:
	for {
		if ctx.Err() != nil {
			t.Fatalf("the client did not catch up with the log: at seq %d after %d connections", cursor, drops)
		}
		select {
		case <-sent:
			if last := allEvents(t, guest, convID); cursor == last[len(last)-1].GetSeq() {
				break resume
			}
		default:
		}
		streamCtx, drop := context.WithCancel(ctx)
		if drops%2 == 1 {
			time.AfterFunc(time.Duration(1+rng.IntN(20))*time.Millisecond, drop)
		}
		stream, err := guest.Messaging.Subscribe(streamCtx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: cursor})
		if err == nil {
			for budget := 1 + rng.IntN(25); budget > 0; budget-- {
				item, err := stream.Receive()
				if err != nil {
					if streamCtx.Err() == nil {
						t.Fatalf("stream failed before it was dropped: %v", err)
					}
					break
				}
				if e := item.GetEvent(); e != nil {
					got = append(got, e)
					cursor = e.GetSeq()
				}
			}
			stream.Close()
		} else if streamCtx.Err() == nil {
			t.Fatal(err)
		}
		drop()
		drops++
	}
	final := allEvents(t, guest, convID)
	if len(final) < messages {
		t.Fatalf("log has %d events, want at least %d", len(final), messages)
	}
	checkContiguous(t, got)
	if len(got) != len(final) {
		t.Fatalf("client assembled %d events, the log has %d", len(got), len(final))
	}
	for i := range final {
		if !proto.Equal(got[i], final[i]) {
			t.Fatalf("event %d: client has %v, log has %v", i, got[i], final[i])
		}
	}
	t.Logf("%d events over %d connections", len(got), drops)
}

func TestSendRateLimitPerParticipant(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)),
		servertest.WithAppOptions(app.Options{SendRate: 1, SendBurst: 5}))
	guest, convID := startChat(t, srv)
	other, otherID := startChat(t, srv)
	ctx := context.Background()
	send := func(c *parley.Client, conv, id string) error {
		_, err := c.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: conv, ClientMessageId: id, Text: "spam " + id})
		return err
	}
	for i := range 5 {
		if err := send(guest, convID, strconv.Itoa(i)); err != nil {
			t.Fatalf("send %d within the burst: %v", i, err)
		}
	}
	before := countEvents(t, srv)
	err := send(guest, convID, "5")
	if connect.CodeOf(err) != connect.CodeResourceExhausted || apierr.Reason(err) != "SEND_RATE_LIMITED" {
		t.Fatalf("send beyond the burst: %v", err)
	}
	if countEvents(t, srv) != before {
		t.Fatal("a refused send was stored")
	}
	var cerr *connect.Error
	if !errors.As(err, &cerr) || !hasRetryInfo(cerr) {
		t.Fatalf("the refusal carries no RetryInfo: %v", err)
	}
	// A retry of a message that was already accepted is not a new send.
	if err := send(guest, convID, "4"); err != nil {
		t.Fatalf("retry of an accepted message: %v", err)
	}
	// Another participant is not affected.
	if err := send(other, otherID, "a"); err != nil {
		t.Fatalf("another guest: %v", err)
	}
	// The bucket refills at the configured rate.
	srv.Clock.Advance(time.Second)
	if err := send(guest, convID, "6"); err != nil {
		t.Fatalf("after a second: %v", err)
	}
	if err := send(guest, convID, "7"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("second send after one second: %v", err)
	}
}

// TestRetriesSpendNothing: retries of an accepted message, sequential or
// racing each other, do not count against the send limit, so they leave
// the burst for new messages; a send refused for what it asked does count
// (the limit bounds the work a caller can cause).
func TestRetriesSpendNothing(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)),
		servertest.WithAppOptions(app.Options{SendRate: 0.001, SendBurst: 4}))
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	send := func(id string, attachments ...string) error {
		_, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: id, Text: "message " + id, AttachmentIds: attachments})
		return err
	}
	if err := send("a"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := send("a"); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := send("a"); err != nil {
				t.Errorf("racing retry: %v", err)
			}
		})
	}
	wg.Wait()
	// A send that fails for what it asks (an attachment nobody uploaded)
	// appends nothing but counts.
	if err := send("b", uuid.NewString()); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("send with an unknown attachment: %v, want FailedPrecondition", err)
	}
	for _, id := range []string{"c", "d"} {
		if err := send(id); err != nil {
			t.Fatalf("new message %s within the burst the retries left: %v", id, err)
		}
	}
	if err := send("e"); apierr.Reason(err) != "SEND_RATE_LIMITED" {
		t.Fatalf("fifth send: %v, want SEND_RATE_LIMITED", err)
	}
}

func hasRetryInfo(err *connect.Error) bool {
	for _, d := range err.Details() {
		if d.Type == "google.rpc.RetryInfo" {
			return true
		}
	}
	return false
}
