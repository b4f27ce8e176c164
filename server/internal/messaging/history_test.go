package messaging_test

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"connectrpc.com/connect/v2"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

func TestHistoryPagesBothWays(t *testing.T) {
	srv := servertest.Start(t, fast)
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	for i := range 25 {
		if _, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: strconv.Itoa(i), Text: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	all := allEvents(t, guest, convID)
	checkContiguous(t, all)
	total := len(all)

	read := func(newestFirst bool) ([]int64, []int) {
		var seqs []int64
		var sizes []int
		token := ""
		for {
			page, err := guest.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageSize: 10, PageToken: token, NewestFirst: newestFirst})
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(page.GetEvents()))
			for _, e := range page.GetEvents() {
				seqs = append(seqs, e.GetSeq())
			}
			if token = page.GetNextPageToken(); token == "" {
				return seqs, sizes
			}
		}
	}
	forward, sizes := read(false)
	if len(forward) != total || !slices.IsSorted(forward) || sizes[0] != 10 {
		t.Fatalf("oldest first: %v in pages of %v", forward, sizes)
	}
	backward, _ := read(true)
	slices.Reverse(backward)
	if !slices.Equal(backward, forward) {
		t.Fatalf("newest first, reversed: %v; oldest first: %v", backward, forward)
	}

	// The first newest-first page is the tail of the log.
	page, err := guest.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageSize: 3, NewestFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := page.GetEvents(); got[0].GetSeq() != int64(total) || got[2].GetSeq() != int64(total-2) {
		t.Fatalf("newest page = %v", got)
	}
	// A token continues only the direction it came from.
	_, err = guest.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageSize: 3, PageToken: page.GetNextPageToken()})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("newest-first token used oldest first: %v", err)
	}
	_, err = guest.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, PageToken: "garbage"})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("garbage token: %v", err)
	}
}
