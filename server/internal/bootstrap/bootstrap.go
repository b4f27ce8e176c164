// Package bootstrap loads the YAML file that configures a new installation
// (settings, queues, matching rules, admins and agents) and applies it
// once, in one transaction, to an empty store.
package bootstrap

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/interaction"
	"github.com/parleyhq/parley/ent/schema"
	"github.com/parleyhq/parley/ent/site"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/admin"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/origin"
	"github.com/parleyhq/parley/server/internal/routing"
	"github.com/parleyhq/parley/server/internal/session"
	"github.com/parleyhq/parley/server/internal/store"
)

// Demo is the built-in demo bootstrap (demo.yaml): three support queues
// with their matching rules, three agents, and public demo tokens.
//
//go:embed demo.yaml
var Demo []byte

// ArticleImporter imports a folder of Markdown knowledge articles inside
// tx.
type ArticleImporter func(ctx context.Context, tx *ent.Tx, articles fs.FS) error

// MinTokenLength is the shortest token a bootstrap file may set.
const MinTokenLength = 12

// File is the bootstrap file's content.
type File struct {
	Settings Settings `yaml:"settings"`
	Queues   []Queue  `yaml:"queues"`
	Rules    []Rule   `yaml:"rules"`
	Admins   []Admin  `yaml:"admins"`
	// Supervisors read every conversation and the queues' waiting work.
	Supervisors []Admin `yaml:"supervisors"`
	Agents      []Agent `yaml:"agents"`
	// Sites embed the messenger: their origins get CORS answers.
	Sites []Site `yaml:"sites"`
	// BotConfig is the virtual agent's configuration (its YAML, as
	// AssistantService.UpdateBotConfig takes it); empty keeps the default.
	BotConfig string `yaml:"bot_config"`
	// Articles, when set, are Markdown knowledge articles imported with
	// the configuration (the demo's; ParseDemo sets it).
	Articles fs.FS `yaml:"-"`
	// Demo marks the built-in demo file (set by ParseDemo, never by YAML):
	// the installation it configures is recorded as a demo.
	Demo bool `yaml:"-"`
}

// demoTokenPrefix starts every token of the built-in demo file: they are
// public, in this repository.
const demoTokenPrefix = "ps_demo_"

// checkNoDemoTokens refuses the demo file's public tokens in any other
// configuration (a copy of the demo file, PARLEY_ADMIN_TOKEN), where they
// would open a real installation to anyone who read the repository.
func (f *File) checkNoDemoTokens() error {
	if f.Demo {
		return nil
	}
	var tokens []string
	for _, a := range append(slices.Clone(f.Admins), f.Supervisors...) {
		tokens = append(tokens, a.Token)
	}
	for _, a := range f.Agents {
		tokens = append(tokens, a.Token)
	}
	for _, t := range tokens {
		if strings.HasPrefix(t, demoTokenPrefix) {
			return fmt.Errorf("bootstrap: a token starts with %q: the demo tokens are public and work only in the built-in demo; "+
				"choose fresh ones (for example `openssl rand -hex 24`)", demoTokenPrefix)
		}
	}
	return nil
}

// ParseDemo parses the built-in demo file.
func ParseDemo() (*File, error) {
	f, err := Parse(Demo)
	if err != nil {
		return nil, err
	}
	f.Demo = true
	f.BotConfig = string(DemoBotConfig())
	f.Articles = DemoArticles()
	return f, nil
}

// Site is a website that embeds the messenger.
type Site struct {
	Name                    string   `yaml:"name"`
	AllowedOrigins          []string `yaml:"allowed_origins"`
	MaxGuestSessionsPerHour int32    `yaml:"max_guest_sessions_per_hour"`
	// Bot says whether the site's messenger chats start with the virtual
	// agent: "on", "off", or empty to follow settings.bot_channels.
	Bot string `yaml:"bot"`
}

