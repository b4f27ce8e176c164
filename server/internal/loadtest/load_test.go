package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// The load test's size: 200 senders, half guests and half signed-in
// customers, each in its own conversation; readers of each kind; guest
// chats claimed by customers while the senders run.
const (
	guestSenders    = 100
	customerSenders = 100
	readersPerKind  = 2
	claims          = 3
	// minReads is how many reads each reader must complete while the
	// senders run: a reader that waits behind the writes completes none.
	minReads = 3
	// callTimeout bounds every call; a call that reaches it is a failure.
	callTimeout = 30 * time.Second
	// streamTimeout bounds each Subscribe call.
	streamTimeout = 2 * time.Minute
	// maxAttempts bounds the retries of one call on retryable codes.
	maxAttempts = 50
	// unavailableBackoff is the wait before retrying an Unavailable call,
	// which carries no hint.
	unavailableBackoff = 50 * time.Millisecond
)

// TestLoad runs 200 concurrent senders with concurrent readers
// (ListEvents, GetConversation, Subscribe) and customers claiming guest
// chats, through the real HTTP/2 server on a SQLite file, each client on
// its own connection. It asserts outcomes only: every call succeeds or
// answers a retryable code (Unavailable, or ResourceExhausted with a
// RetryInfo hint, after which it is retried; never Internal, Unknown or a
// timeout), every acknowledged send is in the log exactly once at the seq
// it was acknowledged with, each Subscribe stream saw every acknowledged
// send of its conversation, and every reader completed reads while the
// senders ran.
//
// The server keeps its real limits, the per-participant send limit (a
// burst of 20, then 2 per second) included: each sender sends fewer
// messages than the burst, as people do, so the limit shapes nothing but
// is in the path, and a refusal would be retried on its hint. Only the
// guest session limits of the demo configuration (100 per hour, 20 per
// address) are raised, since every guest here comes from one address.
// -short sends 2 messages per sender instead of 4.
func TestLoad(t *testing.T) {
	perSender := 4
	if testing.Short() {
		perSender = 2
	}
	srv := servertest.Start(t, servertest.WithBootstrap(func(f *bootstrap.File) {
		f.Settings.MaxGuestSessionsPerHour = 1000
		f.Settings.MaxGuestSessionsPerHourPerAddress = 1000
	}))
	rec := &recorder{}
	senders := startSenders(t, srv)
	claimed := startClaimable(t, srv)

	total := len(senders) * perSender
	var acked atomic.Int64
	loadUnderWay := make(chan struct{})
	var sending atomic.Bool
	sending.Store(true)
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()

	var readers, writers sync.WaitGroup
	var reads []*atomic.Int64
	for r := range readersPerKind {
		for _, kind := range []readKind{listEvents, getConversation} {
			n := new(atomic.Int64)
			reads = append(reads, n)
			readers.Go(func() { unaryReader(readCtx, rec, &sending, n, kind, readerTargets(senders, r)) })
		}
		n := new(atomic.Int64)
		reads = append(reads, n)
		s := senders[r*len(senders)/readersPerKind]
		readers.Go(func() { subscriber(readCtx, rec, &sending, n, s) })
	}
	for i, c := range claimed {
		writers.Go(func() {
			<-loadUnderWay
			customer := srv.CustomerToken(t, fmt.Sprintf("claimer-%d", i), "Claire", "claire@example.com")
			client := parley.New(srv.URL, parley.WithToken(customer), parley.WithHTTPClient(&http.Client{
				Transport: headerTransport{auth.GuestTokenHeader, c.token, parley.DefaultHTTPClient().Transport},
			}))
			if rec.call("ClaimGuestConversation", func(ctx context.Context) error {
				_, err := client.Session.ClaimGuestConversation(ctx, &parleyv1.ClaimGuestConversationRequest{ConversationId: c.convID})
				return err
			}) {
				c.claimedBy = customer
			}
		})
	}
	var underWay sync.Once
	for _, s := range senders {
		writers.Go(func() {
			for i := range perSender {
				id := fmt.Sprintf("m-%d", i)
				rec.call("SendMessage", func(ctx context.Context) error {
					resp, err := s.client.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
						ConversationId: s.convID, ClientMessageId: id, Text: "Where is my order? " + id,
					})
					if err == nil {
						s.acked[id] = resp.GetEvent().GetSeq()
						if acked.Add(1) >= int64(total/10) {
							underWay.Do(func() { close(loadUnderWay) })
						}
					}
					return err
				})
			}
		})
	}
	writers.Wait()
	underWay.Do(func() { close(loadUnderWay) }) // in case too few sends were acknowledged
	sending.Store(false)
	stopReading()
	readers.Wait()

	for _, f := range rec.failures() {
		t.Error(f)
	}
	t.Logf("%d of %d sends acknowledged, %d retries on retryable codes; reads while sending: %v",
		acked.Load(), total, rec.retries.Load(), counts(reads))
	if got := acked.Load(); got != int64(total) {
		t.Errorf("%d of %d sends acknowledged", got, total)
	}
	for i, n := range reads {
		if n.Load() < minReads {
			t.Errorf("reader %d completed %d reads while the senders ran, want at least %d", i, n.Load(), minReads)
		}
	}
	for _, s := range senders {
		checkLog(t, srv, s)
	}
	for _, c := range claimed {
		checkClaim(t, srv, c)
	}
}

