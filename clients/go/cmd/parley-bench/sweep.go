package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// Timing of the load.
const (
	// sendTimeout bounds one SendMessage; a send that takes longer counts
	// as a send error.
	sendTimeout = 10 * time.Second
	// resumeBackoff is how long a subscriber whose stream ended waits
	// before it subscribes again from its last seq.
	resumeBackoff = 100 * time.Millisecond
	// openParallel bounds the streams being opened at once.
	openParallel = 32
	// drainPoll is how often the drain checks whether every subscriber has
	// every acknowledged message.
	drainPoll = 20 * time.Millisecond
)

// messagePrefix starts every message the bench sends, followed by the
// sweep, the sender's counter, the scheduled send time and the time the
// send started (nanoseconds since the run's base time), then padding up to
// the message size.
const messagePrefix = "pb "

// runner drives the load of one target: a sender per conversation and its
// subscribers, sweep after sweep.
type runner struct {
	srv    *server
	convs  []*conversation
	size   int
	sweeps int // how many sweeps, warm-up included, subscribers keep stats for
	base   time.Time

	subs      []*subscriber
	senders   []*sender
	delivered atomic.Int64 // first deliveries of bench messages, all sweeps
}

// newRunner prepares a runner; open starts its subscribers.
func newRunner(srv *server, convs []*conversation, size, sweeps int) *runner {
	r := &runner{srv: srv, convs: convs, size: size, sweeps: sweeps, base: time.Now()}
	for i, c := range convs {
		httpc := parley.DefaultHTTPClient()
		r.senders = append(r.senders, &sender{
			conv: c, httpc: httpc, stats: make([]sendStats, sweeps),
			client: parley.New(srv.url(i), parley.WithToken(c.senderToken), parley.WithHTTPClient(httpc)),
		})
	}
	return r
}

// message is the text of the counter-th message of sweep, scheduled at at
// and sent at sent.
func (r *runner) message(sweep, counter int, at, sent time.Time) string {
	var b strings.Builder
	b.Grow(r.size)
	fmt.Fprintf(&b, "%s%d %d %d %d ", messagePrefix, sweep, counter, at.Sub(r.base).Nanoseconds(), sent.Sub(r.base).Nanoseconds())
	for b.Len() < r.size {
		b.WriteByte('x')
	}
	return b.String()
}

// parseMessage reads a bench message's sweep, counter, scheduled send
// time and send time (since the run's base time).
func parseMessage(text string) (sweep, counter int, at, sent time.Duration, ok bool) {
	rest, ok := strings.CutPrefix(text, messagePrefix)
	if !ok {
		return 0, 0, 0, 0, false
	}
	var nums [4]int64
	for i := range nums {
		var field string
		if field, rest, ok = strings.Cut(rest, " "); !ok {
			return 0, 0, 0, 0, false
		}
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, 0, 0, false
		}
		nums[i] = n
	}
	return int(nums[0]), int(nums[1]), time.Duration(nums[2]), time.Duration(nums[3]), true
}

// open starts perConv subscribers on every conversation, each on its own
// HTTP/2 connection, spread over the server's replicas, and returns once
// every one follows its conversation.
func (r *runner) open(ctx context.Context, perConv int) error {
	for i, c := range r.convs {
		for j := range perConv {
			r.subs = append(r.subs, newSubscriber(r.srv.url(i*perConv+j), c, c.subTokens[j], r.sweeps))
		}
	}
	return startAll(ctx, r, r.subs)
}

// close ends every subscriber and closes the connections.
func (r *runner) close() {
	for _, s := range r.subs {
		s.stop()
	}
	for _, s := range r.senders {
		s.httpc.CloseIdleConnections()
	}
}

// startAll starts subs and waits until each follows its conversation.
func startAll(ctx context.Context, r *runner, subs []*subscriber) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(openParallel)
	for _, s := range subs {
		g.Go(func() error { return s.start(gctx, r) })
	}
	return g.Wait()
}

