package chatlog

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// estimateWindow is how far back queue throughput is measured for wait
// estimates.
const estimateWindow = time.Hour

// QueuePositions tells where every conversation waiting in queue stands
// (1 is next: the chats served before one are those of higher priority,
// then those queued earlier, then those of a lower id) and how long each
// will likely wait: its position times the average interval between chats
// taken from the queue over the hour before now, or nil without any
// taken. A conversation waits if it is queued there with a queued time.
// Two queries, however many wait.
func QueuePositions(ctx context.Context, db *ent.Client, queue uuid.UUID, now time.Time) (map[uuid.UUID]*parleyv1.QueuePosition, error) {
	waiting, err := db.Conversation.Query().
		Where(conversation.QueueID(queue), conversation.StateEQ(conversation.StateQueued)).
		Select(conversation.FieldID, conversation.FieldPriority, conversation.FieldQueuedAt).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load chats waiting in %s: %w", queue, err)
	}
	taken, err := db.Offer.Query().Where(
		offer.StateEQ(offer.StateAccepted),
		offer.DecidedAtGT(now.Add(-estimateWindow)),
		offer.TransferFromAgentIDIsNil(),
		offer.HasConversationWith(conversation.QueueID(queue)),
	).Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("count chats taken from %s: %w", queue, err)
	}
	return positions(queue.String(), waiting, taken), nil
}

// positions ranks the waiting chats of one queue, of which taken were
// taken in the last estimateWindow. A chat without a queued time has no
// position, and is ahead of another only by a higher priority.
func positions(queue string, waiting []*ent.Conversation, taken int) map[uuid.UUID]*parleyv1.QueuePosition {
	var timed []*ent.Conversation
	untimed := map[int]int{} // chats without a queued time, by priority
	for _, c := range waiting {
		if c.QueuedAt == nil {
			untimed[c.Priority]++
			continue
		}
		timed = append(timed, c)
	}
	slices.SortFunc(timed, func(a, b *ent.Conversation) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.QueuedAt.Compare(*b.QueuedAt), bytes.Compare(a.ID[:], b.ID[:]))
	})
	out := make(map[uuid.UUID]*parleyv1.QueuePosition, len(timed))
	for i, c := range timed {
		ahead := i
		for priority, n := range untimed {
			if priority > c.Priority {
				ahead += n
			}
		}
		pos := &parleyv1.QueuePosition{QueueId: queue, Position: int32(ahead + 1)}
		if taken > 0 {
			pos.EstimatedWait = durationpb.New(estimateWindow / time.Duration(taken) * time.Duration(ahead+1))
		}
		out[c.ID] = pos
	}
	return out
}