// Settings are the installation-wide settings.
type Settings struct {
	MaxGuestSessionsPerHour              int32       `yaml:"max_guest_sessions_per_hour"`
	MaxGuestSessionsPerHourPerAddress    int32       `yaml:"max_guest_sessions_per_hour_per_address"`
	GuestSessionsRateLimitReachedMessage string      `yaml:"guest_sessions_rate_limit_reached_message"`
	IssueTypes                           []IssueType `yaml:"issue_types"`
	// AbandonAfter closes conversations without customer activity for
	// this long; 0 (the default) never does.
	AbandonAfter time.Duration `yaml:"abandon_after"`
	// BotChannels are the channels whose new chats start with the virtual
	// agent: web_portal, messenger, mobile.
	BotChannels []string `yaml:"bot_channels"`
	// PreChatFields are the pre-chat form's extra fields, after the issue
	// type (parley.v1.PreChatField).
	PreChatFields []PreChatField `yaml:"pre_chat_fields"`
	// WrapUpCodes are the outcomes agents pick from when closing a chat;
	// WrapUpRequired makes them pick one.
	WrapUpCodes    []WrapUpCode `yaml:"wrap_up_codes"`
	WrapUpRequired bool         `yaml:"wrap_up_required"`
}

// WrapUpCode is one outcome an agent records when closing a chat.
type WrapUpCode struct {
	Code  string `yaml:"code"`
	Label string `yaml:"label"`
}

// PreChatField is one extra field of the pre-chat form; its value reaches
// routing (as form.<name>) and the agent.
type PreChatField struct {
	Name     string `yaml:"name"`
	Label    string `yaml:"label"`
	Required bool   `yaml:"required"`
	// MaxLength is the longest value in characters; 0 means 500.
	MaxLength int32 `yaml:"max_length"`
	// Options, if any, make the field a choice among them.
	Options []string `yaml:"options"`
	Hint    string   `yaml:"hint"`
}

// IssueType is one choice of the pre-chat form.
type IssueType struct {
	Value       string `yaml:"value"`
	DisplayName string `yaml:"display_name"`
}

// Queue is a chat queue; rules and agents refer to it by name. The
// policy fields are those of parley.v1.QueuePolicy; enums are written in
// lower case without their prefix ("least_recently_assigned", "away").
type Queue struct {
	Name           string        `yaml:"name"`
	OfferTimeout   time.Duration `yaml:"offer_timeout"`
	Priority       int32         `yaml:"priority"`
	Strategy       string        `yaml:"strategy"`
	RequiredSkills []string      `yaml:"required_skills"`
	// TimeoutPresence is where an agent who lets an offer lapse goes.
	TimeoutPresence string        `yaml:"timeout_presence"`
	AutoAccept      bool          `yaml:"auto_accept"`
	MaxWait         time.Duration `yaml:"max_wait"`
	// Overflow names the queue chats move to after MaxWait.
	Overflow  string        `yaml:"overflow"`
	AgentLoss string        `yaml:"agent_loss"`
	WrapUp    time.Duration `yaml:"wrap_up"`
}

// enumValue reads a lower-case enum name such as "away" as the value of
// the enum whose names start with prefix ("PRESENCE_"); "" is 0.
func enumValue(values map[string]int32, prefix, name string) (int32, error) {
	if name == "" {
		return 0, nil
	}
	v, ok := values[prefix+strings.ToUpper(name)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("%q is not a known %s value", name, strings.ToLower(strings.TrimSuffix(prefix, "_")))
	}
	return v, nil
}

