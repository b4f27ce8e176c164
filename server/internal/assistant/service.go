package assistant

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/botsession"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/event"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/ent/schema"
	"github.com/parleyhq/parley/ent/servicecase"
	"github.com/parleyhq/parley/ent/setting"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/assistant/dialog"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/cases"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/events"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/session"
	"github.com/parleyhq/parley/server/internal/store"
)

// Limits of the context call.
const (
	contextConversations = 20
	contextCases         = 20
	contextArticles      = 5
)

// Service implements parleyv1connect.AssistantServiceHandler.
type Service struct {
	bot *Bot
}

var _ parleyv1connect.AssistantServiceHandler = (*Service)(nil)

// NewService returns the AssistantService handler.
func NewService(bot *Bot) *Service { return &Service{bot: bot} }

// GetBotConfig returns the stored configuration, or the default one.
func (s *Service) GetBotConfig(ctx context.Context, _ *parleyv1.GetBotConfigRequest) (*parleyv1.GetBotConfigResponse, error) {
	set, err := s.bot.opts.DB.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load settings: %w", err))
	}
	text := set.BotConfig
	if text == "" {
		text = string(defaultConfig)
	}
	return &parleyv1.GetBotConfigResponse{Yaml: text, Version: set.BotConfigVersion}, nil
}

// UpdateBotConfig checks and stores a new configuration. Storing the
// same text again changes nothing (not even the version).
func (s *Service) UpdateBotConfig(ctx context.Context, req *parleyv1.UpdateBotConfigRequest) (*parleyv1.UpdateBotConfigResponse, error) {
	cfg, err := dialog.Parse([]byte(req.GetYaml()), s.bot.opts.Actions.Names())
	if err != nil {
		return nil, apierr.New(connect.CodeInvalidArgument, "BAD_BOT_CONFIG", err.Error())
	}
	version, err := store.Write(ctx, s.bot.opts.DB, func(ctx context.Context, tx *ent.Tx) (int64, error) {
		// A hand-off to a queue that does not exist would strand the
		// customer in the matching rules' queue instead.
		queues := cfg.HandoffQueues()
		for _, id := range slices.Sorted(maps.Keys(queues)) {
			for _, name := range queues[id] {
				ok, err := tx.Queue.Query().Where(queue.DisplayName(name)).Exist(ctx)
				if err != nil {
					return 0, fmt.Errorf("check queue %q: %w", name, err)
				}
				if !ok {
					return 0, apierr.New(connect.CodeInvalidArgument, "BAD_BOT_CONFIG",
						fmt.Sprintf("topic %s hands off to queue %q, which does not exist; name an existing queue or leave queue out to route by the matching rules", id, name))
				}
			}
		}
		set, err := tx.Setting.Get(ctx, schema.SettingsID)
		if err != nil {
			return 0, fmt.Errorf("load settings: %w", err)
		}
		if set.BotConfig == req.GetYaml() {
			return set.BotConfigVersion, nil
		}
		next := set.BotConfigVersion + 1
		err = tx.Setting.Update().Where(setting.ID(schema.SettingsID), setting.BotConfigVersion(set.BotConfigVersion)).
			SetBotConfig(req.GetYaml()).SetBotConfigVersion(next).Exec(ctx)
		if err != nil {
			return 0, fmt.Errorf("store bot configuration: %w", err)
		}
		return next, nil
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.bot.opts.Hub.Notify(events.ConfigKey)
	return &parleyv1.UpdateBotConfigResponse{Topics: topicsToProto(cfg), Version: version}, nil
}

// ListTopics lists the configured topics.
func (s *Service) ListTopics(ctx context.Context, _ *parleyv1.ListTopicsRequest) (*parleyv1.ListTopicsResponse, error) {
	set, err := s.bot.opts.DB.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load settings: %w", err))
	}
	return &parleyv1.ListTopicsResponse{Topics: topicsToProto(s.bot.configFor(set))}, nil
}

func topicsToProto(cfg *dialog.Config) []*parleyv1.Topic {
	var out []*parleyv1.Topic
	for _, t := range cfg.Topics() {
		out = append(out, &parleyv1.Topic{Id: t.ID, DisplayName: t.Name, TriggerPhrases: t.Triggers, Slots: t.Slots})
	}
	return out
}

// HandBackToBot gives a chat the calling agent holds back to the bot.
func (s *Service) HandBackToBot(ctx context.Context, req *parleyv1.HandBackToBotRequest) (*parleyv1.HandBackToBotResponse, error) {
	p := auth.FromContext(ctx)
	db := s.bot.opts.DB
	id := chatlog.ParseID(req.GetConversationId())
	if _, err := chatlog.Authorize(ctx, db.Client, p, id, chatlog.Manage); err != nil {
		return nil, err
	}
	me, err := db.Agent.Get(ctx, p.AgentID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load agent %s: %w", p.AgentID, err))
	}
	now := s.bot.opts.Clock.Now()
	var notify []string
	err = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		cur, err := tx.Conversation.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("reload conversation: %w", err)
		}
		if cur.State == conversation.StateClosed {
			return apierr.New(connect.CodeFailedPrecondition, "CONVERSATION_CLOSED", fmt.Sprintf("conversation %s is closed", id))
		}
		notify, err = routing.HandBack(ctx, tx, cur, me, req.GetNote(), now)
		if err != nil {
			return err
		}
		back, err := chatlog.Append(ctx, tx, id, now, chatlog.Entry{Sender: chatlog.Bot, Payload: &parleyv1.MessagePosted{
			Text: "I'm back to help. What else can I do for you?",
		}})
		if err != nil {
			return err
		}
		// What the customer said to the agent was the agent's to answer:
		// the bot answers only what comes after this.
		return resetTurns(ctx, tx, id, back[0].Seq, now)
	})
	if err != nil {
		return nil, apierr.From(err)
	}
	s.bot.opts.Hub.Notify(notify...)
	s.bot.opts.Dispatcher.Kick()
	conv, err := db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation: %w", err))
	}
	return &parleyv1.HandBackToBotResponse{Conversation: chatlog.ToProto(conv)}, nil
}