// sweepOutcome is what one sweep measured, before it is reported.
type sweepOutcome struct {
	window       time.Duration
	offered      float64
	attempted    int
	acked        int
	sendErrors   int
	lastSendErr  error
	expected     int // acked sends times their conversation's subscribers
	delivered    int // first deliveries of the sweep's messages, by the end of the drain
	inWindow     int64
	lost         int
	duplicates   int
	order        int
	resumes      int
	lastEnd      error           // why a stream last ended, if any had to resume
	latencies    []time.Duration // from the send
	lagged       []time.Duration // from the scheduled send time
	ackLatencies []time.Duration
	serverCPU    time.Duration // over the window; 0 if not measured
	benchCPU     time.Duration
	drained      time.Duration // how long the drain took
}

// sweep sends rate messages per second in total for window (each sender
// rate/len(senders), spread evenly over the interval), waits up to drain
// for every subscriber to get every acknowledged message, and returns what
// it measured. Each message carries the time its send started and its
// scheduled send time: latency is measured from both, the second charging
// a server that holds its senders up (each sends one message at a time)
// with the wait for the send to start.
func (r *runner) sweep(ctx context.Context, id int, rate float64, window, drain time.Duration) (*sweepOutcome, error) {
	out := &sweepOutcome{window: window, offered: rate}
	interval := time.Duration(float64(time.Second) * float64(len(r.senders)) / rate)
	resumesBefore := r.resumes()
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(window)
	var wg sync.WaitGroup
	for i, s := range r.senders {
		first := start.Add(interval * time.Duration(i) / time.Duration(len(r.senders)))
		wg.Go(func() { s.run(ctx, r, id, first, interval, end) })
	}
	sleepUntil(ctx, start)
	cpu0, self0, delivered0, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	sleepUntil(ctx, end)
	cpu1, self1, delivered1, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	out.serverCPU, out.benchCPU, out.inWindow = cpu1-cpu0, self1-self0, delivered1-delivered0
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	drainStart := time.Now()
	for r.missing(id) > 0 && time.Since(drainStart) < drain && ctx.Err() == nil {
		sleepUntil(ctx, time.Now().Add(drainPoll))
	}
	out.drained = time.Since(drainStart)
	r.collect(id, out)
	out.resumes = r.resumes() - resumesBefore
	if out.resumes > 0 {
		out.lastEnd = r.lastEnd()
	}
	return out, nil
}

// snapshot reads the server's CPU time (all its processes; 0 for a server
// the bench did not start), the bench's own and the deliveries so far.
func (r *runner) snapshot() (server, self time.Duration, delivered int64, err error) {
	delivered = r.delivered.Load()
	if server, err = sumOver(r.srv.pids(), procCPU); err != nil {
		return 0, 0, 0, err
	}
	if self, err = procCPU(selfPID); err != nil {
		return 0, 0, 0, err
	}
	return server, self, delivered, nil
}

// missing counts the acknowledged messages of sweep that some subscriber
// has not received yet, once per subscriber.
func (r *runner) missing(sweep int) int {
	acked := r.ackedSets(sweep)
	n := 0
	for _, s := range r.subs {
		n += s.missing(sweep, acked[s.conv])
	}
	return n
}

// ackedSets returns, per conversation, which counters of sweep were
// acknowledged. The senders of the sweep have returned.
func (r *runner) ackedSets(sweep int) map[*conversation][]bool {
	out := make(map[*conversation][]bool, len(r.senders))
	for _, s := range r.senders {
		out[s.conv] = s.stats[sweep].acked
	}
	return out
}