// policy returns the queue's policy as the API type, without its overflow
// queue (which is known by name here, by id in the store).
func (q Queue) policy() (*parleyv1.QueuePolicy, error) {
	strategy, err := enumValue(parleyv1.RoutingStrategy_value, "ROUTING_STRATEGY_", q.Strategy)
	if err != nil {
		return nil, err
	}
	presence, err := enumValue(parleyv1.Presence_value, "PRESENCE_", q.TimeoutPresence)
	if err != nil {
		return nil, err
	}
	loss, err := enumValue(parleyv1.AgentLossPolicy_value, "AGENT_LOSS_POLICY_", q.AgentLoss)
	if err != nil {
		return nil, err
	}
	return &parleyv1.QueuePolicy{
		Strategy: parleyv1.RoutingStrategy(strategy), Priority: q.Priority, RequiredSkills: q.RequiredSkills,
		TimeoutPresence: parleyv1.Presence(presence), AutoAccept: q.AutoAccept, MaxWait: durationpb.New(q.MaxWait),
		AgentLossPolicy: parleyv1.AgentLossPolicy(loss), WrapUp: durationpb.New(q.WrapUp),
	}, nil
}

// Rule is a matching rule: when every listed interaction field has one of
// its values, the interaction goes to Queue.
type Rule struct {
	Name  string              `yaml:"name"`
	Order int32               `yaml:"order"`
	Queue string              `yaml:"queue"`
	When  map[string][]string `yaml:"when"`
}

// Admin is an admin's or a supervisor's token, chosen by the operator.
type Admin struct {
	Token string `yaml:"token"`
	// Label says who holds the token.
	Label string `yaml:"label"`
}

// Agent is a live agent with its token and queues.
type Agent struct {
	Name     string   `yaml:"name"`
	Capacity int32    `yaml:"capacity"`
	Queues   []string `yaml:"queues"`
	Token    string   `yaml:"token"`
	Skills   []string `yaml:"skills"`
	// ChannelCapacity limits work per channel (web_portal, messenger,
	// mobile) within Capacity.
	ChannelCapacity map[string]int32 `yaml:"channel_capacity"`
}

// request returns the agent as the API's create request.
func (a Agent) request() *parleyv1.CreateAgentRequest {
	req := &parleyv1.CreateAgentRequest{DisplayName: a.Name, Capacity: a.Capacity, Skills: a.Skills}
	for _, name := range slices.Sorted(maps.Keys(a.ChannelCapacity)) {
		req.ChannelCapacities = append(req.ChannelCapacities, &parleyv1.ChannelCapacity{
			Channel: chatlog.ChannelToProto(interaction.Channel(name)), Capacity: a.ChannelCapacity[name],
		})
	}
	return req
}

// Parse decodes a bootstrap file strictly (unknown keys are errors) and
// checks it against the same rules the admin RPCs enforce.
func Parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("bootstrap: parse: %w", err)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return &f, nil
}

// settingsProto returns the settings as the API type.
func (f *File) settingsProto() *parleyv1.Settings {
	out := &parleyv1.Settings{
		MaxGuestSessionsPerHour:              f.Settings.MaxGuestSessionsPerHour,
		MaxGuestSessionsPerHourPerAddress:    f.Settings.MaxGuestSessionsPerHourPerAddress,
		GuestSessionsRateLimitReachedMessage: f.Settings.GuestSessionsRateLimitReachedMessage,
		AbandonAfter:                         durationpb.New(f.Settings.AbandonAfter),
	}
	for _, c := range f.Settings.BotChannels {
		out.BotChannels = append(out.BotChannels, chatlog.ChannelToProto(interaction.Channel(c)))
	}
	for _, it := range f.Settings.IssueTypes {
		out.IssueTypes = append(out.IssueTypes, &parleyv1.IssueType{Value: it.Value, DisplayName: it.DisplayName})
	}
	for _, c := range f.Settings.WrapUpCodes {
		out.WrapUpCodes = append(out.WrapUpCodes, &parleyv1.WrapUpCode{Code: c.Code, Label: c.Label})
	}
	out.WrapUpRequired = f.Settings.WrapUpRequired
	for _, pf := range f.Settings.PreChatFields {
		out.PreChatFields = append(out.PreChatFields, &parleyv1.PreChatField{
			Name: pf.Name, Label: pf.Label, Required: pf.Required, MaxLength: pf.MaxLength,
			Options: slices.Clone(pf.Options), Hint: pf.Hint,
		})
	}
	return out
}

