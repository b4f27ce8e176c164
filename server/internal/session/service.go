// Package session serves SessionService: the pre-chat form, starting guest
// chats (with the guest session limit), reading and closing conversations,
// and the installation's settings.
package session

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clientaddr"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/routing/engine"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
)

// GuestTokenLifetime bounds how long a guest token works if its
// conversation is never closed.
const GuestTokenLifetime = 24 * time.Hour

// GuestSessionWindow is the rolling window of max_guest_sessions_per_hour.
const GuestSessionWindow = time.Hour

// Service implements parleyv1connect.SessionServiceHandler.
type Service struct {
	db         *store.DB
	hub        *events.Hub
	clk        clock.Clock
	dispatcher *routing.Dispatcher
	// bot starts chats with the virtual agent where the settings say so;
	// nil never does.
	bot Bot
}

// Bot is the virtual agent as chats start with it (package assistant's
// Bot; an interface so that the session service does not import it).
type Bot interface {
	// First reports whether a chat on channel from site (nil if none)
	// starts with the bot under the settings set.
	First(set *ent.Setting, site *ent.Site, channel interaction.Channel) bool
	// StartInTx gives the new conversation to the bot inside tx; firstSeq
	// is the seq of the customer's first message, 0 for none.
	StartInTx(ctx context.Context, tx *ent.Tx, set *ent.Setting, convID uuid.UUID, firstSeq int64, now time.Time) error
	// MarkPending leaves the durable marker of a customer message at seq
	// that the bot owes an answer, inside the tx that wrote it.
	MarkPending(ctx context.Context, tx *ent.Tx, convID uuid.UUID, seq int64) error
	// Kick wakes the bot's runner after a commit.
	Kick()
}

var _ parleyv1connect.SessionServiceHandler = (*Service)(nil)

// NewService returns the SessionService handler.
func NewService(db *store.DB, hub *events.Hub, clk clock.Clock, dispatcher *routing.Dispatcher, bot Bot) *Service {
	return &Service{db: db, hub: hub, clk: clk, dispatcher: dispatcher, bot: bot}
}

// GetPreChatForm lists the issue types a guest may pick and the extra
// fields of the form.
func (s *Service) GetPreChatForm(ctx context.Context, _ *parleyv1.GetPreChatFormRequest) (*parleyv1.GetPreChatFormResponse, error) {
	set, err := s.db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load settings: %w", err))
	}
	return &parleyv1.GetPreChatFormResponse{
		IssueTypes: issueTypesToProto(set.IssueTypes),
		Fields:     PreChatFieldsToProto(set.PreChatFields),
	}, nil
}

// blank reports whether s shows nothing: only invisible characters.
func blank(s string) bool {
	return strings.TrimFunc(s, invisible) == ""
}

// invisible reports whether r shows nothing by itself: spaces, format and
// control characters (a zero-width space, a byte order mark), combining
// marks with nothing to combine with (variation selectors), the characters
// Unicode says to ignore in display (the Hangul fillers), and the blank
// braille pattern.
func invisible(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Cf, unicode.Cc, unicode.Mn, unicode.Me,
		unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) || r == '\u2800'
}

// checkName refuses a name the schema's length rule lets through but a
// person would not call a name: a blank one.
func checkName(name string) error {
	if blank(name) {
		return apierr.New(connect.CodeInvalidArgument, "NAME_BLANK", "name must not be blank")
	}
	return nil
}

// guestFingerprint is StartGuestChat's request fingerprint
// (idempotency.Fingerprint) without the request id, which is the key.
func guestFingerprint(req *parleyv1.StartGuestChatRequest) ([]byte, error) {
	form := proto.CloneOf(req)
	form.RequestId = ""
	return idempotency.Fingerprint(form)
}

// GuestRetryWindow is how long after a guest chat starts a retry of its
// StartGuestChat (same request_id and form) still gets its token back.
// After that the sealed token is erased and a retry is refused.
const GuestRetryWindow = 10 * time.Minute

// GuestStartsKey serializes the transactions that count guest starts
// against the limits and record one (store.Serialize).
const GuestStartsKey = "guest-starts"

