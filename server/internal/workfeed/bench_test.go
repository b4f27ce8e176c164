package workfeed_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// delivery is one event as a stream received it.
type delivery struct {
	conv string
	seq  int64
}

// BenchmarkEightChats measures a round of one guest message in each of the
// 8 chats an agent holds, from the first SendMessage until the agent has
// received all 8: on one FollowWork stream, and on 8 Subscribe streams
// (what an agent needed before FollowWork), through the real HTTP/2 server
// on a SQLite file. Client and server run in this process.
//
//	go test -run '^$' -bench EightChats -benchmem ./server/internal/workfeed/
func BenchmarkEightChats(b *testing.B) {
	for _, how := range []string{"FollowWork", "Subscribe"} {
		b.Run(how, func(b *testing.B) {
			r := newRig(b, servertest.WithAppOptions(app.Options{
				SweepInterval: time.Hour, Heartbeat: time.Hour, SendRate: 1e9, SendBurst: 1e9,
			}))
			_, agent := r.agent("Bench", 8)
			convs := make([]string, 8)
			guests := make([]*parley.Client, 8)
			for i := range convs {
				convs[i], guests[i] = r.chat()
				r.accept(agent, convs[i])
			}
			ctx, cancel := context.WithCancel(r.ctx)
			defer cancel()
			delivered := make(chan delivery, 1024)
			if how == "FollowWork" {
				cursors := make([]*parleyv1.FollowCursor, len(convs))
				for i, c := range convs {
					cursors[i] = &parleyv1.FollowCursor{ConversationId: c, AfterSeq: r.lastSeq(c)}
				}
				stream, err := agent.Routing.FollowWork(ctx, &parleyv1.FollowWorkRequest{Cursors: cursors})
				must(b, err)
				b.Cleanup(func() { stream.Close() })
				go func() {
					for {
						item, err := stream.Receive()
						if err != nil {
							return
						}
						if e := item.GetEvent(); e != nil {
							delivered <- delivery{item.GetConversationId(), e.GetSeq()}
						}
					}
				}()
			} else {
				for _, c := range convs {
					stream, err := agent.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: c, AfterSeq: r.lastSeq(c)})
					must(b, err)
					b.Cleanup(func() { stream.Close() })
					go func() {
						for {
							item, err := stream.Receive()
							if err != nil {
								return
							}
							if e := item.GetEvent(); e != nil {
								delivered <- delivery{c, e.GetSeq()}
							}
						}
					}()
				}
			}
			reqs := make([]*parleyv1.SendMessageRequest, len(convs))
			for i, c := range convs {
				reqs[i] = &parleyv1.SendMessageRequest{ConversationId: c, Text: "Where is my order?"}
			}
			want := map[string]int64{}
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				for i, g := range guests {
					reqs[i].ClientMessageId = strconv.Itoa(n)
					resp, err := g.Messaging.SendMessage(ctx, reqs[i])
					must(b, err)
					want[convs[i]] = resp.GetEvent().GetSeq()
				}
				for got := 0; got < len(convs); {
					d := <-delivered
					switch {
					case d.seq == want[d.conv]:
						got++
					case d.seq > want[d.conv]:
						b.Fatalf("seq %d of %s before %d", d.seq, d.conv, want[d.conv])
					}
				}
			}
		})
	}
}
