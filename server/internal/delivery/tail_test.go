package delivery_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/interaction"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/delivery"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/store"
)

// openLog opens a store in the test's temp dir with one conversation.
func openLog(t *testing.T) (*store.DB, uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "tail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var id uuid.UUID
	err = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		in, err := tx.Interaction.Create().SetName("Ada").SetEmail("ada@example.com").SetIssueType("order").
			SetChannel(interaction.ChannelWebPortal).SetRequestID(uuid.NewString()).SetRequestHash([]byte{1}).Save(ctx)
		if err != nil {
			return err
		}
		conv, err := tx.Conversation.Create().SetState(conversation.StateAssigned).SetInteractionID(in.ID).Save(ctx)
		if err != nil {
			return err
		}
		id = conv.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return db, id
}

// post appends one message to conversation id, counts it in written and
// then tells the hub, as SendMessage does.
func post(ctx context.Context, db *store.DB, hub *events.Hub, id uuid.UUID, text string, written *atomic.Int64) error {
	err := store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		_, err := chatlog.Append(ctx, tx, id, time.Now(), chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.MessagePosted{Text: text}})
		return err
	})
	if err != nil {
		return fmt.Errorf("post %q: %w", text, err)
	}
	written.Add(1)
	hub.Notify(events.ConversationKey(id.String()))
	return nil
}

// TestTailDeliversTheLogToComingAndGoingSubscribers: writers append to
// one conversation through the real store while subscribers join its tail
// at random points of the log (from the start, from the middle, at the
// head), take a few batches, leave and join again from where they were.
// Each must assemble exactly seqs 1..N in order, every snapshot must hold
// committed events without a gap, and the tail must end with the last
// subscriber. The window is small, so subscribers keep falling behind it
// and reading the store.
func TestTailDeliversTheLogToComingAndGoingSubscribers(t *testing.T) {
	const (
		writers     = 4
		perWriter   = 60
		total       = writers * perWriter
		subscribers = 12
		window      = 8
	)
	db, id := openLog(t)
	hub := events.NewHub()
	tails := delivery.NewTails(db.Client, hub, window)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a bound, not a measure
	defer cancel()

	var written atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := post(ctx, db, hub, id, fmt.Sprintf("w%d-%d", w, i), &written); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var storeReads atomic.Int64
	for s := range subscribers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(s), 99))
			// Some start late, once part of the log is written.
			if rng.IntN(3) == 0 {
				for late := int64(rng.IntN(total)); ctx.Err() == nil; {
					wake := hub.Wait(events.ConversationKey(id.String()))
					if written.Load() >= late {
						break
					}
					select {
					case <-wake:
					case <-ctx.Done():
					}
				}
			}
			var got []int64
			cursor := int64(0)
			for cursor < total && ctx.Err() == nil {
				tail := tails.Join(id)
				for batches := 1 + rng.IntN(6); batches > 0 && cursor < total; batches-- {
					snap := tail.Snapshot()
					if err := checkSnapshot(snap); err != nil {
						t.Error(err)
					}
					if !snap.Usable() || cursor < snap.Window.First()-1 {
						storeReads.Add(1)
					}
					evs, more, err := tails.Next(ctx, snap, id, cursor, 1+rng.IntN(5))
					if err != nil {
						t.Error(err)
						break
					}
					for _, ev := range evs {
						got = append(got, ev.Seq)
						cursor = ev.Seq
					}
					if !more && cursor < total {
						select {
						case <-snap.Changed():
						case <-ctx.Done():
						}
					}
				}
				tail.Leave()
			}
			if len(got) != total {
				t.Errorf("subscriber %d got %d events, want %d", s, len(got), total)
			}
			for i, seq := range got {
				if seq != int64(i+1) {
					t.Errorf("subscriber %d: event %d has seq %d: a gap, a duplicate or out of order", s, i, seq)
					break
				}
			}
		})
	}
	wg.Wait()
	if n := tails.Following(); n != 0 {
		t.Fatalf("%d tails still run after every subscriber left", n)
	}
	t.Logf("%d of the subscribers' rounds read the store", storeReads.Load())
}

// checkSnapshot checks a snapshot's invariants: its window is consecutive,
// and its conversation was read after its events.
func checkSnapshot(snap *delivery.Snapshot) error {
	if !snap.Usable() {
		return nil
	}
	w := snap.Window
	evs, _ := w.After(w.First()-1, int(w.Head()-w.First()+1))
	for i, ev := range evs {
		if ev.Seq != w.First()+int64(i) {
			return fmt.Errorf("window %d..%d holds seq %d at %d", w.First(), w.Head(), ev.Seq, i)
		}
	}
	if snap.Conversation.LastSeq < w.Head() {
		return fmt.Errorf("the conversation (last seq %d) was read before the window's head %d", snap.Conversation.LastSeq, w.Head())
	}
	return nil
}

// TestSubscribersShareOneRead: ten subscribers waiting at the head of the
// log get the next message from the tail's one pass (one read of the
// events, one of the conversation), not from reads of their own.
func TestSubscribersShareOneRead(t *testing.T) {
	db, id := openLog(t)
	hub := events.NewHub()
	tails := delivery.NewTails(db.Client, hub, 16)
	ctx := t.Context()
	var written atomic.Int64
	if err := post(ctx, db, hub, id, "before", &written); err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int64
	db.Intercept(ent.InterceptFunc(func(next ent.Querier) ent.Querier {
		return ent.QuerierFunc(func(ctx context.Context, q ent.Query) (ent.Value, error) {
			queries.Add(1)
			return next.Query(ctx, q)
		})
	}))
	tail := tails.Join(id)
	defer tail.Leave()
	snap := tail.Snapshot()
	for !snap.Usable() {
		<-snap.Changed()
		snap = tail.Snapshot()
	}
	if head := snap.Window.Head(); head != 1 {
		t.Fatalf("the tail starts at %d, want the conversation's last seq 1", head)
	}
	queries.Store(0)
	if err := post(ctx, db, hub, id, "for everyone", &written); err != nil {
		t.Fatal(err)
	}
	<-snap.Changed()
	next := tail.Snapshot()
	for range 10 {
		evs, more, err := tails.Next(ctx, next, id, 1, 100)
		if err != nil || more || len(evs) != 1 || evs[0].Seq != 2 {
			t.Fatalf("Next = %v, %v, %v; want seq 2 alone", evs, more, err)
		}
	}
	if n := queries.Load(); n != 2 {
		t.Fatalf("%d queries delivered one message to ten subscribers, want the tail's 2", n)
	}
}
