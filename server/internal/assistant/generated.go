package assistant

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/server/internal/assistant/llm"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
)

// transcriptLines is how much of the log the LLM reads.
const transcriptLines = 40

// generateSummary asks the configured LLM for a summary of conversation
// id's hand-off, in the background: the chat never waits for it, and a
// failure (an error, its timeout) leaves the extractive summary alone.
func (b *Bot) generateSummary(id uuid.UUID) {
	if b.opts.LLM == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := b.writeGeneratedSummary(ctx, id); err != nil {
			b.opts.Log.Warn("generated summary failed; the agent has the extractive one", "conversation", id, "err", err)
		}
	}()
}

func (b *Bot) writeGeneratedSummary(ctx context.Context, id uuid.UUID) error {
	db := b.opts.DB
	sum, err := chatlog.LoadSummary(ctx, db.Client, id)
	if err != nil || sum == nil {
		return err
	}
	evs, err := db.Event.Query().
		Where(event.ConversationID(id), event.Kind("message_posted"),
			event.SenderRoleIn(event.SenderRoleGuest, event.SenderRoleCustomer, event.SenderRoleBot)).
		Order(ent.Desc(event.FieldSeq)).
		Limit(transcriptLines).
		All(ctx)
	if err != nil {
		return fmt.Errorf("read the transcript of %s: %w", id, err)
	}
	in := llm.SummaryInput{Intent: sum.GetIntent(), Topic: sum.GetTopicName(), HandoffReason: sum.GetReason()}
	for _, k := range slices.Sorted(maps.Keys(sum.GetSlots())) {
		in.Slots = append(in.Slots, llm.Slot{Name: k, Value: sum.GetSlots()[k]})
	}
	for _, ev := range slices.Backward(evs) {
		text, err := messageText(ev)
		if err != nil {
			return err
		}
		role := llm.RoleCustomer
		if ev.SenderRole == event.SenderRoleBot {
			role = llm.RoleBot
		}
		in.Transcript = append(in.Transcript, llm.Line{Role: role, Text: text})
	}
	generated, err := b.opts.LLM.Summarize(ctx, in)
	if err != nil {
		return err
	}
	created := sum.GetCreateTime()
	return store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		// Into the summary it was made from: a later hand-off's summary is
		// not this one's to change.
		cur, err := chatlog.LoadSummary(ctx, tx.Client(), id)
		if err != nil || cur == nil || !proto.Equal(cur.GetCreateTime(), created) {
			return err
		}
		cur.GeneratedText = generated
		return storeSummary(ctx, tx, id, cur, b.opts.Clock.Now())
	})
}
