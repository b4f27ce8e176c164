// Package chatlog holds what every service needs of a conversation:
// appending to its log (each event takes the next seq in the writing
// transaction), reading the log, converting to the API types, deciding
// who may read or write it, and where a waiting conversation stands in
// its queue.
package chatlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"entgo.io/ent/dialect/sql/sqlgraph"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"google.golang.org/protobuf/proto"
)

// Sender is who caused an event.
type Sender struct {
	Role event.SenderRole
	ID   string
	Name string
}

// System is the sender of routing and state events.
var System = Sender{Role: event.SenderRoleSystem}

// BotName is the virtual agent's display name in the log.
const BotName = "Virtual Agent"

// Bot is the virtual agent's sender.
var Bot = Sender{Role: event.SenderRoleBot, Name: BotName}

// Entry is an event to append.
type Entry struct {
	Sender Sender
	// Channel is set for customer events.
	Channel *event.Channel
	// ClientMessageID is the sender's idempotency key, for messages.
	ClientMessageID string
	// Payload is one of the parley.v1 event payloads (MessagePosted, ...).
	Payload proto.Message
}

// kindOf names a payload; the names are stored, so they never change.
func kindOf(p proto.Message) (string, error) {
	switch p.(type) {
	case *parleyv1.MessagePosted:
		return "message_posted", nil
	case *parleyv1.ParticipantJoined:
		return "participant_joined", nil
	case *parleyv1.ParticipantLeft:
		return "participant_left", nil
	case *parleyv1.ConversationQueued:
		return "conversation_queued", nil
	case *parleyv1.ConversationTransferred:
		return "conversation_transferred", nil
	case *parleyv1.CaseLinked:
		return "case_linked", nil
	case *parleyv1.ConversationClosed:
		return "conversation_closed", nil
	case *parleyv1.WaitExceeded:
		return "wait_exceeded", nil
	case *parleyv1.ControllerChanged:
		return "controller_changed", nil
	}
	return "", fmt.Errorf("conversation: unknown event payload %T", p)
}