// StartGuestChat stores the interaction, creates and routes the
// conversation, and returns a guest token for it. A retry (same request_id
// and form) within GuestRetryWindow returns the same conversation and the
// same token, counts against the guest limits like a new start, and is
// refused once the conversation has closed or its token was revoked.
//
// It does not use idempotency.Do: a guest has no caller to scope a key to
// before the chat exists (the random request id is itself the proof a
// retry gives), the response holds a token that must never be stored in
// the clear (it is sealed with the request id, which is stored only
// hashed), and a retry is checked again (limits, closed chat, revoked
// token) rather than answered from storage. The key lives hashed on the
// interaction, under its unique index, and retries are told from reused
// keys with idempotency.Fingerprint and Match like Do's.
func (s *Service) StartGuestChat(ctx context.Context, req *parleyv1.StartGuestChatRequest) (*parleyv1.StartGuestChatResponse, error) {
	if err := checkName(req.GetName()); err != nil {
		return nil, err
	}
	requestID, err := randomRequestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	now := s.clk.Now()
	hash, err := guestFingerprint(req)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	requestKey := auth.GuestRequestKey(requestID)
	address := clientaddr.FromContext(ctx)
	var convID uuid.UUID
	var token string
	// Guest starts are counted against the limits, then recorded: one at
	// a time.
	err = store.InTx(store.Serialize(ctx, GuestStartsKey), s.db, func(ctx context.Context, tx *ent.Tx) error {
		set, err := tx.Setting.Get(ctx, schema.SettingsID)
		if err != nil {
			return fmt.Errorf("load settings: %w", err)
		}
		prior, err := tx.Interaction.Query().Where(interaction.RequestID(requestKey)).WithConversation().Only(ctx)
		switch {
		case err == nil:
			convID, token, err = s.retryGuestStart(ctx, tx, set, req, requestID, prior, hash, address, now)
			return err
		case !ent.IsNotFound(err):
			return fmt.Errorf("look up request id: %w", err)
		}
		if err := checkIssueType(set, req.GetIssueType()); err != nil {
			return err
		}
		if err := checkFormFields(set.PreChatFields, req.GetFormFields()); err != nil {
			return err
		}
		site, err := guestSite(ctx, tx, req.GetSiteId())
		if err != nil {
			return err
		}
		if err := countGuestStart(ctx, tx, set, site, address, false, now); err != nil {
			return err
		}
		conv, err := s.open(ctx, tx, chatForm{
			requestID: requestKey, hash: hash, name: req.GetName(), email: req.GetEmail(),
			issueType: req.GetIssueType(), firstMessage: req.GetFirstMessage(), channel: req.GetChannel(),
			clientAddress: address, site: site, language: req.GetLanguage(), formFields: req.GetFormFields(),
		}, set, nil, now)
		if err != nil {
			return err
		}
		convID = conv.ID
		if token, err = auth.IssueGuestToken(ctx, tx, conv.ID, now.Add(GuestTokenLifetime)); err != nil {
			return err
		}
		sealed := auth.SealGuestToken(requestID, token)
		if err := tx.Interaction.UpdateOneID(conv.InteractionID).SetGuestTokenSealed(sealed).Exec(ctx); err != nil {
			return fmt.Errorf("store sealed guest token: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.kick()
	conv, err := s.db.Conversation.Query().Where(conversation.ID(convID)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation: %w", err))
	}
	if conv.QueueID != nil {
		s.hub.Notify(events.QueueKey(conv.QueueID.String()), events.RoutingKey)
	}
	return &parleyv1.StartGuestChatResponse{Conversation: chatlog.ToProto(conv), GuestToken: token}, nil
}

// randomRequestID returns a StartGuestChat request_id in its one
// canonical spelling (lowercase), or refuses one that is not a random
// (version 4) UUID: it is the secret a retry proves, so it must not be
// guessable from a clock or a counter.
func randomRequestID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 {
		return "", apierr.New(connect.CodeInvalidArgument, "REQUEST_ID_NOT_RANDOM",
			fmt.Sprintf("request_id %s must be a random (version 4) UUID, such as crypto.randomUUID() makes", id))
	}
	return u.String(), nil
}

// retryGuestStart answers a retried StartGuestChat: the caller proved it
// knows the request id, which opens the token sealed at the start. The
// retry counts against the guest limits (checked by the retry's own client
// address and the chat's site).
func (s *Service) retryGuestStart(ctx context.Context, tx *ent.Tx, set *ent.Setting, req *parleyv1.StartGuestChatRequest,
	requestID string, prior *ent.Interaction, hash []byte, address string, now time.Time) (uuid.UUID, string, error) {
	if prior.Origin != interaction.OriginGuest || prior.Edges.Conversation == nil {
		return uuid.Nil, "", idempotency.Reused("request_id", req.GetRequestId())
	}
	if err := idempotency.Match(prior.RequestHash, hash, "request_id", req.GetRequestId()); err != nil {
		return uuid.Nil, "", err
	}
	// The window is checked first: it is a fact of the clock, while the
	// chat may be closed in the background (as abandoned) at any moment.
	expired := apierr.New(connect.CodeFailedPrecondition, "RETRY_WINDOW_PASSED",
		fmt.Sprintf("the chat started with request_id %s can no longer be resumed by a retry; start a new chat with a new request_id", req.GetRequestId()))
	if now.Sub(prior.CreatedAt) >= GuestRetryWindow {
		return uuid.Nil, "", expired
	}
	conv := prior.Edges.Conversation
	if conv.State == conversation.StateClosed {
		return uuid.Nil, "", apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_CLOSED",
			fmt.Sprintf("the chat started with request_id %s is closed; start a new chat with a new request_id", req.GetRequestId()))
	}
	if prior.GuestTokenSealed == nil {
		return uuid.Nil, "", expired
	}
	// The retry comes from the chat's site, like the start did.
	siteID := ""
	if prior.SiteID != nil {
		siteID = prior.SiteID.String()
	}
	site, err := guestSite(ctx, tx, siteID)
	if err != nil {
		return uuid.Nil, "", err
	}
	if err := countGuestStart(ctx, tx, set, site, address, true, now); err != nil {
		return uuid.Nil, "", err
	}
	token, err := auth.OpenGuestToken(requestID, *prior.GuestTokenSealed)
	if err != nil {
		return uuid.Nil, "", err
	}
	live, err := auth.GuestTokenLive(ctx, tx, token, conv.ID, now)
	if err != nil {
		return uuid.Nil, "", err
	}
	if !live {
		return uuid.Nil, "", apierr.New(connect.CodeFailedPrecondition, "GUEST_TOKEN_REVOKED",
			fmt.Sprintf("the chat started with request_id %s no longer has a live guest token; start a new chat with a new request_id", req.GetRequestId()))
	}
	return conv.ID, token, nil
}

// chatForm is what a new conversation starts from.
type chatForm struct {
	// requestID is stored on the interaction: the customer's request id,
	// or the lookup key of a guest's.
	requestID string
	// firstMessageID is the first message's client_message_id, if any.
	firstMessageID string
	hash           []byte
	name, email    string
	issueType      string
	firstMessage   string
	channel        parleyv1.Channel
	language       string
	formFields     map[string]string
	// tier is a signed-in customer's tier.
	tier string
	// clientAddress and site are set for guests.
	clientAddress string
	site          *ent.Site
}

// checkIssueType fails unless issueType is one of the settings' issue types.
func checkIssueType(set *ent.Setting, issueType string) error {
	if !slices.ContainsFunc(set.IssueTypes, func(it schema.IssueType) bool { return it.Value == issueType }) {
		return apierr.New(connect.CodeInvalidArgument, "UNKNOWN_ISSUE_TYPE",
			fmt.Sprintf("issue_type %q is not one of: %s", issueType, issueTypeValues(set.IssueTypes)))
	}
	return nil
}

// DefaultFieldMaxLength is a pre-chat field's max_length when it is 0.
const DefaultFieldMaxLength = 500

// checkFormFields checks form_fields against the configured pre-chat
// fields: a required field must be present and not blank (only spaces or
// invisible characters), a choice
// field's value must be one of its options, and no value may be longer
// than its field's max_length. An empty value of an optional field counts
// as absent. Keys that name no configured field pass unchecked.
func checkFormFields(fields []schema.PreChatField, values map[string]string) error {
	for _, f := range fields {
		key := fmt.Sprintf("form_fields[%q]", f.Name)
		v := values[f.Name]
		if f.Required && blank(v) {
			return apierr.New(connect.CodeInvalidArgument, "FORM_FIELD_REQUIRED",
				fmt.Sprintf("%s is required (%s)", f.Label, key))
		}
		if v == "" {
			continue
		}
		limit := cmp.Or(f.MaxLength, DefaultFieldMaxLength)
		if n := utf8.RuneCountInString(v); n > limit {
			return apierr.New(connect.CodeInvalidArgument, "FORM_FIELD_TOO_LONG",
				fmt.Sprintf("%s must be at most %d characters, not %d (%s)", f.Label, limit, n, key))
		}
		if len(f.Options) > 0 && !slices.Contains(f.Options, v) {
			return apierr.New(connect.CodeInvalidArgument, "FORM_FIELD_NOT_AN_OPTION",
				fmt.Sprintf("%s must be one of: %s (%s)", f.Label, strings.Join(f.Options, ", "), key))
		}
	}
	return nil
}

// kick wakes the dispatcher and the bot's runner after a commit.
func (s *Service) kick() {
	s.dispatcher.Kick()
	if s.bot != nil {
		s.bot.Kick()
	}
}

// open stores the interaction and creates the conversation: with the
// virtual agent where the settings (set) enable it for the channel or
// site, otherwise in the queue its rules pick. It logs the customer's
// join, first message, the controller and the queueing or the bot's
// greeting. customer is nil for a guest, whose sender is the new
// interaction.
func (s *Service) open(ctx context.Context, tx *ent.Tx, form chatForm, set *ent.Setting, customer *chatlog.Sender, now time.Time) (*ent.Conversation, error) {
	channel := chatlog.ChannelFromProto(form.channel)
	botFirst := s.bot != nil && s.bot.First(set, form.site, channel)
	fields := engine.Interaction{
		"issue_type": form.issueType,
		"channel":    string(channel),
		"language":   form.language,
		"tier":       form.tier,
	}
	if form.site != nil {
		fields["site"] = form.site.ID.String()
	}
	for k, v := range form.formFields {
		fields["form."+k] = v
	}
	var queue *ent.Queue
	if !botFirst {
		var err error
		if queue, err = routing.RouteInteraction(ctx, tx, fields); err != nil {
			return nil, err
		}
	}
	origin := interaction.OriginGuest
	if customer != nil {
		origin = interaction.OriginCustomer
	}
	in := tx.Interaction.Create().
		SetCreatedAt(now).
		SetName(form.name).
		SetEmail(form.email).
		SetIssueType(form.issueType).
		SetChannel(channel).
		SetFirstMessage(form.firstMessage).
		SetOrigin(origin).
		SetRequestID(form.requestID).
		SetRequestHash(form.hash).
		SetClientAddress(form.clientAddress).
		SetLanguage(form.language).
		SetTier(form.tier).
		SetFormFields(formFieldsOrEmpty(form.formFields))
	if form.site != nil {
		in.SetSiteID(form.site.ID)
	}
	saved, err := in.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("create interaction: %w", err)
	}
	create := tx.Conversation.Create().
		SetCreatedAt(now).
		SetInteractionID(saved.ID).
		SetCustomerActiveAt(now)
	if botFirst {
		create.SetState(conversation.StateBot)
	} else {
		create.SetState(conversation.StateQueued).
			SetQueueID(queue.ID).
			SetQueuedAt(now).
			SetQueueEnteredAt(now).
			SetPriority(queue.Priority)
	}
	who := chatlog.Sender{Role: event.SenderRoleGuest, ID: saved.ID.String(), Name: saved.Name}
	if customer != nil {
		who = *customer
		create.SetConsumerID(uuid.MustParse(customer.ID))
	}
	conv, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("create conversation: %w", err)
	}
	evChannel := event.Channel(channel)
	entries := []chatlog.Entry{{Sender: who, Channel: &evChannel, Payload: &parleyv1.ParticipantJoined{Participant: who.Participant()}}}
	if form.firstMessage != "" {
		// The first message has no client_message_id: a guest's request id
		// is a secret, and the form is not sent with SendMessage.
		entries = append(entries, chatlog.Entry{
			Sender: who, Channel: &evChannel, ClientMessageID: form.firstMessageID,
			Payload: &parleyv1.MessagePosted{Text: form.firstMessage, ClientMessageId: form.firstMessageID},
		})
	}
	if botFirst {
		appended, err := chatlog.Append(ctx, tx, conv.ID, now, entries...)
		if err != nil {
			return nil, err
		}
		var firstSeq int64
		if form.firstMessage != "" {
			firstSeq = appended[len(appended)-1].Seq
		}
		if err := s.bot.StartInTx(ctx, tx, set, conv.ID, firstSeq, now); err != nil {
			return nil, err
		}
		return conv, nil
	}
	entries = append(entries, chatlog.Entry{Sender: chatlog.System, Payload: &parleyv1.ConversationQueued{QueueId: queue.ID.String(), QueueName: queue.DisplayName}})
	entries = chatlog.WithControllerChange(entries, "", conversation.StateQueued, chatlog.ReasonStart)
	if _, err := chatlog.Append(ctx, tx, conv.ID, now, entries...); err != nil {
		return nil, err
	}
	return conv, nil
}

