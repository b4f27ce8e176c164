package routing

import (
	"context"
	"fmt"
	"github.com/google/uuid"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/store"
)

// Close closes an open conversation inside tx: it withdraws pending
// offers, frees the holding agent's capacity, revokes guest tokens and
// appends the closing event, which ends every stream on the conversation.
// It returns the hub keys to notify once tx commits. The caller has
// checked that conv is open and that the closer may close it.
func Close(ctx context.Context, tx *ent.Tx, conv *ent.Conversation, by chatlog.Sender, reason string, now time.Time) ([]string, error) {
	var n notes
	n.conversation(conv.ID)
	if err := withdrawOffers(ctx, tx, conv.ID, now, &n); err != nil {
		return nil, err
	}
	// An update by predicate, not UpdateOneID: ent reads an updated row
	// back, and on PostgreSQL a serialization failure reported after that
	// row is lost, so the next statement fails as "transaction aborted",
	// which is not retried.
	update := tx.Conversation.Update().Where(conversation.ID(conv.ID)).
		SetState(conversation.StateClosed).SetClosedAt(now).ClearQueuedAt().ClearQueueEnteredAt()
	if conv.AgentID != nil && conv.State == conversation.StateAssigned {
		// The agent's capacity stays held for the queue's wrap-up time.
		wrapUp, err := wrapUpOf(ctx, tx, conv)
		if err != nil {
			return nil, err
		}
		if wrapUp > 0 {
			update.SetWrapUpUntil(now.Add(wrapUp))
		} else if err := ReleaseCapacity(ctx, tx, *conv.AgentID); err != nil {
			return nil, err
		}
		n.agent(*conv.AgentID)
	}
	if conv.State == conversation.StateQueued {
		n.queue(conv.QueueID)
	}
	if err := update.Exec(ctx); err != nil {
		return nil, fmt.Errorf("close conversation: %w", err)
	}
	if err := auth.RevokeGuestTokens(ctx, tx, conv.ID, now); err != nil {
		return nil, err
	}
	entries := chatlog.WithControllerChange(nil, conv.State, conversation.StateClosed, chatlog.ReasonClosed)
	entries = append(entries, chatlog.Entry{Sender: by, Payload: &parleyv1.ConversationClosed{Reason: reason}})
	if _, err := chatlog.Append(ctx, tx, conv.ID, now, entries...); err != nil {
		return nil, err
	}
	return n.keys, nil
}

// closeAbandoned closes open conversations whose customer has done
// nothing for the configured abandon_after, with a system event.
func (d *Dispatcher) closeAbandoned(ctx context.Context) error {
	set, err := d.db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return fmt.Errorf("load settings: %w", err)
	}
	if set.AbandonAfterSeconds == 0 {
		return nil
	}
	after := time.Duration(set.AbandonAfterSeconds) * time.Second
	now := d.clk.Now()
	idle := abandonedSince(now.Add(-after))
	ids, err := d.db.Conversation.Query().Where(idle).Limit(maxWorkPerPass).IDs(ctx)
	if err != nil {
		return fmt.Errorf("find abandoned conversations: %w", err)
	}
	reason := fmt.Sprintf("abandoned: no customer activity for %s", after)
	for _, id := range ids {
		_ = d.isolate(ctx, "conversation "+id.String(), func() error { return d.closeIfAbandoned(ctx, id, idle, reason, now) })
	}
	return nil
}

// closeIfAbandoned closes conversation id if it is still idle.
func (d *Dispatcher) closeIfAbandoned(ctx context.Context, id uuid.UUID, idle predicate.Conversation, reason string, now time.Time) error {
	var notify []string
	err := store.InTx(ctx, d.db, func(ctx context.Context, tx *ent.Tx) error {
		// Re-check under the write lock: the customer may just have written.
		conv, err := tx.Conversation.Query().Where(conversation.ID(id), idle).Only(ctx)
		if ent.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reload conversation: %w", err)
		}
		notify, err = Close(ctx, tx, conv, chatlog.System, reason, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("close abandoned conversation %s: %w", id, err)
	}
	d.hub.Notify(notify...)
	return nil
}

// abandonedSince matches open conversations whose customer was last
// active before cutoff.
func abandonedSince(cutoff time.Time) predicate.Conversation {
	return conversation.And(
		conversation.StateNEQ(conversation.StateClosed),
		conversation.Or(
			conversation.CustomerActiveAtLT(cutoff),
			conversation.And(conversation.CustomerActiveAtIsNil(), conversation.CreatedAtLT(cutoff)),
		),
	)
}

// wrapUpOf is the wrap-up time of a conversation's queue.
func wrapUpOf(ctx context.Context, tx *ent.Tx, conv *ent.Conversation) (time.Duration, error) {
	if conv.QueueID == nil {
		return 0, nil
	}
	q, err := tx.Queue.Get(ctx, *conv.QueueID)
	if err != nil {
		return 0, fmt.Errorf("load queue: %w", err)
	}
	return time.Duration(q.WrapUpMs) * time.Millisecond, nil
}

// endWrapUps gives back the capacity held by wrap-ups that are over.
func (d *Dispatcher) endWrapUps(ctx context.Context) error {
	now := d.clk.Now()
	over, err := d.db.Conversation.Query().Where(conversation.WrapUpUntilLTE(now)).All(ctx)
	if err != nil {
		return fmt.Errorf("find finished wrap-ups: %w", err)
	}
	for _, c := range over {
		_ = d.isolate(ctx, "conversation "+c.ID.String(), func() error { return d.endWrapUp(ctx, c, now) })
	}
	return nil
}

// endWrapUp gives back the capacity a finished wrap-up held.
func (d *Dispatcher) endWrapUp(ctx context.Context, c *ent.Conversation, now time.Time) error {
	err := d.commit(ctx, func(tx *ent.Tx, n *notes) error {
		count, err := tx.Conversation.Update().Where(conversation.ID(c.ID), conversation.WrapUpUntilLTE(now)).ClearWrapUpUntil().Save(ctx)
		if err != nil || count == 0 || c.AgentID == nil {
			return err
		}
		n.agent(*c.AgentID)
		return ReleaseCapacity(ctx, tx, *c.AgentID)
	})
	if err != nil {
		return fmt.Errorf("end wrap-up of %s: %w", c.ID, err)
	}
	return nil
}
