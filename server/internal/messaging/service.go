// Package messaging serves MessagingService: sending messages (idempotent
// per client_message_id, rate limited per sender), reading a conversation's
// log (replayed from a cursor and then followed live, or paged in either
// direction), ephemeral typing signals, delivered and read cursors, and
// attachments.
package messaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/attachment"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/assistant"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/delivery"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/ratelimit"
	"github.com/parleyhq/parley/server/internal/store"
)

// Options tune the service; App fills in the defaults.
type Options struct {
	// Log reports what the caller is not told (a limit falling back to
	// per-replica buckets).
	Log *slog.Logger
	// Heartbeat is how long a Subscribe stream stays silent before it
	// sends a heartbeat.
	Heartbeat time.Duration
	// SendRate is how many messages and uploads per second a sender may
	// keep up after spending SendBurst.
	SendRate  float64
	SendBurst int
	// MaxAttachmentBytes bounds one attachment's content.
	MaxAttachmentBytes int
	// AttachmentTypes are the media types an attachment may have.
	AttachmentTypes []string
	// TypingTTL is how long a typing indicator shows without a refresh.
	TypingTTL time.Duration
	// MaxConversationAttachmentBytes bounds the attachments of one
	// conversation together.
	MaxConversationAttachmentBytes int64
	// BotTurn, when set, is called after a customer's message to a chat
	// the virtual agent holds commits (it wakes the bot's runner).
	BotTurn func()
}

// Service implements parleyv1connect.MessagingServiceHandler.
type Service struct {
	db      *store.DB
	hub     *events.Hub
	signals *events.Signals
	clk     clock.Clock
	opts    Options
	limits  ratelimit.Buckets
	posters *posters
	tails   *delivery.Tails
	lines   *delivery.Lines
}

// TailWindow is how many of a conversation's newest events its shared
// tail holds for the subscribers that follow it; one further behind reads
// the store until it catches up.
const TailWindow = 128

var _ parleyv1connect.MessagingServiceHandler = (*Service)(nil)

// NewService returns the MessagingService handler.
func NewService(db *store.DB, hub *events.Hub, signals *events.Signals, clk clock.Clock, opts Options) *Service {
	return &Service{
		db: db, hub: hub, signals: signals, clk: clk, opts: opts,
		limits:  ratelimit.For(db, "send", ratelimit.Rate{PerSecond: opts.SendRate, Burst: opts.SendBurst}, opts.Log),
		posters: newPosters(),
		tails:   delivery.NewTails(db.Client, hub, TailWindow),
		lines:   delivery.NewLines(db.Client, hub, clk),
	}
}