// checkWrapUp checks a staff member's wrap-up against the settings and returns
// what to record: the code must be one of the settings' codes, and an
// agent must give one when the settings require it. Nothing given (and
// nothing required) records nothing.
func checkWrapUp(ctx context.Context, tx *ent.Tx, p *auth.Principal, req *parleyv1.CloseConversationRequest, closer chatlog.Sender, now time.Time) (*schema.WrapUp, error) {
	set, err := tx.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return nil, fmt.Errorf("load settings: %w", err)
	}
	code, notes := req.GetWrapUpCode(), strings.TrimFunc(req.GetWrapUpNotes(), invisible)
	if code == "" && set.WrapUpRequired && p.Role == auth.RoleAgent {
		return nil, apierr.New(connect.CodeInvalidArgument, "WRAP_UP_CODE_REQUIRED",
			"wrap_up_code is required to close a chat: one of "+wrapUpCodeList(set.WrapUpCodes))
	}
	w := &schema.WrapUp{Code: code, Notes: notes, ClosedBy: cmp.Or(closer.ID, p.Caller()), Time: now}
	if code != "" {
		i := slices.IndexFunc(set.WrapUpCodes, func(c schema.WrapUpCode) bool { return c.Code == code })
		if i < 0 {
			return nil, apierr.New(connect.CodeInvalidArgument, "WRAP_UP_CODE_UNKNOWN",
				fmt.Sprintf("wrap_up_code %q is not one of the settings' codes: %s", code, wrapUpCodeList(set.WrapUpCodes)))
		}
		w.Label = set.WrapUpCodes[i].Label
	}
	if w.Code == "" && w.Notes == "" {
		return nil, nil
	}
	return w, nil
}

