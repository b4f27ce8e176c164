package messaging_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// fanOut is how many Subscribe streams BenchmarkFanOut follows one
// conversation with.
const fanOut = 10

// BenchmarkFanOut measures one message delivered to fanOut subscribers of
// one conversation (half on the guest's token, half on the agent's, all
// over HTTP/2), through the real server on a SQLite file. Besides ns/op
// and allocs/op (per message, client and server together) it reports the
// store queries the server ran per message (every ent query: the reads of
// the delivery path; the send's own two write statements are not ent
// queries) and the time and allocations per delivery.
//
//	go test -run '^$' -bench FanOut -benchmem -count 5 ./server/internal/messaging/
func BenchmarkFanOut(b *testing.B) {
	srv := servertest.Start(b, fast)
	token, convID := startGuest(b, srv)
	fred := assign(b, srv, convID)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	head := allEvents(b, fred, convID)
	after := head[len(head)-1].GetSeq()

	var queries atomic.Int64
	srv.DB.Intercept(ent.InterceptFunc(func(next ent.Querier) ent.Querier {
		return ent.QuerierFunc(func(ctx context.Context, q ent.Query) (ent.Value, error) {
			queries.Add(1)
			return next.Query(ctx, q)
		})
	}))

	guest := srv.Client(parley.Connect, token)
	subscribers := make([]*parley.Client, fanOut)
	for i := range subscribers {
		subscribers[i] = guest
		if i%2 == 1 {
			subscribers[i] = fred
		}
	}
	delivered := subscribeAll(ctx, b, subscribers, convID, after)
	req := &parleyv1.SendMessageRequest{ConversationId: convID, Text: "How can I help you today?"}
	send := func(i int) {
		req.ClientMessageId = strconv.Itoa(i)
		resp, err := fred.Messaging.SendMessage(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for got := 0; got < fanOut; {
			if seq := <-delivered; seq == resp.GetEvent().GetSeq() {
				got++
			} else if seq > resp.GetEvent().GetSeq() {
				b.Fatalf("subscriber got seq %d before %d", seq, resp.GetEvent().GetSeq())
			}
		}
	}
	// One message first, so every stream is past its opening reads.
	send(-1)
	var before, after2 runtime.MemStats
	runtime.ReadMemStats(&before)
	queries.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		send(i)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after2)
	deliveries := float64(b.N * fanOut)
	b.ReportMetric(float64(queries.Load())/float64(b.N), "queries/msg")
	b.ReportMetric(float64(elapsed.Nanoseconds())/deliveries, "ns/delivery")
	b.ReportMetric(float64(after2.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
}