// sender is one participant sending into its own conversation.
type sender struct {
	client *parley.Client
	convID string
	// acked maps each acknowledged client_message_id to its seq; only
	// the sender's goroutine writes it, and it is read after it ends.
	acked map[string]int64
}

// startSenders starts guestSenders guest chats and customerSenders
// customer chats, a few at a time, each sender with its own client (its
// own connection): guests over Connect, customers over gRPC.
func startSenders(t *testing.T, srv *servertest.Server) []*sender {
	t.Helper()
	senders := make([]*sender, guestSenders+customerSenders)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(senders))
	for i := range senders {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			s := &sender{acked: map[string]int64{}}
			if i < guestSenders {
				resp, err := startGuestChat(ctx, srv, fmt.Sprintf("Guest %d", i))
				if err != nil {
					errs <- fmt.Errorf("start guest chat %d: %w", i, err)
					return
				}
				s.client = srv.Client(parley.Connect, resp.GetGuestToken())
				s.convID = resp.GetConversation().GetId()
			} else {
				token := srv.CustomerToken(t, fmt.Sprintf("customer-%d", i), fmt.Sprintf("Customer %d", i), "")
				s.client = srv.Client(parley.GRPC, token)
				resp, err := s.client.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
					RequestId: uuid.NewString(), IssueType: "order",
				})
				if err != nil {
					errs <- fmt.Errorf("start customer chat %d: %w", i, err)
					return
				}
				s.convID = resp.GetConversation().GetId()
			}
			senders[i] = s
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return senders
}

func startGuestChat(ctx context.Context, srv *servertest.Server, name string) (*parleyv1.StartGuestChatResponse, error) {
	return srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: name, Email: "guest@example.com", IssueType: "order",
	})
}

// claimable is a guest chat that a customer claims during the load.
type claimable struct {
	token, convID string
	// claimedBy is the claiming customer's token once the claim succeeded.
	claimedBy string
}

func startClaimable(t *testing.T, srv *servertest.Server) []*claimable {
	t.Helper()
	var out []*claimable
	for i := range claims {
		resp, err := startGuestChat(t.Context(), srv, fmt.Sprintf("Claimable %d", i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &claimable{token: resp.GetGuestToken(), convID: resp.GetConversation().GetId()})
	}
	return out
}

// readKind is what a unary reader reads.
type readKind int

const (
	listEvents readKind = iota
	getConversation
)

// readerTargets gives reader r a handful of senders (their clients are the
// ones allowed to read their conversations), spread over the senders.
func readerTargets(senders []*sender, r int) []*sender {
	var out []*sender
	for i := r; i < len(senders); i += len(senders) / 5 {
		out = append(out, senders[i])
	}
	return out
}

// unaryReader reads the targets' conversations in turn until ctx ends,
// counting in n the reads that completed while sending was set.
func unaryReader(ctx context.Context, rec *recorder, sending *atomic.Bool, n *atomic.Int64, kind readKind, targets []*sender) {
	for i := 0; ctx.Err() == nil; i++ {
		s := targets[i%len(targets)]
		ok := rec.callUntil(ctx, "read", func(callCtx context.Context) error {
			var err error
			switch kind {
			case listEvents:
				_, err = s.client.Messaging.ListEvents(callCtx, &parleyv1.ListEventsRequest{ConversationId: s.convID, NewestFirst: true, PageSize: 20})
			case getConversation:
				_, err = s.client.Session.GetConversation(callCtx, &parleyv1.GetConversationRequest{ConversationId: s.convID})
			}
			return err
		})
		if ok && sending.Load() {
			n.Add(1)
		}
	}
}

// subscriber follows s's conversation until ctx ends, resuming after a
// retryable end, counting in n the events received while sending was set.
// Once ctx ends it checks that the stream saw each send s had
// acknowledged by then.
func subscriber(ctx context.Context, rec *recorder, sending *atomic.Bool, n *atomic.Int64, s *sender) {
	seen := map[string]int64{}
	var after int64
	for attempt := 1; ctx.Err() == nil; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, streamTimeout)
		stream, err := s.client.Messaging.Subscribe(callCtx, &parleyv1.SubscribeRequest{ConversationId: s.convID, AfterSeq: after})
		if err == nil {
			for {
				var item *parleyv1.SubscribeResponse
				if item, err = stream.Receive(); err != nil {
					break
				}
				if e := item.GetEvent(); e != nil {
					after = e.GetSeq()
					if id := e.GetMessagePosted().GetClientMessageId(); id != "" {
						seen[id] = e.GetSeq()
					}
					if sending.Load() {
						n.Add(1)
					}
				}
			}
			stream.Close()
		}
		cancel()
		if ctx.Err() != nil {
			break
		}
		wait, retry := retryable(err)
		if !retry || attempt >= maxAttempts {
			rec.fail("Subscribe", err)
			return
		}
		time.Sleep(wait)
	}
	// The senders are done: everything acknowledged is committed, so a
	// resumed stream delivers what this one had not seen yet.
	catchUp, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	stream, err := s.client.Messaging.Subscribe(catchUp, &parleyv1.SubscribeRequest{ConversationId: s.convID, AfterSeq: after})
	if err == nil {
		for err == nil && len(seen) < len(s.acked) {
			var item *parleyv1.SubscribeResponse
			if item, err = stream.Receive(); err == nil {
				if id := item.GetEvent().GetMessagePosted().GetClientMessageId(); id != "" {
					seen[id] = item.GetEvent().GetSeq()
				}
			}
		}
		stream.Close()
	}
	if err != nil {
		rec.fail("Subscribe (catching up)", err)
	}
	for id, seq := range s.acked {
		if seen[id] != seq {
			rec.fail("Subscribe", fmt.Errorf("conversation %s: the stream saw %s at seq %d, acknowledged at %d", s.convID, id, seen[id], seq))
		}
	}
}

