package assistant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/botsession"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/assistant/dialog"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
)

// turnsPerPass bounds the turns one pass claims.
const turnsPerPass = 64

// Run answers pending turns until ctx ends: at once when kicked (a
// customer wrote to a bot-controlled chat on this replica), and every
// PollEvery for turns nobody took (written on another replica that died,
// or before a restart). A failing turn is logged and retried after its
// lease; a panic in one is recovered.
func (b *Bot) Run(ctx context.Context) {
	ticker := b.opts.Clock.NewTicker(b.opts.PollEvery)
	defer ticker.Stop()
	for {
		b.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-ticker.C():
		}
	}
}

// pass claims and answers the turns that are free to take.
func (b *Bot) pass(ctx context.Context) {
	for range 8 { // more turns may arrive while a pass runs
		now := b.opts.Clock.Now()
		ids, err := b.opts.DB.BotSession.Query().
			Where(botsession.TurnPending(true), botsession.Or(botsession.LeaseUntilIsNil(), botsession.LeaseUntilLT(now))).
			Limit(turnsPerPass).
			Select(botsession.FieldConversationID).
			Strings(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.opts.Log.Error("find pending bot turns", "err", err)
			}
			return
		}
		if len(ids) == 0 {
			return
		}
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			b.answer(ctx, uuid.MustParse(id))
		}
		if len(ids) < turnsPerPass {
			return
		}
	}
}

