package assistant

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/botsession"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/site"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/chatlog"
)

// First reports whether a new chat on channel (from s, the messenger site,
// if any) starts with the virtual agent: the site's setting when it has
// one, else whether the settings list the channel.
func (b *Bot) First(set *ent.Setting, s *ent.Site, channel interaction.Channel) bool {
	if s != nil && channel == interaction.ChannelMessenger {
		switch s.Bot {
		case site.BotOn:
			return true
		case site.BotOff:
			return false
		}
	}
	return slices.Contains(set.BotChannels, string(channel))
}

// StartInTx gives a new conversation to the virtual agent inside the
// transaction that creates it (in the bot state): it logs the controller
// and the greeting, and, when the customer's first message is at
// firstSeq (0 for none), leaves the durable pending turn that makes the
// bot answer it once the transaction commits (Kick the runner then).
func (b *Bot) StartInTx(ctx context.Context, tx *ent.Tx, set *ent.Setting, convID uuid.UUID, firstSeq int64, now time.Time) error {
	cfg := b.configFor(set)
	entries := chatlog.WithControllerChange(nil, "", "bot", chatlog.ReasonStart)
	entries = append(entries, chatlog.Entry{Sender: chatlog.Bot, Payload: &parleyv1.MessagePosted{Text: cfg.Greeting()}})
	if _, err := chatlog.Append(ctx, tx, convID, now, entries...); err != nil {
		return err
	}
	create := tx.BotSession.Create().SetConversationID(convID).SetCreatedAt(now).SetUpdatedAt(now)
	if firstSeq > 0 {
		create.SetPendingSeq(firstSeq).SetTurnPending(true)
	}
	if err := create.Exec(ctx); err != nil {
		return fmt.Errorf("create bot session of %s: %w", convID, err)
	}
	return nil
}

// MarkPending is the package's MarkPending, for callers that hold the Bot.
func (b *Bot) MarkPending(ctx context.Context, tx *ent.Tx, convID uuid.UUID, seq int64) error {
	return MarkPending(ctx, tx, convID, seq)
}

// MarkPending records, inside the transaction that appends a customer's
// message at seq to a bot-controlled conversation, that the bot owes it an
// answer: the durable pending turn the runner claims after commit. seq
// only grows within a conversation (its row is locked by the append).
func MarkPending(ctx context.Context, tx *ent.Tx, convID uuid.UUID, seq int64) error {
	n, err := tx.BotSession.Update().
		Where(botsession.ConversationID(convID), botsession.PendingSeqLT(seq)).
		SetPendingSeq(seq).
		SetTurnPending(true).
		Save(ctx)
	if err != nil {
		return fmt.Errorf("mark bot turn of %s at %d: %w", convID, seq, err)
	}
	if n == 0 {
		// A chat handed back to the bot before it ever had a session.
		exists, err := tx.BotSession.Query().Where(botsession.ConversationID(convID)).Exist(ctx)
		if err != nil {
			return fmt.Errorf("find bot session of %s: %w", convID, err)
		}
		if !exists {
			return tx.BotSession.Create().SetConversationID(convID).SetPendingSeq(seq).SetTurnPending(true).Exec(ctx)
		}
	}
	return nil
}