// checkLog asserts that every send s had acknowledged is in the log
// exactly once, at the seq it was acknowledged with.
func checkLog(t *testing.T, srv *servertest.Server, s *sender) {
	t.Helper()
	events, err := srv.DB.Event.Query().
		Where(event.ConversationID(uuid.MustParse(s.convID)), event.ClientMessageIDNotNil()).
		All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string][]int64{}
	for _, e := range events {
		logged[*e.ClientMessageID] = append(logged[*e.ClientMessageID], e.Seq)
	}
	for id, seq := range s.acked {
		if got := logged[id]; len(got) != 1 || got[0] != seq {
			t.Errorf("conversation %s: %s acknowledged at seq %d is in the log at seqs %v", s.convID, id, seq, got)
		}
	}
}

// checkClaim asserts that the claim succeeded: the customer reads the
// conversation and the guest token no longer opens it.
func checkClaim(t *testing.T, srv *servertest.Server, c *claimable) {
	t.Helper()
	if c.claimedBy == "" {
		t.Errorf("conversation %s was not claimed", c.convID)
		return
	}
	req := &parleyv1.GetConversationRequest{ConversationId: c.convID}
	if _, err := srv.Client(parley.Connect, c.claimedBy).Session.GetConversation(t.Context(), req); err != nil {
		t.Errorf("the claiming customer reads conversation %s: %v", c.convID, err)
	}
	if _, err := srv.Client(parley.Connect, c.token).Session.GetConversation(t.Context(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("the claimed guest token reads conversation %s: %v, want Unauthenticated", c.convID, err)
	}
}

// recorder runs calls, retrying them on retryable codes, and collects the
// failures.
type recorder struct {
	retries atomic.Int64
	mu      sync.Mutex
	errs    []string
}

// call runs fn under its own callTimeout until it succeeds (true), answers
// a code that is not retryable (a failure), or has been tried maxAttempts
// times (a failure).
func (r *recorder) call(what string, fn func(ctx context.Context) error) bool {
	return r.callUntil(context.Background(), what, fn)
}

// callUntil is call, except that when parent ends, the call stops without
// being a failure (a reader told to stop).
func (r *recorder) callUntil(parent context.Context, what string, fn func(ctx context.Context) error) bool {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(parent, callTimeout)
		err := fn(ctx)
		cancel()
		if err == nil {
			return true
		}
		if parent.Err() != nil {
			return false
		}
		wait, retry := retryable(err)
		if !retry || attempt >= maxAttempts {
			r.fail(what, err)
			return false
		}
		r.retries.Add(1)
		time.Sleep(wait)
	}
}

func (r *recorder) fail(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf("%s: %v (code %v)", what, err, connect.CodeOf(err)))
}

// failures lists the first failures and how many more there were.
func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	const shown = 10
	if len(r.errs) <= shown {
		return r.errs
	}
	return append(r.errs[:shown:shown], fmt.Sprintf("... and %d more failures", len(r.errs)-shown))
}

// retryable tells whether err invites a retry, and after how long:
// Unavailable at once (after a short backoff), ResourceExhausted after its
// RetryInfo delay. ResourceExhausted without a hint is not retryable.
func retryable(err error) (time.Duration, bool) {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return 0, false
	}
	switch cerr.Code() {
	case connect.CodeUnavailable:
		return unavailableBackoff, true
	case connect.CodeResourceExhausted:
		return apierr.RetryDelay(err)
	}
	return 0, false
}

func counts(ns []*atomic.Int64) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n.Load()
	}
	return out
}

// headerTransport adds one header to every request.
type headerTransport struct {
	name, value string
	next        http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.next.RoundTrip(r)
}