// answer claims conversation id's pending turn and answers it, turn by
// turn, until none is pending or another replica holds it.
func (b *Bot) answer(ctx context.Context, id uuid.UUID) {
	defer func() {
		if r := recover(); r != nil {
			b.opts.Log.Error("bot turn panicked", "conversation", id, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	for range 20 {
		claimed, err := b.claim(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				b.opts.Log.Error("claim bot turn", "conversation", id, "err", err)
			}
			return
		}
		if !claimed {
			return
		}
		more, err := b.turn(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				b.opts.Log.Error("bot turn", "conversation", id, "err", err)
			}
			return // the lease runs out and any replica tries again
		}
		if !more {
			return
		}
	}
}

// claim takes the conversation's pending turn for this replica for the
// lease time, if nobody holds it: a conditional update, so one replica
// wins.
func (b *Bot) claim(ctx context.Context, id uuid.UUID) (bool, error) {
	return store.Write(ctx, b.opts.DB, func(ctx context.Context, tx *ent.Tx) (bool, error) {
		now := b.opts.Clock.Now()
		n, err := tx.BotSession.Update().
			Where(botsession.ConversationID(id), botsession.TurnPending(true),
				botsession.Or(botsession.LeaseUntilIsNil(), botsession.LeaseUntilLT(now))).
			SetLeaseUntil(now.Add(b.opts.Lease)).
			SetLeaseOwner(b.opts.Replica).
			Save(ctx)
		if err != nil {
			return false, fmt.Errorf("claim bot turn of %s: %w", id, err)
		}
		return n == 1, nil
	})
}

// errTurnTaken ends a turn's transaction when another replica answered
// the same message first.
var errTurnTaken = errors.New("assistant: the turn was answered elsewhere")

// turn answers the oldest unanswered customer message of conversation id,
// which this replica claimed. The dialog runs outside any transaction
// (it may search the knowledge base and call actions); its answer is
// committed with a conditional update of answered_seq, so a message is
// answered once even if two replicas computed it. It reports whether more
// messages wait.
func (b *Bot) turn(ctx context.Context, id uuid.UUID) (bool, error) {
	db := b.opts.DB
	sess, err := db.BotSession.Query().Where(botsession.ConversationID(id)).Only(ctx)
	if err != nil {
		return false, fmt.Errorf("load bot session of %s: %w", id, err)
	}
	conv, err := db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return false, fmt.Errorf("load conversation %s: %w", id, err)
	}
	set, err := db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return false, fmt.Errorf("load settings: %w", err)
	}
	msg, err := db.Event.Query().
		Where(event.ConversationID(id), event.SeqGT(sess.AnsweredSeq), event.SeqLTE(sess.PendingSeq),
			event.Kind("message_posted"), event.SenderRoleIn(event.SenderRoleGuest, event.SenderRoleCustomer)).
		Order(ent.Asc(event.FieldSeq)).
		First(ctx)
	if ent.IsNotFound(err) {
		msg = nil // nothing to answer: clear the marker
	} else if err != nil {
		return false, fmt.Errorf("load the customer's message in %s: %w", id, err)
	}
	answeredSeq := sess.PendingSeq
	var reply dialog.Reply
	state := &dialog.State{}
	if len(sess.State) > 0 {
		if err := json.Unmarshal(sess.State, state); err != nil {
			b.opts.Log.Error("bot state does not parse; starting afresh", "conversation", id, "err", err)
			state = &dialog.State{}
		}
	}
	silent := conv.State != conversation.StateBot || msg == nil
	cfg := b.configFor(set)
	if !silent {
		answeredSeq = msg.Seq
		text, err := messageText(msg)
		if err != nil {
			return false, err
		}
		env := &turnEnv{bot: b, convID: id}
		reply, err = cfg.Turn(ctx, env, state, dialog.Input{Text: text, Language: conv.Edges.Interaction.Language})
		if err != nil {
			return false, fmt.Errorf("bot turn in %s: %w", id, err)
		}
	}
	stateJSON, err := json.Marshal(state)
	if err != nil {
		return false, fmt.Errorf("marshal bot state: %w", err)
	}
	now := b.opts.Clock.Now()
	var notify []string
	var handedOff bool
	err = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		notify, handedOff = nil, false
		upd := tx.BotSession.Update().
			Where(botsession.ConversationID(id), botsession.AnsweredSeq(sess.AnsweredSeq)).
			SetAnsweredSeq(answeredSeq).
			ClearLeaseUntil().
			SetUpdatedAt(now)
		if !silent {
			upd.SetState(stateJSON)
		}
		if n, err := upd.Save(ctx); err != nil {
			return fmt.Errorf("record bot turn of %s: %w", id, err)
		} else if n == 0 {
			return errTurnTaken
		}
		// turn_pending follows from the seqs as of this write: a message
		// that arrived during the turn moved pending_seq on.
		if err := tx.BotSession.Update().
			Where(botsession.ConversationID(id), botsession.PendingSeqLTE(answeredSeq)).
			SetTurnPending(false).
			Exec(ctx); err != nil {
			return fmt.Errorf("clear bot turn of %s: %w", id, err)
		}
		if silent {
			return nil
		}
		// The bot never posts in a chat it no longer holds: an agent took
		// it, or it closed, while the turn ran.
		cur, err := tx.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
		if err != nil {
			return fmt.Errorf("reload conversation %s: %w", id, err)
		}
		if cur.State != conversation.StateBot {
			return nil
		}
		notify = append(notify, events.ConversationKey(id.String()))
		in := cur.Edges.Interaction
		if reply.Intent != in.Intent || !maps.Equal(reply.Slots, in.Slots) {
			in, err = tx.Interaction.UpdateOneID(in.ID).SetIntent(reply.Intent).SetSlots(slotsOrEmpty(reply.Slots)).Save(ctx)
			if err != nil {
				return fmt.Errorf("store what the bot captured in %s: %w", id, err)
			}
		}
		entries := make([]chatlog.Entry, 0, len(reply.Messages))
		for _, m := range reply.Messages {
			entries = append(entries, chatlog.Entry{Sender: chatlog.Bot, Payload: botMessage(m)})
		}
		if len(entries) > 0 {
			if _, err := chatlog.Append(ctx, tx, id, now, entries...); err != nil {
				return err
			}
		}
		if reply.Handoff == nil {
			return nil
		}
		keys, err := handoffInTx(ctx, tx, cfg, cur, in, state, reply.Handoff, now)
		if err != nil {
			return err
		}
		notify = append(notify, keys...)
		handedOff = true
		return nil
	})
	if errors.Is(err, errTurnTaken) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b.opts.Hub.Notify(notify...)
	if handedOff {
		b.opts.Dispatcher.Kick()
		b.generateSummary(id)
		if err := b.tellPosition(ctx, id); err != nil {
			b.opts.Log.Warn("tell the customer their place in the queue", "conversation", id, "err", err)
		}
	}
	return !silent, nil
}