// condition turns a rule's when map into an API condition: one field_in
// per field (in name order), joined by all when there are several.
func (r Rule) condition() *parleyv1.Condition {
	var conds []*parleyv1.Condition
	for _, field := range slices.Sorted(maps.Keys(r.When)) {
		conds = append(conds, &parleyv1.Condition{Kind: &parleyv1.Condition_FieldIn{
			FieldIn: &parleyv1.FieldIn{Field: field, Values: r.When[field]},
		}})
	}
	if len(conds) == 1 {
		return conds[0]
	}
	return &parleyv1.Condition{Kind: &parleyv1.Condition_All{All: &parleyv1.ConditionList{Conditions: conds}}}
}

// check validates the file with the API's protovalidate rules and the
// cross-references between its sections.
func (f *File) check() error {
	v, err := protovalidate.New()
	if err != nil {
		return fmt.Errorf("build validator: %w", err)
	}
	if err := v.Validate(f.settingsProto()); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	if err := session.CheckSettings(f.settingsProto()); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	for _, c := range f.Settings.BotChannels {
		if interaction.ChannelValidator(interaction.Channel(c)) != nil {
			return fmt.Errorf("settings: bot_channels: %q is not a channel (web_portal, messenger, mobile)", c)
		}
	}
	queues, err := f.checkQueues(v)
	if err != nil {
		return err
	}
	if err := f.checkRules(v, queues); err != nil {
		return err
	}
	tokens := tokenSet{}
	for i, a := range f.Admins {
		if err := tokens.add(fmt.Sprintf("admins[%d]", i), a.Token); err != nil {
			return err
		}
	}
	for i, a := range f.Supervisors {
		if err := tokens.add(fmt.Sprintf("supervisors[%d]", i), a.Token); err != nil {
			return err
		}
	}
	for i, s := range f.Sites {
		if _, err := enumValue(parleyv1.SiteBot_value, "SITE_BOT_", s.Bot); err != nil {
			return fmt.Errorf("sites[%d] %q: bot: %w", i, s.Name, err)
		}
		if err := v.Validate(s.proto()); err != nil {
			return fmt.Errorf("sites[%d] %q: %w", i, s.Name, err)
		}
		for j, o := range s.AllowedOrigins {
			if err := origin.Check(o); err != nil {
				return fmt.Errorf("sites[%d] %q: allowed_origins[%d]: %w", i, s.Name, j, err)
			}
		}
	}
	return f.checkAgents(v, queues, tokens)
}

// checkQueues checks the queues and returns their names.
func (f *File) checkQueues(v protovalidate.Validator) (map[string]bool, error) {
	queues := map[string]bool{}
	for i, q := range f.Queues {
		policy, err := q.policy()
		if err != nil {
			return nil, fmt.Errorf("queues[%d]: %w", i, err)
		}
		req := &parleyv1.CreateQueueRequest{DisplayName: q.Name, OfferTimeout: durationpb.New(q.OfferTimeout), Policy: policy}
		if err := v.Validate(req); err != nil {
			return nil, fmt.Errorf("queues[%d]: %w", i, err)
		}
		if _, err := admin.QueueOfferTimeout(q.OfferTimeout); err != nil {
			return nil, fmt.Errorf("queues[%d]: %w", i, err)
		}
		if queues[q.Name] {
			return nil, fmt.Errorf("queues[%d]: duplicate queue name %q", i, q.Name)
		}
		queues[q.Name] = true
	}
	for i, q := range f.Queues {
		if q.Overflow != "" && (!queues[q.Overflow] || q.Overflow == q.Name) {
			return nil, fmt.Errorf("queues[%d]: overflow %q must name another queue in queues", i, q.Overflow)
		}
	}
	return queues, nil
}

