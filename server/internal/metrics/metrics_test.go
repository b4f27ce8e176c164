package metrics_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/metrics"
	"github.com/parleyhq/parley/server/internal/servertest"
)

const (
	getPreChatForm = "/parley.v1.SessionService/GetPreChatForm"
	listQueues     = "/parley.v1.RoutingService/ListQueues"
	subscribe      = "/parley.v1.MessagingService/Subscribe"
)

// opsServer is a Parley server on a fake clock with a metrics registry,
// and its side listener.
type opsServer struct {
	*servertest.Server
	reg *metrics.Registry
	ops *httptest.Server
}

func startOps(t *testing.T) *opsServer {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC))
	reg := metrics.New(clk)
	srv := servertest.Start(t, servertest.WithClock(clk), servertest.WithAppOptions(app.Options{Metrics: reg}))
	ops := httptest.NewServer(reg.Handler(srv.App.Ready))
	t.Cleanup(ops.Close)
	return &opsServer{Server: srv, reg: reg, ops: ops}
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics into a map from each sample's name and labels, as
// the exposition spells them, to its value.
func (s *opsServer) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	status, body := get(t, s.ops.URL+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// sample names a sample: name{label="value",...} with the labels in the
// order given (the exposition sorts them by name).
func sample(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i] + `="` + labels[i+1] + `"`)
	}
	return name + "{" + b.String() + "}"
}

func wantSample(t *testing.T, samples map[string]float64, name string, want float64) {
	t.Helper()
	got, ok := samples[name]
	if !ok {
		t.Fatalf("no sample %s", name)
	}
	if got != want {
		t.Fatalf("%s = %v, want %v", name, got, want)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startGuestChat(ctx context.Context, t *testing.T, c *parley.Client) *parleyv1.StartGuestChatResponse {
	t.Helper()
	started, err := c.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada Lovelace", Email: "ada@example.com", IssueType: "billing",
		FirstMessage: "I was charged twice.",
	})
	if err != nil {
		t.Fatal(err)
	}
	return started
}

