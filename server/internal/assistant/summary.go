package assistant

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/botsession"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/assistant/dialog"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/terms"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of the extractive summary.
const (
	// summaryMessages is how many of the customer's messages it quotes.
	summaryMessages = 10
	// summaryScan is how many of the customer's latest messages it reads.
	summaryScan = 50
	// quoteRunes cuts a quoted message.
	quoteRunes = 500
)

// buildSummary writes the extractive summary of a chat being handed to a
// person, from what the bot captured (state, under cfg) and the customer's
// messages in the log, inside tx. It needs no external service.
func buildSummary(ctx context.Context, tx *ent.Tx, cfg *dialog.Config, convID uuid.UUID, in *ent.Interaction, state *dialog.State, reason string, now time.Time) (*parleyv1.ConversationSummary, error) {
	s := &parleyv1.ConversationSummary{Reason: reason, CreateTime: timestamppb.New(now), Intent: in.Intent}
	if state != nil {
		c := cfg.Captured(state)
		s.TopicName = c.TopicName
		if c.TopicID != "" {
			s.Intent = c.TopicID
		}
		s.Slots = c.Slots
		s.MissingSlots = c.Missing
		for _, a := range c.Actions {
			s.ActionResults = append(s.ActionResults, &parleyv1.ActionResult{Action: a.Name, Values: a.Values, Error: a.Error})
		}
		for _, a := range c.Articles {
			s.ArticlesShown = append(s.ArticlesShown, &parleyv1.ArticleRef{ArticleId: a.ID, ExternalId: a.ExternalID, Title: a.Title})
		}
		s.FailedTurns = int32(c.Failures)
	}
	if s.TopicName == "" && s.Intent != "" {
		if t, ok := cfg.Topic(s.Intent); ok {
			s.TopicName = t.Name
		}
	}
	if len(s.Slots) == 0 && len(in.Slots) > 0 {
		s.Slots = in.Slots
	}
	quotes, err := customerQuotes(ctx, tx, convID, in)
	if err != nil {
		return nil, err
	}
	s.CustomerMessages = quotes
	s.Text = summaryText(s, in)
	return s, nil
}

// customerQuotes are the customer's messages that carry the request,
// oldest first: the latest summaryScan read, greetings and one-word
// replies ("yes", "thanks") left out, at most summaryMessages kept.
func customerQuotes(ctx context.Context, tx *ent.Tx, convID uuid.UUID, in *ent.Interaction) ([]string, error) {
	evs, err := tx.Event.Query().
		Where(event.ConversationID(convID), event.Kind("message_posted"),
			event.SenderRoleIn(event.SenderRoleGuest, event.SenderRoleCustomer)).
		Order(ent.Desc(event.FieldSeq)).
		Limit(summaryScan).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the customer's messages in %s: %w", convID, err)
	}
	lang := terms.Lang(in.Language)
	var quotes []string
	for _, ev := range slices.Backward(evs) {
		text, err := messageText(ev)
		if err != nil {
			return nil, err
		}
		if len(terms.Analyze(lang, text)) < 2 {
			continue
		}
		if r := []rune(strings.TrimSpace(text)); len(r) > quoteRunes {
			text = string(r[:quoteRunes]) + "…"
		}
		quotes = append(quotes, text)
	}
	if len(quotes) > summaryMessages {
		quotes = quotes[len(quotes)-summaryMessages:]
	}
	return quotes, nil
}

// reasonText says a hand-off reason in words.
var reasonText = map[string]string{
	"customer_asked": "the customer asked for a person",
	"topic":          "the topic needs a person",
	"bot_failed":     "the virtual agent did not understand the customer",
	"no_answer":      "the knowledge base had no answer",
	"transfer":       "transferred by an agent",
	"start":          "went straight to a queue",
}