// checkRules checks the matching rules against the queues.
func (f *File) checkRules(v protovalidate.Validator, queues map[string]bool) error {
	orders := map[int32]bool{}
	for i, r := range f.Rules {
		if !queues[r.Queue] {
			return fmt.Errorf("rules[%d] %q: queue %q is not in queues", i, r.Name, r.Queue)
		}
		if len(r.When) == 0 {
			return fmt.Errorf("rules[%d] %q: when must name at least one field", i, r.Name)
		}
		req := &parleyv1.CreateMatchingRuleRequest{DisplayName: r.Name, Order: r.Order, QueueId: uuid.Nil.String(), Condition: r.condition()}
		if err := v.Validate(req); err != nil {
			return fmt.Errorf("rules[%d] %q: %w", i, r.Name, err)
		}
		if err := admin.CheckCondition(req.GetCondition()); err != nil {
			return fmt.Errorf("rules[%d] %q: %w", i, r.Name, err)
		}
		if orders[r.Order] {
			return fmt.Errorf("rules[%d] %q: another rule already has order %d", i, r.Name, r.Order)
		}
		orders[r.Order] = true
	}
	return nil
}

// checkAgents checks the agents against the queues and the tokens
// already used.
func (f *File) checkAgents(v protovalidate.Validator, queues map[string]bool, tokens tokenSet) error {
	for i, a := range f.Agents {
		where := fmt.Sprintf("agents[%d] %q", i, a.Name)
		for name := range a.ChannelCapacity {
			if !slices.Contains(routing.Channels, name) {
				return fmt.Errorf("%s: channel_capacity names %q, not one of %v", where, name, routing.Channels)
			}
		}
		if err := v.Validate(a.request()); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for _, q := range a.Queues {
			if !queues[q] {
				return fmt.Errorf("%s: queue %q is not in queues", where, q)
			}
		}
		if err := tokens.add(where, a.Token); err != nil {
			return err
		}
	}
	return nil
}

// tokenSet holds the file's tokens checked so far.
type tokenSet map[string]bool

// add checks token, found at where, and adds it: it must be long enough
// and not used before.
func (t tokenSet) add(where, token string) error {
	if len(token) < MinTokenLength {
		return fmt.Errorf("%s: token must be at least %d characters", where, MinTokenLength)
	}
	if t[token] {
		return fmt.Errorf("%s: token is used twice", where)
	}
	t[token] = true
	return nil
}

// proto returns the site as the API type (its bot setting checked
// before).
func (s Site) proto() *parleyv1.Site {
	bot, _ := enumValue(parleyv1.SiteBot_value, "SITE_BOT_", s.Bot)
	return &parleyv1.Site{DisplayName: s.Name, AllowedOrigins: s.AllowedOrigins, MaxGuestSessionsPerHour: s.MaxGuestSessionsPerHour, Bot: parleyv1.SiteBot(bot)}
}

// bot returns the site's bot setting as the store has it.
func (s Site) bot() site.Bot {
	if s.Bot == "" {
		return site.BotDefault
	}
	return site.Bot(s.Bot)
}

