package chatlog

import (
	"context"
	"fmt"
	"time"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// estimateWindow is how far back queue throughput is measured for wait
// estimates.
const estimateWindow = time.Hour

// Position tells where waiting conversation c stands in its queue (1 is
// next: the chats served before it are those of higher priority, then
// those queued earlier) and how long it will likely wait: its position
// times the average interval between chats taken from the queue over the
// last hour, or nil without any taken. ok is false unless it waits.
func Position(ctx context.Context, db *ent.Client, c *ent.Conversation, now time.Time) (_ *parleyv1.QueuePosition, ok bool, err error) {
	if c.State != conversation.StateQueued || c.QueueID == nil || c.QueuedAt == nil {
		return nil, false, nil
	}
	ahead, err := db.Conversation.Query().Where(
		conversation.QueueID(*c.QueueID),
		conversation.StateEQ(conversation.StateQueued),
		conversation.Or(
			conversation.PriorityGT(c.Priority),
			conversation.And(conversation.Priority(c.Priority), conversation.QueuedAtLT(*c.QueuedAt)),
			conversation.And(conversation.Priority(c.Priority), conversation.QueuedAt(*c.QueuedAt), conversation.IDLT(c.ID)),
		),
	).Count(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("count chats ahead: %w", err)
	}
	out := &parleyv1.QueuePosition{QueueId: c.QueueID.String(), Position: int32(ahead + 1)}
	taken, err := db.Offer.Query().Where(
		offer.StateEQ(offer.StateAccepted),
		offer.DecidedAtGT(now.Add(-estimateWindow)),
		offer.TransferFromAgentIDIsNil(),
		offer.HasConversationWith(conversation.QueueID(*c.QueueID)),
	).Count(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("count chats taken: %w", err)
	}
	if taken > 0 {
		out.EstimatedWait = durationpb.New(estimateWindow / time.Duration(taken) * time.Duration(ahead+1))
	}
	return out, true, nil
}