// TestRPCMetrics makes real calls and checks that /metrics counts them by
// procedure and code, times unary calls, and counts and times streams.
func TestRPCMetrics(t *testing.T) {
	s := startOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	anon := s.Client(parley.Connect, "")

	if _, err := anon.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("ListQueues without a token: %v, want Unauthenticated", err)
	}
	m := s.scrape(t)
	wantSample(t, m, sample("parley_rpcs_total", "code", "ok", "procedure", getPreChatForm), 1)
	wantSample(t, m, sample("parley_rpcs_total", "code", "unauthenticated", "procedure", listQueues), 1)
	wantSample(t, m, sample("parley_rpc_duration_seconds_count", "procedure", getPreChatForm), 1)
	wantSample(t, m, sample("parley_rpc_duration_seconds_count", "procedure", listQueues), 1)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := m[name]; !ok {
			t.Errorf("no %s: the runtime and process collectors are missing", name)
		}
	}

	// A stream: counted as it opens, open while it runs, timed on the
	// server's clock when it ends.
	started := startGuestChat(ctx, t, anon)
	guest := s.Client(parley.Connect, started.GetGuestToken())
	streamCtx, endStream := context.WithCancel(ctx)
	defer endStream()
	stream, err := guest.Messaging.Subscribe(streamCtx, &parleyv1.SubscribeRequest{ConversationId: started.GetConversation().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Receive(); err != nil {
		t.Fatal(err)
	}
	m = s.scrape(t)
	wantSample(t, m, sample("parley_streams_opened_total", "procedure", subscribe), 1)
	wantSample(t, m, sample("parley_streams_open", "procedure", subscribe), 1)
	if _, ok := m[sample("parley_rpc_duration_seconds_count", "procedure", subscribe)]; ok {
		t.Error("a stream was timed as a unary call")
	}

	s.Clock.Advance(5 * time.Second)
	endStream()
	waitFor(t, "the stream's handler has returned", func() bool { return s.App.OpenStreams() == 0 })
	m = s.scrape(t)
	wantSample(t, m, sample("parley_streams_open", "procedure", subscribe), 0)
	wantSample(t, m, sample("parley_stream_duration_seconds_count", "procedure", subscribe), 1)
	wantSample(t, m, sample("parley_stream_duration_seconds_sum", "procedure", subscribe), 5)
	ended := 0.0
	for name, v := range m {
		if strings.HasPrefix(name, "parley_rpcs_total{") && strings.Contains(name, `procedure="`+subscribe+`"`) {
			ended += v
		}
	}
	if ended != 1 {
		t.Fatalf("parley_rpcs_total counts %v Subscribe calls, want 1", ended)
	}
}

// TestStoreAndRoutingMetrics checks the store's writer collectors, the
// routing pass histogram and the notifier lag histogram.
func TestStoreAndRoutingMetrics(t *testing.T) {
	s := startOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before := s.scrape(t)
	wantSample(t, before, "parley_store_write_queue_length", 0)
	startGuestChat(ctx, t, s.Client(parley.Connect, ""))
	if err := s.App.Dispatch(ctx); err != nil {
		t.Fatal(err)
	}
	after := s.scrape(t)
	if got, was := after["parley_store_commits_total"], before["parley_store_commits_total"]; got <= was {
		t.Errorf("parley_store_commits_total went from %v to %v over a write", was, got)
	}
	if got, was := after["parley_routing_pass_seconds_count"], before["parley_routing_pass_seconds_count"]; got < was+1 {
		t.Errorf("parley_routing_pass_seconds_count went from %v to %v over a pass", was, got)
	}

	// The guest's start is a write transaction the store timed.
	if got, was := after["parley_store_write_transaction_seconds_count"], before["parley_store_write_transaction_seconds_count"]; got < was+1 {
		t.Errorf("parley_store_write_transaction_seconds_count went from %v to %v over a write", was, got)
	}

	s.reg.ObserveNotifierLag(250 * time.Millisecond)
	m := s.scrape(t)
	wantSample(t, m, "parley_notifier_lag_seconds_count", 1)
	wantSample(t, m, "parley_notifier_lag_seconds_sum", 0.25)

	var off *metrics.Registry // metrics off: observing is a no-op
	off.ObserveNotifierLag(time.Second)
	off.ObserveRoutingPass(time.Second)
	off.ObserveWriteTransaction(time.Second)
}

// TestQueueLengthsAreCached checks that the waiting count per queue is
// read from the store at scrape time, at most once per QueueCacheTTL.
func TestQueueLengthsAreCached(t *testing.T) {
	s := startOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	anon := s.Client(parley.Connect, "")
	billing := func(m map[string]float64) float64 {
		t.Helper()
		for name, v := range m {
			if strings.HasPrefix(name, "parley_queue_waiting_conversations{") && strings.Contains(name, `queue="Billing Support"`) {
				return v
			}
		}
		t.Fatal("no parley_queue_waiting_conversations sample for Billing Support")
		return 0
	}

	startGuestChat(ctx, t, anon)
	if got := billing(s.scrape(t)); got != 1 {
		t.Fatalf("Billing Support waiting = %v, want 1", got)
	}
	startGuestChat(ctx, t, anon)
	if got := billing(s.scrape(t)); got != 1 {
		t.Fatalf("Billing Support waiting = %v within the cache's lifetime, want the cached 1", got)
	}
	s.Clock.Advance(metrics.QueueCacheTTL)
	if got := billing(s.scrape(t)); got != 2 {
		t.Fatalf("Billing Support waiting = %v once the cache expired, want 2", got)
	}
}

// TestProbes checks /livez and /readyz: ready while healthy, not ready
// once the server drains, and not ready once the store is closed.
func TestProbes(t *testing.T) {
	s := startOps(t)
	for _, path := range []string{"/livez", "/readyz"} {
		if status, body := get(t, s.ops.URL+path); status != http.StatusOK || body != "ok\n" {
			t.Fatalf("%s: %d %q, want 200 ok", path, status, body)
		}
	}
	s.App.Drain()
	if status, body := get(t, s.ops.URL+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz while draining: %d %q, want 503 draining", status, body)
	}
	if status, _ := get(t, s.ops.URL+"/livez"); status != http.StatusOK {
		t.Fatalf("/livez while draining: %d, want 200", status)
	}

	s = startOps(t)
	if status, _ := get(t, s.ops.URL+"/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz: %d, want 200", status)
	}
	if err := s.DB.Close(); err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, s.ops.URL+"/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
		t.Fatalf("/readyz with the store closed: %d %q, want 503 naming the store", status, body)
	}
	// The failing queue count leaves the other metrics served.
	if m := s.scrape(t); len(m) == 0 {
		t.Fatal("nothing scraped with the store closed")
	}
}

// TestPprofOnlyOnSideListener checks that the profiles are served on the
// side listener and not on the public one.
func TestPprofOnlyOnSideListener(t *testing.T) {
	s := startOps(t)
	if status, body := get(t, s.ops.URL+"/debug/pprof/"); status != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("side /debug/pprof/: %d, want 200 with the profiles' index", status)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine", "/debug/pprof/cmdline", "/metrics", "/readyz"} {
		if status, _ := get(t, s.URL+path); status != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, status)
		}
	}
}