// collect adds the senders' and subscribers' figures for sweep to out.
func (r *runner) collect(sweep int, out *sweepOutcome) {
	for _, s := range r.senders {
		st := &s.stats[sweep]
		out.attempted += st.attempted
		out.acked += st.ackedCount
		out.sendErrors += st.errors
		if st.lastErr != nil {
			out.lastSendErr = st.lastErr
		}
		out.ackLatencies = append(out.ackLatencies, st.ackLatencies...)
	}
	acked := r.ackedSets(sweep)
	for _, s := range r.subs {
		out.expected += countTrue(acked[s.conv])
		out.lost += s.missing(sweep, acked[s.conv])
		s.mu.Lock()
		st := &s.stats[sweep]
		out.delivered += st.delivered
		out.duplicates += st.duplicates
		out.order += st.order
		out.latencies = append(out.latencies, st.latencies...)
		out.lagged = append(out.lagged, st.lagged...)
		s.mu.Unlock()
	}
	slices.Sort(out.latencies)
	slices.Sort(out.lagged)
	slices.Sort(out.ackLatencies)
}

// resumes counts the subscribers' stream restarts so far.
func (r *runner) resumes() int {
	n := 0
	for _, s := range r.subs {
		s.mu.Lock()
		n += s.resumes
		s.mu.Unlock()
	}
	return n
}

// lastEnd returns why some subscriber's stream last ended, or nil.
func (r *runner) lastEnd() error {
	for _, s := range r.subs {
		s.mu.Lock()
		err := s.lastErr
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// sleepUntil waits until t or the end of ctx.
func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// countTrue counts the true items of set.
func countTrue(set []bool) int {
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	return n
}

// sender sends one conversation's messages, one at a time, so its
// counter's order is the log's order.
type sender struct {
	conv   *conversation
	httpc  *http.Client
	client *parley.Client
	stats  []sendStats // by sweep
}

// sendStats is one sender's part of one sweep.
type sendStats struct {
	attempted, ackedCount, errors int
	acked                         []bool // by counter
	ackLatencies                  []time.Duration
	lastErr                       error
}

// run sends the sweep's messages at first, first+interval, ... before end;
// a message whose time has come while the previous one was in flight goes
// at once, and none goes after end.
func (s *sender) run(ctx context.Context, r *runner, sweep int, first time.Time, interval time.Duration, end time.Time) {
	st := &s.stats[sweep]
	for k := 0; ; k++ {
		at := first.Add(interval * time.Duration(k))
		if !at.Before(end) {
			return
		}
		sleepUntil(ctx, at)
		if ctx.Err() != nil || !time.Now().Before(end) {
			return
		}
		callCtx, cancel := context.WithTimeout(ctx, sendTimeout)
		sent := time.Now()
		_, err := s.client.Messaging.SendMessage(callCtx, &parleyv1.SendMessageRequest{
			ConversationId: s.conv.id, ClientMessageId: "pb-" + strconv.Itoa(sweep) + "-" + strconv.Itoa(k), Text: r.message(sweep, k, at, sent),
		})
		took := time.Since(sent)
		cancel()
		st.attempted++
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.errors++
			st.lastErr = err
			continue
		}
		st.ackedCount++
		st.acked = setAt(st.acked, k)
		st.ackLatencies = append(st.ackLatencies, took)
	}
}

// setAt sets set[i], growing set as needed.
func setAt(set []bool, i int) []bool {
	if i >= len(set) {
		set = slices.Grow(set, i+1-len(set))[:i+1]
	}
	set[i] = true
	return set
}

// subscriber follows one conversation with Subscribe on its own HTTP/2
// connection, resuming from its last seq when the stream ends.
type subscriber struct {
	conv   *conversation
	httpc  *http.Client
	client *parley.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	cursor  int64 // the last seq received
	resumes int
	lastErr error
	stats   []subStats // by sweep
}

// subStats is one subscriber's part of one sweep.
type subStats struct {
	seen                         []bool // by counter
	maxCounter                   int
	delivered, duplicates, order int
	latencies, lagged            []time.Duration // see sweepOutcome
}

// newSubscriber makes a subscriber of conv at url with token, keeping
// stats for sweeps sweeps (none for an idle stream).
func newSubscriber(url string, conv *conversation, token string, sweeps int) *subscriber {
	httpc := parley.DefaultHTTPClient()
	s := &subscriber{
		conv: conv, httpc: httpc, done: make(chan struct{}),
		client: parley.New(url, parley.WithToken(token), parley.WithHTTPClient(httpc)),
		cursor: max(conv.lastSeq-1, 0),
		stats:  make([]subStats, sweeps),
	}
	for i := range s.stats {
		s.stats[i].maxCounter = -1
	}
	return s
}

// start runs the subscriber until stop, and returns once its first stream
// follows the conversation: it received an event (parleyd replays the last
// one) or a heartbeat (the bare server sends one when it has registered
// the stream).
func (s *subscriber) start(ctx context.Context, r *runner) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	ready := make(chan error, 1)
	go func() {
		defer close(s.done)
		s.run(runCtx, r, ready)
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.stop()
			return fmt.Errorf("subscribe to conversation %s: %w", s.conv.id, err)
		}
		return nil
	case <-ctx.Done():
		s.stop()
		return ctx.Err()
	}
}

