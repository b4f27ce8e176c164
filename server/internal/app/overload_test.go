package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	_ "modernc.org/sqlite"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// TestReadsGoOnWhileWritesCannot: another process holds SQLite's write lock
// (a second parleyd, a backup), or on PostgreSQL another transaction holds
// the conversation's row (storetest.HoldWriteLock). Reads go on, each answered at once,
// while 24 sends wait for the lock; when it does not come within the busy
// (lock) timeout, every send is refused with Unavailable (STORE_OVERLOADED, with
// a RetryInfo), never Internal, leaves nothing behind and does not count
// against the sender's limit; once the lock is released, sends work again,
// the whole burst of them.
func TestReadsGoOnWhileWritesCannot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	srv := servertest.Start(t, servertest.WithDBFile(path), servertest.WithoutWriteLimits(), servertest.WithAppOptions(app.Options{SendRate: 0.001, SendBurst: 30}),
		servertest.WithStoreOptions(store.Options{BusyTimeout: 2 * time.Second, LockTimeout: 2 * time.Second}))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "billing")
	before, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)

	release := storetest.HoldWriteLock(t, path, convID)

	const senders = 24
	errs := make([]error, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			_, errs[i] = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
				ConversationId: convID, ClientMessageId: fmt.Sprint("locked-", i), Text: "while the store is locked",
			})
		})
	}
	for i := range 40 {
		readCtx, cancel := context.WithTimeout(ctx, time.Second)
		if i%2 == 0 {
			_, err = guest.Session.GetConversation(readCtx, &parleyv1.GetConversationRequest{ConversationId: convID})
		} else {
			_, err = guest.Messaging.ListEvents(readCtx, &parleyv1.ListEventsRequest{ConversationId: convID})
		}
		cancel()
		if err != nil {
			t.Fatalf("read %d while writes wait for the lock: %v", i, err)
		}
	}
	wg.Wait()
	for i, err := range errs {
		wantReason(t, fmt.Sprint("send ", i, " while the store is locked"), err, connect.CodeUnavailable, "STORE_OVERLOADED")
		if wait, ok := apierr.RetryDelay(err); !ok || wait <= 0 {
			t.Fatalf("send %d: %v carries no retry delay", i, err)
		}
	}

	release()
	for i := range 30 {
		_, err = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: fmt.Sprint("after-", i), Text: "the lock is gone"})
		if err != nil {
			t.Fatalf("send %d of the burst once the lock is gone: %v", i, err)
		}
	}
	after, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	if got, want := after.GetConversation().GetLastSeq(), before.GetConversation().GetLastSeq()+30; got != want {
		t.Fatalf("last seq %d after the refused sends and 30 more, want %d: a refused send left something", got, want)
	}
}

// TestLostDatabaseIsUnavailable: on PostgreSQL the database goes out of
// reach (it refuses connections and ends the open ones, as a restart or a
// network cut would). Writes, reads and open streams answer Unavailable,
// reason STORE_UNAVAILABLE, with a retry delay, never Internal, so
// clients retry and resume; once the database is back, the same calls
// work, and a send retried with its client_message_id is stored once.
func TestLostDatabaseIsUnavailable(t *testing.T) {
	if storetest.PostgresURL() == "" {
		t.Skipf("a database that goes away is PostgreSQL's; set %s (CI does)", storetest.EnvPostgres)
	}
	path := filepath.Join(t.TempDir(), "parley.db")
	srv := servertest.Start(t, servertest.WithDBFile(path))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "billing")
	stream, err := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	must(t, err)
	if _, err := stream.Receive(); err != nil {
		t.Fatal(err)
	}

	restore := storetest.CutOff(t, path)
	send := &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "while-cut-off", Text: "anyone there?"}
	_, err = guest.Messaging.SendMessage(ctx, send)
	wantReason(t, "a send while the database is out of reach", err, connect.CodeUnavailable, "STORE_UNAVAILABLE")
	if wait, ok := apierr.RetryDelay(err); !ok || wait <= 0 {
		t.Fatalf("%v carries no retry delay", err)
	}
	_, err = guest.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID})
	wantReason(t, "a read while the database is out of reach", err, connect.CodeUnavailable, "STORE_UNAVAILABLE")
	// The open stream ends when it next reads (the safety poll, or a
	// resubscribe): a new one cannot open.
	_, err = guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	if err == nil {
		fresh, _ := guest.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
		_, err = fresh.Receive()
	}
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("subscribe while the database is out of reach: %v, want Unavailable", err)
	}

	restore()
	var sent *parleyv1.SendMessageResponse
	for attempt := 0; ; attempt++ {
		sent, err = guest.Messaging.SendMessage(ctx, send)
		if err == nil || attempt == 50 {
			break
		}
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("retried send once the database is back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	must(t, err)
	again, err := guest.Messaging.SendMessage(ctx, send)
	must(t, err)
	if again.GetEvent().GetSeq() != sent.GetEvent().GetSeq() {
		t.Fatalf("the retried send was stored twice (seq %d and %d)", sent.GetEvent().GetSeq(), again.GetEvent().GetSeq())
	}
}