// tellPosition tells the customer of a chat just handed off where they
// stand in the queue and how long they will likely wait, as a bot
// message, unless an agent took the chat meanwhile (the bot never posts
// in a chat an agent holds). The customer's Subscribe stream keeps
// following the position live after that.
func (b *Bot) tellPosition(ctx context.Context, id uuid.UUID) error {
	conv, err := b.opts.DB.Conversation.Get(ctx, id)
	if err != nil || conv.State != conversation.StateQueued || conv.QueueID == nil {
		return err
	}
	now := b.opts.Clock.Now()
	all, err := chatlog.QueuePositions(ctx, b.opts.DB.Client, *conv.QueueID, now)
	if err != nil {
		return err
	}
	pos := all[id]
	if pos == nil {
		return nil // taken already
	}
	text := fmt.Sprintf("You are number %d in line.", pos.GetPosition())
	if pos.GetPosition() == 1 {
		text = "You are next in line."
	}
	if wait := pos.GetEstimatedWait(); wait != nil {
		text += fmt.Sprintf(" The expected wait is about %s.", waitText(wait.AsDuration()))
	}
	err = store.InTx(ctx, b.opts.DB, func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Conversation.Query().Where(conversation.ID(id), conversation.StateEQ(conversation.StateQueued)).Count(ctx)
		if err != nil || n == 0 {
			return err
		}
		_, err = chatlog.Append(ctx, tx, id, now, chatlog.Entry{Sender: chatlog.Bot, Payload: &parleyv1.MessagePosted{Text: text}})
		return err
	})
	if err == nil {
		b.opts.Hub.Notify(events.ConversationKey(id.String()))
	}
	return err
}

// waitText says a wait in whole minutes, at least one.
func waitText(d time.Duration) string {
	if m := int(d.Round(time.Minute) / time.Minute); m > 1 {
		return fmt.Sprintf("%d minutes", m)
	}
	return "a minute"
}

// handoffInTx queues the chat for a live agent with the summary of what
// the bot captured (under cfg, the turn's configuration). Without a queue to go to, the bot says so and keeps
// the chat (the customer may leave a message).
func handoffInTx(ctx context.Context, tx *ent.Tx, cfg *dialog.Config, conv *ent.Conversation, in *ent.Interaction, state *dialog.State, h *dialog.Handoff, now time.Time) ([]string, error) {
	_, keys, err := routing.Handoff(ctx, tx, conv, in, h.Queue, h.Reason, now)
	if err != nil {
		if apierr.Reason(err) == "NO_MATCHING_QUEUE" {
			_, aerr := chatlog.Append(ctx, tx, conv.ID, now, chatlog.Entry{Sender: chatlog.Bot, Payload: &parleyv1.MessagePosted{
				Text: "I'm sorry, no team can take this chat right now. Please leave us a message and we will get back to you.",
			}})
			return nil, aerr
		}
		return nil, err
	}
	summary, err := buildSummary(ctx, tx, cfg, conv.ID, in, state, h.Reason, now)
	if err != nil {
		return nil, err
	}
	if err := storeSummary(ctx, tx, conv.ID, summary, now); err != nil {
		return nil, err
	}
	return keys, nil
}

// messageText is the text of a message_posted event.
func messageText(ev *ent.Event) (string, error) {
	var m parleyv1.MessagePosted
	if err := proto.Unmarshal(ev.Payload, &m); err != nil {
		return "", fmt.Errorf("decode message %d of %s: %w", ev.Seq, ev.ConversationID, err)
	}
	return m.GetText(), nil
}

// botMessage is the log payload of one of the bot's messages.
func botMessage(m dialog.Message) *parleyv1.MessagePosted {
	out := &parleyv1.MessagePosted{Text: m.Text, SuggestedReplies: m.SuggestedReplies}
	for _, a := range m.Articles {
		out.Articles = append(out.Articles, &parleyv1.ArticleRef{ArticleId: a.ID, ExternalId: a.ExternalID, Title: a.Title})
	}
	return out
}

func slotsOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// turnEnv is the dialog's world during one turn: the knowledge base (public
// articles in the customer's language) and the registered actions.
type turnEnv struct {
	bot    *Bot
	convID uuid.UUID
}

// Search implements dialog.Env.
func (e *turnEnv) Search(ctx context.Context, text, language string, limit int) ([]dialog.Article, error) {
	if e.bot.opts.Knowledge == nil {
		return nil, nil
	}
	results, err := e.bot.opts.Knowledge.Search(ctx, knowledgeQuery(text, language, limit))
	if err != nil {
		return nil, err
	}
	out := make([]dialog.Article, 0, len(results))
	for _, r := range results {
		out = append(out, dialog.Article{ID: r.GetArticleId(), ExternalID: r.GetExternalId(), Title: r.GetTitle(), Snippet: r.GetSnippet()})
	}
	return out, nil
}

// Call implements dialog.Env.
func (e *turnEnv) Call(ctx context.Context, action string, slots map[string]string) (map[string]string, error) {
	f, ok := e.bot.opts.Actions[action]
	if !ok {
		return nil, fmt.Errorf("no action %q in this build", action)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return f(ctx, slots)
}