// stop ends the subscriber and closes its connection.
func (s *subscriber) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.httpc.CloseIdleConnections()
}

// run subscribes, and again from the last seq after every end, until ctx
// ends. ready gets nil once the first stream follows the conversation, or
// the error that ended it before that.
func (s *subscriber) run(ctx context.Context, r *runner, ready chan<- error) {
	following := false
	markReady := func() {
		if !following {
			following = true
			ready <- nil
		}
	}
	for ctx.Err() == nil {
		s.mu.Lock()
		cursor := s.cursor
		s.mu.Unlock()
		err := s.follow(ctx, r, cursor, markReady)
		if !following {
			ready <- err
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.resumes++
		s.lastErr = err
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(resumeBackoff):
		}
	}
}

// follow runs one stream from cursor until it ends, and calls ready at its
// first event or heartbeat.
func (s *subscriber) follow(ctx context.Context, r *runner, cursor int64, ready func()) error {
	stream, err := s.client.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: s.conv.id, AfterSeq: cursor})
	if err != nil {
		return err
	}
	defer stream.Close()
	for {
		resp, err := stream.Receive()
		if err != nil {
			return err
		}
		if resp.GetEvent() != nil || resp.GetHeartbeat() != nil {
			ready()
		}
		if ev := resp.GetEvent(); ev != nil {
			s.observe(r, ev, time.Since(r.base))
		}
	}
}

// observe checks and records an event received at now (since the run's
// base time): duplicates (a counter seen before), order violations (a seq
// not after the last one, or a counter below the highest seen) and latency
// from the message's send and from its scheduled send time.
func (s *subscriber) observe(r *runner, ev *parleyv1.Event, now time.Duration) {
	sweep, counter, at, sent, isBench := parseMessage(ev.GetMessagePosted().GetText())
	s.mu.Lock()
	defer s.mu.Unlock()
	seqBack := ev.GetSeq() <= s.cursor
	s.cursor = max(s.cursor, ev.GetSeq())
	if !isBench || sweep >= len(s.stats) {
		return
	}
	st := &s.stats[sweep]
	if counter < len(st.seen) && st.seen[counter] {
		st.duplicates++
		return
	}
	if seqBack || counter < st.maxCounter {
		st.order++
	}
	st.seen = setAt(st.seen, counter)
	st.maxCounter = max(st.maxCounter, counter)
	st.delivered++
	st.latencies = append(st.latencies, now-sent)
	st.lagged = append(st.lagged, now-at)
	r.delivered.Add(1)
}

// missing counts the counters in acked this subscriber has not seen in
// sweep.
func (s *subscriber) missing(sweep int, acked []bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.stats[sweep].seen
	n := 0
	for i, a := range acked {
		if a && (i >= len(seen) || !seen[i]) {
			n++
		}
	}
	return n
}