// resetTurns starts the bot afresh in conversation id from seq on, inside
// tx: whatever it was doing before an agent took over is done (what it
// captured stays on the interaction), and no message up to seq is a turn
// it owes. A chat that never had the bot gets its session here.
func resetTurns(ctx context.Context, tx *ent.Tx, id uuid.UUID, seq int64, now time.Time) error {
	n, err := tx.BotSession.Update().Where(botsession.ConversationID(id)).
		ClearState().SetPendingSeq(seq).SetAnsweredSeq(seq).SetTurnPending(false).ClearLeaseUntil().SetUpdatedAt(now).
		Save(ctx)
	if err != nil {
		return fmt.Errorf("reset bot session of %s: %w", id, err)
	}
	if n == 0 {
		err = tx.BotSession.Create().SetConversationID(id).SetPendingSeq(seq).SetAnsweredSeq(seq).SetCreatedAt(now).SetUpdatedAt(now).Exec(ctx)
		if err != nil {
			return fmt.Errorf("create bot session of %s: %w", id, err)
		}
	}
	return nil
}

// GetConversationContext gathers what an agent needs to take over a chat.
func (s *Service) GetConversationContext(ctx context.Context, req *parleyv1.GetConversationContextRequest) (*parleyv1.GetConversationContextResponse, error) {
	p := auth.FromContext(ctx)
	db := s.bot.opts.DB.Client
	id := chatlog.ParseID(req.GetConversationId())
	if _, err := chatlog.Authorize(ctx, db, p, id, chatlog.Read); err != nil {
		return nil, err
	}
	conv, err := db.Conversation.Query().Where(conversation.ID(id)).WithInteraction().Only(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load conversation: %w", err))
	}
	in := conv.Edges.Interaction
	out := &parleyv1.GetConversationContextResponse{Conversation: chatlog.ForCaller(conv, p)}
	set, err := db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load settings: %w", err))
	}
	out.WrapUpCodes, out.WrapUpRequired = session.WrapUpCodesToProto(set.WrapUpCodes), set.WrapUpRequired

	consumerID := conv.ConsumerID
	if consumerID == nil {
		// A guest's record an agent created with a case.
		c, err := db.ServiceCase.Query().
			Where(servicecase.ConversationID(id), servicecase.ConsumerIDNotNil()).
			Order(ent.Desc(servicecase.FieldCreatedAt)).First(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return nil, apierr.Internal(fmt.Errorf("find the guest's consumer record: %w", err))
		}
		if c != nil {
			consumerID = c.ConsumerID
		}
	}
	if consumerID != nil {
		c, err := db.Consumer.Get(ctx, *consumerID)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("load consumer %s: %w", *consumerID, err))
		}
		out.Consumer = cases.ConsumerToProto(c)
	}

	// The customer's other conversations: the consumer's and, for a
	// guest, those started with the same email address.
	var same []*ent.Conversation
	mine := []predicate.Conversation{}
	if consumerID != nil {
		mine = append(mine, conversation.ConsumerID(*consumerID))
	}
	if conv.ConsumerID == nil && strings.TrimSpace(in.Email) != "" {
		// A guest's email is what they typed, never proof of who they
		// are: it finds other guests' chats, never a signed-in
		// customer's.
		mine = append(mine, conversation.And(conversation.ConsumerIDIsNil(),
			conversation.HasInteractionWith(interaction.EmailEqualFold(in.Email))))
	}
	if len(mine) > 0 {
		same, err = db.Conversation.Query().
			Where(conversation.IDNEQ(id), conversation.Or(mine...)).
			WithInteraction().
			Order(ent.Desc(conversation.FieldCreatedAt)).
			Limit(contextConversations).
			All(ctx)
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("load the customer's conversations: %w", err))
		}
	}
	for _, c := range same {
		out.OtherConversations = append(out.OtherConversations, chatlog.ForCaller(c, p))
	}

	// Their cases: the consumer's and this conversation's.
	casePreds := []predicate.ServiceCase{servicecase.ConversationID(id)}
	if consumerID != nil {
		casePreds = append(casePreds, servicecase.ConsumerID(*consumerID))
	}
	found, err := db.ServiceCase.Query().Where(servicecase.Or(casePreds...)).
		Order(ent.Desc(servicecase.FieldCreatedAt)).Limit(contextCases).All(ctx)
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load the customer's cases: %w", err))
	}
	for _, c := range found {
		out.Cases = append(out.Cases, cases.CaseToProto(c))
	}

	if out.Summary, err = chatlog.LoadSummary(ctx, db, id); err != nil {
		return nil, apierr.Internal(err)
	}

	latest, err := db.Event.Query().
		Where(event.ConversationID(id), event.Kind("message_posted"),
			event.SenderRoleIn(event.SenderRoleGuest, event.SenderRoleCustomer)).
		Order(ent.Desc(event.FieldSeq)).First(ctx)
	if err != nil && !ent.IsNotFound(err) {
		return nil, apierr.Internal(fmt.Errorf("load the latest customer message: %w", err))
	}
	if latest != nil && s.bot.opts.Knowledge != nil {
		text, err := messageText(latest)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		out.LatestCustomerMessage = text
		q := knowledgeQuery(text, in.Language, contextArticles)
		q.PublicOnly = false // agents may read internal articles
		if out.SuggestedArticles, err = s.bot.opts.Knowledge.Search(ctx, q); err != nil {
			return nil, apierr.Internal(fmt.Errorf("suggest articles: %w", err))
		}
	}
	return out, nil
}

// knowledgeQuery is the search for a customer's text: public articles in
// their language (any, when they did not say).
func knowledgeQuery(text, language string, limit int) knowledge.Query {
	return knowledge.Query{Text: text, Locale: language, Limit: limit, PublicOnly: true}
}