// Append adds entries to the conversation's log in order, each with the
// next seq, inside tx. The seq comes from incrementing the conversation's
// last_seq in the same transaction; UNIQUE(conversation_id, seq) backs it.
func Append(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, now time.Time, entries ...Entry) ([]*ent.Event, error) {
	out := make([]*ent.Event, 0, len(entries))
	for _, e := range entries {
		seq, err := nextSeq(ctx, tx, conversationID)
		if err != nil {
			return nil, err
		}
		ev, err := insert(ctx, tx, conversationID, seq, now, e)
		if e.ClientMessageID != "" && keyTaken(err) {
			// A message a call other than SendMessage posts with the
			// caller's request id as its key (StartCustomerChat resuming
			// a chat, LeaveMessage): the id names another message of
			// theirs here.
			return nil, apierr.New(connect.CodeAlreadyExists, "REQUEST_ID_REUSED",
				fmt.Sprintf("request_id %q was already used for another message of yours in this conversation; use a new request_id", e.ClientMessageID))
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// AppendPost appends a participant's entry (a message) to the conversation's
// log inside tx, if p may still post there as of this write: one statement
// advances last_seq, records a customer's or guest's activity (which keeps
// the chat from being closed as abandoned) and reads back the state that
// CheckPost decides on; if p may not post, the caller's rollback undoes it.
// Then the event is inserted: two statements in all. It returns the
// event and the conversation's state as of the write.
func AppendPost(ctx context.Context, tx *ent.Tx, p *auth.Principal, conversationID uuid.UUID, now time.Time, e Entry) (*ent.Event, conversation.State, error) {
	query, args := advanceForPost, []any{conversationID}
	if p.Role == auth.RoleGuest || p.Role == auth.RoleCustomer {
		query, args = advanceForCustomerPost, append(args, now)
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("conversation: advance seq of %s: %w", conversationID, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, "", fmt.Errorf("conversation: advance seq of %s: %w", conversationID, err)
		}
		return nil, "", fmt.Errorf("conversation: advance seq of %s: no such conversation", conversationID)
	}
	cur := &ent.Conversation{ID: conversationID}
	var seq int64
	var agentID uuid.NullUUID
	if err := rows.Scan(&seq, &cur.State, &agentID); err != nil {
		return nil, "", fmt.Errorf("conversation: read seq of %s: %w", conversationID, err)
	}
	if err := rows.Close(); err != nil {
		return nil, "", fmt.Errorf("conversation: advance seq of %s: %w", conversationID, err)
	}
	if agentID.Valid {
		cur.AgentID = &agentID.UUID
	}
	if err := CheckPost(p, cur); err != nil {
		return nil, "", err
	}
	ev, err := insert(ctx, tx, conversationID, seq, now, e)
	return ev, cur.State, err
}

// keyTaken reports whether err is the unique index on a sender's message
// keys (conversation, sender, client_message_id) refusing an insert.
func keyTaken(err error) bool {
	return errors.Is(err, ErrDuplicate) && strings.Contains(err.Error(), event.FieldClientMessageID)
}

// insertEvent writes one event and returns its id: one statement, prepared
// once (ent's create builds it anew on every call; this is the hottest
// write). $n are positional parameters in SQLite and PostgreSQL alike.
var insertEvent = "INSERT INTO " + event.Table + " (" + strings.Join([]string{
	event.FieldConversationID, event.FieldSeq, event.FieldCreatedAt, event.FieldKind, event.FieldSenderRole,
	event.FieldSenderID, event.FieldSenderName, event.FieldChannel, event.FieldClientMessageID, event.FieldPayload,
}, ", ") + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING " + event.FieldID

// ErrDuplicate is the error of an insert that a unique index refused: the
// seq was taken, or the sender's message key (a retry).
var ErrDuplicate = errors.New("conversation: the event exists")

// insert writes one event with seq.
func insert(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID, seq int64, now time.Time, e Entry) (*ent.Event, error) {
	// PostgreSQL keeps microseconds: the event answered now must be the
	// one read back later (a retry's, a subscriber's).
	now = now.Truncate(time.Microsecond)
	kind, err := kindOf(e.Payload)
	if err != nil {
		return nil, err
	}
	payload, err := proto.Marshal(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("conversation: marshal %s: %w", kind, err)
	}
	ev := &ent.Event{
		ConversationID: conversationID, Seq: seq, CreatedAt: now, Kind: kind,
		SenderRole: e.Sender.Role, SenderID: e.Sender.ID, SenderName: e.Sender.Name,
		Channel: e.Channel, Payload: payload,
	}
	var channel, key any // NULL unless set
	if e.Channel != nil {
		channel = string(*e.Channel)
	}
	if e.ClientMessageID != "" {
		ev.ClientMessageID = &e.ClientMessageID
		key = e.ClientMessageID
	}
	rows, err := tx.QueryContext(ctx, insertEvent, conversationID, seq, now, kind, string(e.Sender.Role),
		e.Sender.ID, e.Sender.Name, channel, key, payload)
	if err == nil {
		defer rows.Close()
		if !rows.Next() {
			err = rows.Err()
		} else {
			err = rows.Scan(&ev.ID)
		}
	}
	if err != nil {
		if sqlgraph.IsUniqueConstraintError(err) {
			err = fmt.Errorf("%w: %w", ErrDuplicate, err)
		}
		return nil, fmt.Errorf("conversation: insert %s event: %w", kind, err)
	}
	return ev, rows.Close()
}

// advanceSeq increments a conversation's last_seq and returns the new
// value. $1 is a positional parameter in both SQLite and PostgreSQL.
var advanceSeq = "UPDATE " + conversation.Table + " SET " + conversation.FieldLastSeq + " = " + conversation.FieldLastSeq +
	" + 1 WHERE " + conversation.FieldID + " = $1 RETURNING " + conversation.FieldLastSeq

// advanceForPost and advanceForCustomerPost advance last_seq for a post and
// read back what CheckPost needs; the second also records customer
// activity ($2).
var (
	advanceForPost = "UPDATE " + conversation.Table + " SET " + conversation.FieldLastSeq + " = " + conversation.FieldLastSeq +
		" + 1 WHERE " + conversation.FieldID + " = $1 RETURNING " + conversation.FieldLastSeq + ", " +
		conversation.FieldState + ", " + conversation.FieldAgentID
	advanceForCustomerPost = "UPDATE " + conversation.Table + " SET " + conversation.FieldLastSeq + " = " + conversation.FieldLastSeq +
		" + 1, " + conversation.FieldCustomerActiveAt + " = $2 WHERE " + conversation.FieldID + " = $1 RETURNING " +
		conversation.FieldLastSeq + ", " + conversation.FieldState + ", " + conversation.FieldAgentID
)

// nextSeq advances the conversation's last_seq and returns it, in one
// statement, under the transaction's write lock.
func nextSeq(ctx context.Context, tx *ent.Tx, conversationID uuid.UUID) (int64, error) {
	rows, err := tx.QueryContext(ctx, advanceSeq, conversationID)
	if err != nil {
		return 0, fmt.Errorf("conversation: advance seq of %s: %w", conversationID, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("conversation: advance seq of %s: %w", conversationID, err)
		}
		return 0, fmt.Errorf("conversation: advance seq of %s: no such conversation", conversationID)
	}
	var seq int64
	if err := rows.Scan(&seq); err != nil {
		return 0, fmt.Errorf("conversation: read seq of %s: %w", conversationID, err)
	}
	return seq, rows.Close()
}

// EventsAfter returns up to limit events with seq > afterSeq, in seq order.
func EventsAfter(ctx context.Context, db *ent.Client, conversationID uuid.UUID, afterSeq int64, limit int) ([]*ent.Event, error) {
	evs, err := db.Event.Query().
		Where(event.ConversationID(conversationID), event.SeqGT(afterSeq)).
		Order(ent.Asc(event.FieldSeq)).
		Limit(limit).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("conversation: read events of %s after %d: %w", conversationID, afterSeq, err)
	}
	return evs, nil
}

// EventsBefore returns up to limit events with seq < beforeSeq, newest
// first.
func EventsBefore(ctx context.Context, db *ent.Client, conversationID uuid.UUID, beforeSeq int64, limit int) ([]*ent.Event, error) {
	evs, err := db.Event.Query().
		Where(event.ConversationID(conversationID), event.SeqLT(beforeSeq)).
		Order(ent.Desc(event.FieldSeq)).
		Limit(limit).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("conversation: read events of %s before %d: %w", conversationID, beforeSeq, err)
	}
	return evs, nil
}