// AddAdmin adds an admin token from outside the file (parleyd reads one
// from PARLEY_ADMIN_TOKEN), checked like the file's own.
func (f *File) AddAdmin(token, label string) error {
	f.Admins = append(f.Admins, Admin{Token: token, Label: label})
	if err := f.check(); err != nil {
		f.Admins = f.Admins[:len(f.Admins)-1]
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// Result tells what Apply did.
type Result struct {
	// Applied is false when the store was already configured.
	Applied bool
	// Demo tells that the store was configured from the built-in demo
	// file, now or before.
	Demo bool
	// GeneratedAdminToken is set when the file named no admin: Apply made
	// one, which exists nowhere else. Show it to the operator once.
	GeneratedAdminToken string
}

// Apply writes f to db in one transaction if the store holds no settings
// yet. A store that is already configured is left alone: from then on,
// admin RPCs change the configuration. A new installation always gets an
// admin: if f names none, Apply generates a token.
//
// importArticles, when set, imports f.Articles (if any) inside the same
// transaction: the knowledge base lives in its own package, which the
// caller wires.
func Apply(ctx context.Context, db *store.DB, f *File, importArticles ArticleImporter) (Result, error) {
	var res Result
	if err := f.checkNoDemoTokens(); err != nil {
		return res, err
	}
	err := store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		existing, err := tx.Setting.Query().Only(ctx)
		if err == nil {
			res.Demo = existing.Demo
			return nil
		}
		if !ent.IsNotFound(err) {
			return fmt.Errorf("check settings: %w", err)
		}
		res.Demo = f.Demo
		token, err := f.write(ctx, tx)
		if err != nil {
			return err
		}
		if f.Articles != nil && importArticles != nil {
			if err := importArticles(ctx, tx, f.Articles); err != nil {
				return fmt.Errorf("import knowledge articles: %w", err)
			}
		}
		res.GeneratedAdminToken = token
		res.Applied = true
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("bootstrap: apply: %w", err)
	}
	return res, nil
}

// write stores f's configuration in a new store inside tx. It returns the
// admin token it generated when f names no admin.
func (f *File) write(ctx context.Context, tx *ent.Tx) (generatedAdminToken string, err error) {
	if err := f.writeSettings(ctx, tx); err != nil {
		return "", err
	}
	queueIDs, err := f.writeQueues(ctx, tx)
	if err != nil {
		return "", err
	}
	if err := f.writeRules(ctx, tx, queueIDs); err != nil {
		return "", err
	}
	if generatedAdminToken, err = f.writeStaff(ctx, tx); err != nil {
		return "", err
	}
	if err := f.writeSites(ctx, tx); err != nil {
		return "", err
	}
	return generatedAdminToken, f.writeAgents(ctx, tx, queueIDs)
}

// writeSettings creates the installation's settings.
func (f *File) writeSettings(ctx context.Context, tx *ent.Tx) error {
	s := f.settingsProto()
	err := tx.Setting.Create().
		SetID(schema.SettingsID).
		SetMaxGuestSessionsPerHour(int(s.GetMaxGuestSessionsPerHour())).
		SetGuestSessionsRateLimitReachedMessage(s.GetGuestSessionsRateLimitReachedMessage()).
		SetIssueTypes(session.IssueTypesFromProto(s.GetIssueTypes())).
		SetAbandonAfterSeconds(int64(s.GetAbandonAfter().AsDuration().Seconds())).
		SetMaxGuestSessionsPerHourPerAddress(int(s.GetMaxGuestSessionsPerHourPerAddress())).
		SetDemo(f.Demo).
		SetBotChannels(slices.Clone(f.Settings.BotChannels)).
		SetPreChatFields(session.PreChatFieldsFromProto(s.GetPreChatFields())).
		SetWrapUpCodes(session.WrapUpCodesFromProto(s.GetWrapUpCodes())).
		SetWrapUpRequired(s.GetWrapUpRequired()).
		SetBotConfig(f.BotConfig).
		SetBotConfigVersion(min(int64(len(f.BotConfig)), 1)).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("create settings: %w", err)
	}
	return nil
}

