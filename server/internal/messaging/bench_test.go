package messaging_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// BenchmarkSendToDelivery measures one message from SendMessage until all
// three subscribers (the customer on two devices, over Connect and gRPC,
// and the agent) have received it, through the real HTTP/2 server on a
// SQLite file. Client and server run in this process, so allocs/op counts
// both.
//
//	go test -run '^$' -bench SendToDelivery -benchmem ./server/internal/messaging/
func BenchmarkSendToDelivery(b *testing.B) {
	srv := servertest.Start(b, fast)
	token, convID := startGuest(b, srv)
	fred := assign(b, srv, convID)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	head := allEvents(b, fred, convID)
	after := head[len(head)-1].GetSeq()

	subscribers := []*parley.Client{
		srv.Client(parley.Connect, token),
		srv.Client(parley.GRPC, token),
		fred,
	}
	delivered := subscribeAll(ctx, b, subscribers, convID, after)
	req := &parleyv1.SendMessageRequest{ConversationId: convID, Text: "How can I help you today?"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req.ClientMessageId = strconv.Itoa(i)
		resp, err := fred.Messaging.SendMessage(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for got := 0; got < len(subscribers); {
			if seq := <-delivered; seq == resp.GetEvent().GetSeq() {
				got++
			} else if seq > resp.GetEvent().GetSeq() {
				b.Fatalf("subscriber got seq %d before %d", seq, resp.GetEvent().GetSeq())
			}
		}
	}
}

// subscribeAll opens a Subscribe stream from after for each client (closed
// when ctx ends) and returns the channel on which every stream's events'
// seqs arrive.
func subscribeAll(ctx context.Context, b *testing.B, clients []*parley.Client, convID string, after int64) <-chan int64 {
	b.Helper()
	delivered := make(chan int64, len(clients)*1024)
	for _, c := range clients {
		stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID, AfterSeq: after})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { stream.Close() })
		go func() {
			for {
				item, err := stream.Receive()
				if err != nil {
					return
				}
				if e := item.GetEvent(); e != nil {
					delivered <- e.GetSeq()
				}
			}
		}()
	}
	return delivered
}
