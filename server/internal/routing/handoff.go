package routing

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/queue"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/chatlog"
)

// Handoff queues a conversation the virtual agent holds for a live agent,
// inside tx: in the queue named queueName, or, when it is empty, the one
// the matching rules pick from the interaction (with the intent and slots
// the bot captured, which the caller stored first). reason is the
// ControllerChanged reason. It returns the queue and the hub keys to
// notify once tx commits (then Kick the dispatcher).
func Handoff(ctx context.Context, tx *ent.Tx, conv *ent.Conversation, in *ent.Interaction, queueName, reason string, now time.Time) (*ent.Queue, []string, error) {
	if conv.State != conversation.StateBot {
		return nil, nil, apierr.New(connect.CodeFailedPrecondition, "NOT_WITH_BOT",
			fmt.Sprintf("conversation %s is not with the virtual agent", conv.ID))
	}
	var q *ent.Queue
	var err error
	if queueName != "" {
		q, err = tx.Queue.Query().Where(queue.DisplayName(queueName)).First(ctx)
		if ent.IsNotFound(err) {
			// A configuration naming a queue that was renamed: route by
			// the rules rather than strand the customer.
			q, err = RouteInteraction(ctx, tx, InteractionFields(in))
		}
	} else {
		q, err = RouteInteraction(ctx, tx, InteractionFields(in))
	}
	if err != nil {
		return nil, nil, err
	}
	// By predicate, not UpdateOneID, for the reason Close gives.
	if err := tx.Conversation.Update().Where(conversation.ID(conv.ID), conversation.StateEQ(conversation.StateBot)).
		SetState(conversation.StateQueued).
		SetQueueID(q.ID).
		SetQueuedAt(now).
		SetQueueEnteredAt(now).
		ClearWaitExceededAt().
		SetPriority(q.Priority).
		Exec(ctx); err != nil {
		return nil, nil, fmt.Errorf("queue conversation %s: %w", conv.ID, err)
	}
	if _, err := chatlog.Append(ctx, tx, conv.ID, now,
		chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.ConversationQueued{QueueId: q.ID.String(), QueueName: q.DisplayName, Reason: "handoff"}},
		*chatlog.ControllerChange(conversation.StateBot, conversation.StateQueued, reason),
	); err != nil {
		return nil, nil, err
	}
	var n notes
	n.conversation(conv.ID)
	n.queue(&q.ID)
	return q, n.keys, nil
}

// HandBack gives a conversation agent a holds back to the virtual agent,
// inside tx: the agent's capacity is freed and the chat leaves its queue.
// It returns the hub keys to notify once tx commits.
func HandBack(ctx context.Context, tx *ent.Tx, conv *ent.Conversation, a *ent.Agent, note string, now time.Time) ([]string, error) {
	if conv.State != conversation.StateAssigned || conv.AgentID == nil || *conv.AgentID != a.ID {
		return nil, apierr.New(connect.CodePermissionDenied, "NOT_HOLDING_CONVERSATION",
			fmt.Sprintf("conversation %s is not assigned to you", conv.ID))
	}
	var n notes
	n.conversation(conv.ID)
	if err := withdrawOffers(ctx, tx, conv.ID, now, &n); err != nil { // a pending transfer
		return nil, err
	}
	if err := ReleaseCapacity(ctx, tx, a.ID); err != nil {
		return nil, err
	}
	n.agent(a.ID)
	if err := tx.Conversation.Update().Where(conversation.ID(conv.ID)).
		SetState(conversation.StateBot).
		ClearAgentID().
		ClearQueueID().
		ClearQueuedAt().
		ClearQueueEnteredAt().
		ClearWaitExceededAt().
		Exec(ctx); err != nil {
		return nil, fmt.Errorf("hand conversation %s back: %w", conv.ID, err)
	}
	reason := chatlog.ReasonHandedBack
	if note != "" {
		reason += ": " + note
	}
	from := chatlog.AgentSender(a)
	if _, err := chatlog.Append(ctx, tx, conv.ID, now,
		chatlog.Entry{Sender: from, Payload: &parleyv1.ParticipantLeft{Participant: from.Participant()}},
		*chatlog.ControllerChange(conversation.StateAssigned, conversation.StateBot, reason),
	); err != nil {
		return nil, err
	}
	return n.keys, nil
}