// writeQueues creates the queues, then sets their overflow queues, which
// refer to others. It returns the queues' ids by name.
func (f *File) writeQueues(ctx context.Context, tx *ent.Tx) (map[string]uuid.UUID, error) {
	queueIDs := map[string]uuid.UUID{}
	for _, q := range f.Queues {
		policy, err := q.policy()
		if err != nil {
			return nil, err
		}
		create := tx.Queue.Create()
		if err := admin.SetQueue(ctx, tx, create.Mutation(), uuid.Nil, q.Name, q.OfferTimeout, policy); err != nil {
			return nil, fmt.Errorf("queue %q: %w", q.Name, err)
		}
		row, err := create.Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("create queue %q: %w", q.Name, err)
		}
		queueIDs[q.Name] = row.ID
	}
	for _, q := range f.Queues {
		if q.Overflow != "" {
			if err := tx.Queue.UpdateOneID(queueIDs[q.Name]).SetOverflowQueueID(queueIDs[q.Overflow]).Exec(ctx); err != nil {
				return nil, fmt.Errorf("set overflow of queue %q: %w", q.Name, err)
			}
		}
	}
	return queueIDs, nil
}

// writeRules creates the matching rules.
func (f *File) writeRules(ctx context.Context, tx *ent.Tx, queueIDs map[string]uuid.UUID) error {
	for _, r := range f.Rules {
		cond, err := protojson.Marshal(r.condition())
		if err != nil {
			return fmt.Errorf("encode rule %q: %w", r.Name, err)
		}
		err = tx.MatchingRule.Create().
			SetDisplayName(r.Name).
			SetOrder(r.Order).
			SetQueueID(queueIDs[r.Queue]).
			SetCondition(string(cond)).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("create rule %q: %w", r.Name, err)
		}
	}
	return nil
}

// writeStaff stores the admins' and supervisors' tokens, generating an
// admin token (which it returns) when f names no admin.
func (f *File) writeStaff(ctx context.Context, tx *ent.Tx) (generatedAdminToken string, err error) {
	admins := f.Admins
	if len(admins) == 0 {
		generatedAdminToken = auth.NewStaffSecret()
		admins = []Admin{{Token: generatedAdminToken, Label: "generated at first start"}}
	}
	for _, a := range admins {
		if _, err := auth.StoreStaffToken(ctx, tx, a.Token, auth.StaffToken{Role: auth.RoleAdmin, Label: a.Label}); err != nil {
			return "", err
		}
	}
	for _, a := range f.Supervisors {
		if _, err := auth.StoreStaffToken(ctx, tx, a.Token, auth.StaffToken{Role: auth.RoleSupervisor, Label: a.Label}); err != nil {
			return "", err
		}
	}
	return generatedAdminToken, nil
}

// writeSites creates the messenger sites.
func (f *File) writeSites(ctx context.Context, tx *ent.Tx) error {
	for _, s := range f.Sites {
		err := tx.Site.Create().
			SetDisplayName(s.Name).
			SetAllowedOrigins(s.AllowedOrigins).
			SetMaxGuestSessionsPerHour(int(s.MaxGuestSessionsPerHour)).
			SetBot(s.bot()).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("create site %q: %w", s.Name, err)
		}
	}
	return nil
}

// writeAgents creates the agents, in their queues, with their tokens.
func (f *File) writeAgents(ctx context.Context, tx *ent.Tx, queueIDs map[string]uuid.UUID) error {
	for _, a := range f.Agents {
		capacity := int(a.Capacity)
		if capacity == 0 {
			capacity = admin.DefaultCapacity
		}
		channels := map[string]int{}
		for name, limit := range a.ChannelCapacity {
			channels[name] = int(limit)
		}
		create := tx.Agent.Create().SetDisplayName(a.Name).SetCapacity(capacity).
			SetSkills(append([]string{}, a.Skills...)).SetChannelCapacity(channels)
		for _, q := range a.Queues {
			create.AddQueueIDs(queueIDs[q])
		}
		row, err := create.Save(ctx)
		if err != nil {
			return fmt.Errorf("create agent %q: %w", a.Name, err)
		}
		label := "bootstrap agent " + a.Name
		if _, err := auth.StoreStaffToken(ctx, tx, a.Token, auth.StaffToken{Role: auth.RoleAgent, AgentID: row.ID, Label: label}); err != nil {
			return err
		}
	}
	return nil
}