// SendMessage appends a message. A retry with the same client_message_id
// and content returns the original event; with other content it is
// rejected. A retry is never refused by the send limit and does not count
// against it, nor does a send the store refused as overloaded (nothing was
// done); a send refused for what it asked (a closed chat, an attachment
// that is not theirs) counts like any other.
//
// The path is short on purpose (it is the hottest write): the caller's
// access and sender come from one read of the conversation (none for a
// customer's or guest's later sends, see posters), and the write is two
// statements (see chatlog.AppendPost), which check the state the post
// depends on as of the write. A retry is found by the unique index on
// the sender's client_message_id, not by a read before every send.
//
// Its key is not kept by idempotency.Do but on the message event itself,
// under the unique index (conversation, sender, client_message_id): the
// id is part of the message (shown to its sender) and must keep
// deduplicating as long as the message is in the log, past the
// idempotency retention. A retry is told from a reused id with
// idempotency.Fingerprint and Match like Do's.
func (s *Service) SendMessage(ctx context.Context, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	me, err := s.poster(ctx, p, id)
	if err != nil {
		return nil, err
	}
	sender := me.sender
	var channel *event.Channel
	if p.Role == auth.RoleGuest || p.Role == auth.RoleCustomer {
		c := me.channel
		if req.GetChannel() != parleyv1.Channel_CHANNEL_UNSPECIFIED {
			c = event.Channel(chatlog.ChannelFromProto(req.GetChannel()))
		}
		channel = &c
	}
	now := s.clk.Now()
	var appended *ent.Event
	var limited *sendLimited
	var botTurn bool
	// READ COMMITTED on PostgreSQL: each check is atomic where it is made
	// (the limit's upsert, the attachments' conditional update, the
	// state in AppendPost's UPDATE, the unique keys), and sends to one
	// conversation queue on its row's lock (AppendPost's UPDATE), which a
	// READ COMMITTED statement waits for and then re-reads, never aborts.
	err = store.InTx(store.ReadCommitted(ctx), s.db, func(ctx context.Context, tx *ent.Tx) error {
		// Spent with the write: a send that is not written (a retry, an
		// overloaded store) spends nothing.
		limited = nil
		ok, wait, err := s.limits.Spend(ctx, tx, p.Caller(), now)
		if err != nil {
			return err
		}
		if !ok {
			limited = &sendLimited{wait: wait}
			return limited
		}
		attachments, err := s.attachmentsFor(ctx, tx, id, sender, req.GetAttachmentIds())
		if err != nil {
			return err
		}
		var state conversation.State
		appended, state, err = chatlog.AppendPost(ctx, tx, p, id, now, chatlog.Entry{
			Sender: sender, Channel: channel, ClientMessageID: req.GetClientMessageId(),
			Payload: &parleyv1.MessagePosted{Text: req.GetText(), ClientMessageId: req.GetClientMessageId(), Attachments: attachments},
		})
		botTurn = err == nil && state == conversation.StateBot && channel != nil
		if botTurn {
			// The bot owes the customer an answer: durably, with the message.
			return assistant.MarkPending(ctx, tx, id, appended.Seq)
		}
		return err
	})
	if errors.Is(err, chatlog.ErrDuplicate) || limited != nil {
		// A retry (or a concurrent one that won) is answered with the
		// original, which already paid for itself; the limit refuses only
		// new messages.
		prior, perr := s.priorSend(ctx, id, sender, req)
		if perr != nil && limited == nil {
			s.limits.Take(ctx, p.Caller(), now) // a reused id counts
		}
		if prior != nil || perr != nil {
			return prior, perr
		}
		if limited != nil {
			return nil, ratelimit.Refusal("SEND_RATE_LIMITED", "you are sending", limited.wait)
		}
	}
	if _, overloaded := store.IsOverloaded(err); err != nil && !overloaded {
		// Refused for what it asked (a closed chat, an attachment that is
		// not theirs): it counts like any other send.
		s.limits.Take(ctx, p.Caller(), now)
	}
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(events.ConversationKey(id.String()))
	if botTurn && s.opts.BotTurn != nil {
		s.opts.BotTurn()
	}
	out, err := chatlog.EventToProto(appended, sender.ID)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return &parleyv1.SendMessageResponse{Event: out}, nil
}

// sendLimited is the send transaction's error when the sender's limit
// refuses it.
type sendLimited struct{ wait time.Duration }

func (e *sendLimited) Error() string {
	return fmt.Sprintf("send limit reached; try again in %s", e.wait)
}

// poster checks that p may post in conversation id and returns who they
// post as, from the posters cache or from one read of the conversation.
func (s *Service) poster(ctx context.Context, p *auth.Principal, id uuid.UUID) (poster, error) {
	if known, ok := s.posters.get(id, p); ok {
		return known, nil
	}
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Post)
	if err != nil {
		return poster{}, err
	}
	sender, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return poster{}, apierr.Internal(err)
	}
	me := poster{sender: sender, channel: event.Channel(conv.Edges.Interaction.Channel)}
	s.posters.put(id, p, me)
	return me, nil
}