// summaryText renders the summary as a few lines an agent reads at a glance.
func summaryText(s *parleyv1.ConversationSummary, in *ent.Interaction) string {
	var b strings.Builder
	why := reasonText[s.Reason]
	if why == "" {
		why = s.Reason
	}
	fmt.Fprintf(&b, "%s (%s, via %s): %s.\n", in.Name, in.Email, in.Channel, why)
	if s.Intent != "" {
		name := s.TopicName
		if name == "" {
			name = s.Intent
		}
		fmt.Fprintf(&b, "Intent: %s (%s).\n", name, s.Intent)
	} else {
		b.WriteString("Intent: not recognized.\n")
	}
	if len(s.Slots) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.Slots)) {
			parts = append(parts, fmt.Sprintf("%s=%s", k, s.Slots[k]))
		}
		fmt.Fprintf(&b, "Captured: %s.\n", strings.Join(parts, ", "))
	}
	if len(s.MissingSlots) > 0 {
		fmt.Fprintf(&b, "Missing: %s.\n", strings.Join(s.MissingSlots, ", "))
	}
	for _, a := range s.ActionResults {
		if a.Error != "" {
			fmt.Fprintf(&b, "%s failed: %s.\n", a.Action, a.Error)
			continue
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(a.Values)) {
			parts = append(parts, fmt.Sprintf("%s=%s", k, a.Values[k]))
		}
		fmt.Fprintf(&b, "%s: %s.\n", a.Action, strings.Join(parts, ", "))
	}
	if len(s.ArticlesShown) > 0 {
		var titles []string
		for _, a := range s.ArticlesShown {
			titles = append(titles, a.Title)
		}
		fmt.Fprintf(&b, "Articles shown: %s.\n", strings.Join(titles, "; "))
	}
	if s.FailedTurns > 0 {
		fmt.Fprintf(&b, "Messages not understood: %d.\n", s.FailedTurns)
	}
	for _, q := range s.CustomerMessages {
		fmt.Fprintf(&b, "Customer: %q\n", q)
	}
	return strings.TrimSpace(b.String())
}

// storeSummary keeps the summary on the conversation's bot session
// (creating one for a chat the bot never held), inside tx.
func storeSummary(ctx context.Context, tx *ent.Tx, convID uuid.UUID, s *parleyv1.ConversationSummary, now time.Time) error {
	data, err := proto.Marshal(s)
	if err != nil {
		return fmt.Errorf("marshal summary: %w", err)
	}
	n, err := tx.BotSession.Update().Where(botsession.ConversationID(convID)).SetSummary(data).SetUpdatedAt(now).Save(ctx)
	if err != nil {
		return fmt.Errorf("store summary of %s: %w", convID, err)
	}
	if n == 0 {
		if err := tx.BotSession.Create().SetConversationID(convID).SetSummary(data).SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx); err != nil {
			return fmt.Errorf("store summary of %s: %w", convID, err)
		}
	}
	return nil
}

// SummarizeInTx writes a conversation's summary for the next agent inside
// tx (routing.Service.Summarize calls it at a transfer): what the bot
// captured, if it ever held the chat, and the customer's messages.
func (b *Bot) SummarizeInTx(ctx context.Context, tx *ent.Tx, convID uuid.UUID, reason string, now time.Time) error {
	conv, err := tx.Conversation.Query().Where(conversation.ID(convID)).WithInteraction().Only(ctx)
	if err != nil {
		return fmt.Errorf("load conversation %s: %w", convID, err)
	}
	set, err := tx.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return fmt.Errorf("load settings: %w", err)
	}
	var state *dialog.State
	sess, err := tx.BotSession.Query().Where(botsession.ConversationID(convID)).Only(ctx)
	switch {
	case err == nil && len(sess.State) > 0:
		state = &dialog.State{}
		if err := json.Unmarshal(sess.State, state); err != nil {
			state = nil // a state that no longer parses adds nothing
		}
	case err != nil && !ent.IsNotFound(err):
		return fmt.Errorf("load bot session of %s: %w", convID, err)
	}
	s, err := buildSummary(ctx, tx, b.configFor(set), convID, conv.Edges.Interaction, state, reason, now)
	if err != nil {
		return err
	}
	if state == nil {
		if prev, err := chatlog.LoadSummary(ctx, tx.Client(), convID); err != nil {
			return err
		} else if prev != nil {
			// Keep what the bot found before an earlier hand-off.
			keepCaptured(s, prev)
			s.Text = summaryText(s, conv.Edges.Interaction)
		}
	}
	return storeSummary(ctx, tx, convID, s, now)
}

// keepCaptured copies into s what prev (an earlier summary) captured that
// s lacks.
func keepCaptured(s, prev *parleyv1.ConversationSummary) {
	if s.Intent == "" {
		s.Intent, s.TopicName = prev.Intent, prev.TopicName
	}
	if len(s.Slots) == 0 {
		s.Slots = prev.Slots
	}
	if len(s.ActionResults) == 0 {
		s.ActionResults = prev.ActionResults
	}
	if len(s.ArticlesShown) == 0 {
		s.ArticlesShown = prev.ArticlesShown
	}
	if s.FailedTurns == 0 {
		s.FailedTurns = prev.FailedTurns
	}
}
