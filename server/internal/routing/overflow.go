package routing

import (
	"context"
	"fmt"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/queue"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"google.golang.org/protobuf/types/known/durationpb"
)

// overflow handles chats that waited their queue's maximum wait: each moves
// to the queue's overflow queue (keeping its place by when it was first
// queued) or, without one, is told once that its customer may leave a
// message instead, and keeps waiting.
func (d *Dispatcher) overflow(ctx context.Context) error {
	now := d.clk.Now()
	candidates, err := d.db.Conversation.Query().
		Where(
			conversation.StateEQ(conversation.StateQueued),
			conversation.WaitExceededAtIsNil(),
			conversation.HasQueueWith(queue.MaxWaitMsGT(0)),
		).
		WithQueue().
		All(ctx)
	if err != nil {
		return fmt.Errorf("find chats past their maximum wait: %w", err)
	}
	for _, c := range candidates {
		q := c.Edges.Queue
		maxWait := time.Duration(q.MaxWaitMs) * time.Millisecond
		if c.QueueEnteredAt == nil || now.Before(c.QueueEnteredAt.Add(maxWait)) {
			continue
		}
		_ = d.isolate(ctx, "conversation "+c.ID.String(), func() error { return d.overflowOne(ctx, c, q, maxWait, now) })
	}
	return nil
}

// overflowOne moves a chat past its queue's maximum wait to the overflow
// queue, or marks it as having waited too long.
func (d *Dispatcher) overflowOne(ctx context.Context, c *ent.Conversation, q *ent.Queue, maxWait time.Duration, now time.Time) error {
	err := d.commit(ctx, func(tx *ent.Tx, n *notes) error {
		still, err := tx.Conversation.Query().Where(
			conversation.ID(c.ID), conversation.StateEQ(conversation.StateQueued),
			conversation.QueueID(q.ID), conversation.WaitExceededAtIsNil(),
		).Exist(ctx)
		if err != nil || !still {
			return err
		}
		n.conversation(c.ID)
		if q.OverflowQueueID == nil || *q.OverflowQueueID == q.ID {
			if err := tx.Conversation.UpdateOneID(c.ID).SetWaitExceededAt(now).Exec(ctx); err != nil {
				return fmt.Errorf("mark wait exceeded: %w", err)
			}
			_, err := chatlog.Append(ctx, tx, c.ID, now, chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.WaitExceeded{
				QueueId: q.ID.String(), MaxWait: durationpb.New(maxWait),
			}})
			return err
		}
		to, err := tx.Queue.Get(ctx, *q.OverflowQueueID)
		if err != nil {
			return fmt.Errorf("load overflow queue: %w", err)
		}
		if err := withdrawOffers(ctx, tx, c.ID, now, n); err != nil {
			return err
		}
		if err := tx.Conversation.UpdateOneID(c.ID).
			SetQueueID(to.ID).
			SetQueueEnteredAt(now).
			SetPriority(to.Priority).
			Exec(ctx); err != nil {
			return fmt.Errorf("move to overflow queue: %w", err)
		}
		n.queue(&q.ID)
		n.queue(&to.ID)
		_, err = chatlog.Append(ctx, tx, c.ID, now, chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.ConversationQueued{
			QueueId: to.ID.String(), QueueName: to.DisplayName, Reason: "overflow",
		}})
		return err
	})
	if err != nil {
		return fmt.Errorf("overflow conversation %s: %w", c.ID, err)
	}
	return nil
}