// touchCustomer records customer activity on the conversation, which keeps
// it from being closed as abandoned.
func touchCustomer(ctx context.Context, tx *ent.Tx, p *auth.Principal, id uuid.UUID, now time.Time) error {
	if p.Role != auth.RoleGuest && p.Role != auth.RoleCustomer {
		return nil
	}
	if err := tx.Conversation.UpdateOneID(id).SetCustomerActiveAt(now).Exec(ctx); err != nil {
		return fmt.Errorf("record customer activity: %w", err)
	}
	return nil
}

// attachmentsFor loads the attachments a message references: each must
// have been uploaded to this conversation by the sender.
func (s *Service) attachmentsFor(ctx context.Context, tx *ent.Tx, convID uuid.UUID, sender chatlog.Sender, ids []string) ([]*parleyv1.Attachment, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	uuids := make([]uuid.UUID, len(ids))
	for i, id := range ids {
		uuids[i] = chatlog.ParseID(id)
	}
	rows, err := tx.Attachment.Query().
		Where(attachment.IDIn(uuids...), attachment.ConversationID(convID), attachment.UploaderID(sender.ID)).
		Select(attachmentMeta...).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load attachments: %w", err)
	}
	out := make([]*parleyv1.Attachment, 0, len(ids))
	for _, id := range uuids {
		i := slices.IndexFunc(rows, func(a *ent.Attachment) bool { return a.ID == id })
		if i < 0 {
			return nil, apierr.New(connect.CodeFailedPrecondition, "ATTACHMENT_NOT_AVAILABLE",
				fmt.Sprintf("attachment %s was not uploaded by you to this conversation; upload it with UploadAttachment first", id))
		}
		out = append(out, attachmentToProto(rows[i]))
	}
	// Referenced uploads are kept with the message; the others expire. The
	// update is the check that counts (it locks the rows, and retention
	// deletes only unreferenced ones): an upload deleted since the read
	// above is not there to mark.
	distinct := slices.Compact(slices.SortedFunc(slices.Values(uuids), func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }))
	marked, err := tx.Attachment.Update().
		Where(attachment.IDIn(distinct...), attachment.ConversationID(convID), attachment.UploaderID(sender.ID)).
		SetReferenced(true).Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("mark attachments referenced: %w", err)
	}
	if marked != len(distinct) {
		return nil, apierr.New(connect.CodeFailedPrecondition, "ATTACHMENT_NOT_AVAILABLE",
			"an attachment of this message expired before it was sent; upload it again")
	}
	return out, nil
}

// priorSend returns the event an earlier send with the same key stored, or
// nil if there is none.
func (s *Service) priorSend(ctx context.Context, id uuid.UUID, sender chatlog.Sender, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	prior, err := s.db.Event.Query().Where(
		event.ConversationID(id), event.SenderID(sender.ID), event.ClientMessageID(req.GetClientMessageId()),
	).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("look up client_message_id: %w", err))
	}
	out, err := chatlog.EventToProto(prior, sender.ID)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	posted := out.GetMessagePosted()
	ids := make([]string, len(posted.GetAttachments()))
	for i, a := range posted.GetAttachments() {
		ids[i] = a.GetId()
	}
	stored, err := messageFingerprint(posted.GetText(), ids)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	hash, err := messageFingerprint(req.GetText(), req.GetAttachmentIds())
	if err != nil {
		return nil, apierr.Internal(err)
	}
	if err := idempotency.Match(stored, hash, "client_message_id", req.GetClientMessageId()); err != nil {
		return nil, err
	}
	return &parleyv1.SendMessageResponse{Event: out}, nil
}

// messageFingerprint fingerprints what a retried SendMessage must repeat:
// its text and attachments.
func messageFingerprint(text string, attachmentIDs []string) ([]byte, error) {
	return idempotency.Fingerprint(&parleyv1.SendMessageRequest{Text: text, AttachmentIds: attachmentIDs})
}
