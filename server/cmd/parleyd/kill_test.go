package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// TestSIGKILLLosesNoAcknowledgedMessage sends from several writers at once
// while a subscriber follows the log, kills parleyd with SIGKILL in the
// middle, restarts it on the same file, and checks that every
// acknowledged message is there exactly once, in each writer's order and
// at the seq it was acknowledged with; that sends which were in flight,
// retried, appear once; and that the log has no gap.
func TestSIGKILLLosesNoAcknowledgedMessage(t *testing.T) {
	db := storetest.Target(t, filepath.Join(t.TempDir(), "parley.db"))
	fast := []string{"-send-rate", "1000000", "-send-burst", "1000000"}
	d := startDaemon(t, db, fast...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started, err := parley.New(d.url).Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order",
	})
	if err != nil {
		t.Fatal(err)
	}
	convID, token := started.GetConversation().GetId(), started.GetGuestToken()
	guest := parley.New(d.url, parley.WithToken(token), parley.WithProtocol(parley.GRPC))

	// A subscriber is mid-stream when the process dies.
	stream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	if err != nil {
		t.Fatal(err)
	}
	streamed := make(chan int64, 100000)
	go func() {
		defer close(streamed)
		for {
			item, err := stream.Receive()
			if err != nil {
				return
			}
			if e := item.GetEvent(); e != nil {
				streamed <- e.GetSeq()
			}
		}
	}()

	const writers = 8
	type send struct {
		id    string
		seq   int64 // 0 if not acknowledged
		acked bool
	}
	sends := make([][]send, writers)
	var wg sync.WaitGroup
	var acks atomic.Int64
	enough := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%05d", w, i)
				resp, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: id, Text: id})
				if err != nil {
					// The process died: this send may or may not be stored.
					sends[w] = append(sends[w], send{id: id})
					return
				}
				sends[w] = append(sends[w], send{id: id, seq: resp.GetEvent().GetSeq(), acked: true})
				if acks.Add(1) == 200 {
					close(enough)
				}
			}
		})
	}
	<-enough // 200 acknowledged, writers still going
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	d.cmd.Wait()
	var seen []int64
	for seq := range streamed {
		seen = append(seen, seq)
	}

	d = startDaemon(t, db, fast...)
	guest = parley.New(d.url, parley.WithToken(token), parley.WithProtocol(parley.GRPC))
	// Retry every send that got no acknowledgement, as a client would.
	retried := 0
	for w := range sends {
		last := &sends[w][len(sends[w])-1]
		if last.acked {
			t.Fatalf("writer %d ended without a failed send", w)
		}
		resp, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: last.id, Text: last.id})
		if err != nil {
			t.Fatalf("retry of %s after restart: %v", last.id, err)
		}
		last.seq, last.acked = resp.GetEvent().GetSeq(), true
		retried++
	}

	// Read the log after the restart.
	var log []*parleyv1.Event
	pageToken := ""
	for {
		page, err := guest.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageSize: 500, PageToken: pageToken})
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, page.GetEvents()...)
		if pageToken = page.GetNextPageToken(); pageToken == "" {
			break
		}
	}
	count := map[string]int{}
	seqOf := map[string]int64{}
	for i, e := range log {
		if e.GetSeq() != int64(i+1) {
			t.Fatalf("log position %d has seq %d: a gap or a duplicate", i, e.GetSeq())
		}
		if m := e.GetMessagePosted(); m != nil {
			count[m.GetClientMessageId()]++
			seqOf[m.GetClientMessageId()] = e.GetSeq()
		}
	}
	acked := 0
	for w := range sends {
		var seqs []int64
		for _, s := range sends[w] {
			if count[s.id] != 1 {
				t.Fatalf("%s is in the log %d times", s.id, count[s.id])
			}
			if seqOf[s.id] != s.seq {
				t.Fatalf("%s was acknowledged at seq %d but is at %d", s.id, s.seq, seqOf[s.id])
			}
			seqs = append(seqs, s.seq)
			acked++
		}
		if !slices.IsSorted(seqs) {
			t.Fatalf("writer %d's messages are out of order: %v", w, seqs)
		}
	}
	// What the subscriber saw before the crash was committed: it is a
	// gapless prefix of the log as it is after the restart.
	for i, seq := range seen {
		if seq != int64(i+1) || seq > int64(len(log)) {
			t.Fatalf("the subscriber saw seq %d at position %d, the log after restart has %d events", seq, i, len(log))
		}
	}
	if len(count) != acked {
		t.Fatalf("the log holds %d messages, %d were sent", len(count), acked)
	}
	t.Logf("%d messages acknowledged before SIGKILL, %d in-flight sends retried after restart, %d events streamed before the crash", acked-retried, retried, len(seen))
}