// wrapUpCodeList names the codes for an error message.
func wrapUpCodeList(codes []schema.WrapUpCode) string {
	if len(codes) == 0 {
		return "(none are configured)"
	}
	names := make([]string, len(codes))
	for i, c := range codes {
		names[i] = c.Code
	}
	return strings.Join(names, ", ")
}

// formFieldsOrEmpty stores absent form fields as an empty map.
func formFieldsOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// GetConversation returns a conversation the caller may read.
func (s *Service) GetConversation(ctx context.Context, req *parleyv1.GetConversationRequest) (*parleyv1.GetConversationResponse, error) {
	p := auth.FromContext(ctx)
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, chatlog.ParseID(req.GetConversationId()), chatlog.Read)
	if err != nil {
		return nil, err
	}
	return &parleyv1.GetConversationResponse{Conversation: chatlog.ForCaller(conv, p)}, nil
}

// CloseConversation closes a conversation: it releases the agent and any
// pending offer, revokes guest tokens and appends the closing event, which
// ends every stream on the conversation.
func (s *Service) CloseConversation(ctx context.Context, req *parleyv1.CloseConversationRequest) (*parleyv1.CloseConversationResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Manage)
	if err != nil {
		return nil, err
	}
	if !p.Staff() && (req.GetWrapUpCode() != "" || req.GetWrapUpNotes() != "") {
		return nil, apierr.New(connect.CodeInvalidArgument, "WRAP_UP_NOT_ALLOWED",
			"wrap_up_code and wrap_up_notes are the staff's; leave them empty (reason says why the chat ends)")
	}
	sender, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	now := s.clk.Now()
	var notify []string
	err = store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		// Re-read under the write lock: the conversation may have moved.
		cur, err := tx.Conversation.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("reload conversation: %w", err)
		}
		if cur.State == conversation.StateClosed {
			return apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_CLOSED", fmt.Sprintf("conversation %s is already closed", id))
		}
		if p.Role == auth.RoleAgent && (cur.AgentID == nil || *cur.AgentID != p.AgentID) {
			return apierr.New(connect.CodePermissionDenied, "NOT_HOLDING_CONVERSATION", fmt.Sprintf("conversation %s is not assigned to you", id))
		}
		reason := req.GetReason()
		if reason == "" {
			reason = "closed by " + string(p.Role)
		}
		var wrapUp *schema.WrapUp
		if p.Staff() {
			if wrapUp, err = checkWrapUp(ctx, tx, p, req, sender, now); err != nil {
				return err
			}
		}
		if notify, err = routing.Close(ctx, tx, cur, sender, reason, now); err != nil {
			return err
		}
		if wrapUp == nil {
			return nil
		}
		if err := tx.Conversation.UpdateOneID(id).SetWrapUp(wrapUp).Exec(ctx); err != nil {
			return fmt.Errorf("record the wrap-up: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.hub.Notify(notify...)
	s.dispatcher.Kick()
	closed, err := s.db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation: %w", err))
	}
	return &parleyv1.CloseConversationResponse{Conversation: chatlog.ForCaller(closed, p)}, nil
}
