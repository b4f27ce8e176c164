package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"
)

// SettingsID is the id of the single settings row.
const SettingsID = 1

// Setting is the single row of installation-wide settings (id SettingsID).
type Setting struct {
	ent.Schema
}

// IssueType is one choice of the pre-chat form's issue type field.
type IssueType struct {
	Value       string `json:"value"`
	DisplayName string `json:"display_name"`
}

// PreChatField is one extra field of the pre-chat form (parley.v1.PreChatField).
type PreChatField struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	Required bool   `json:"required,omitempty"`
	// MaxLength is the longest value in characters; 0 means 500.
	MaxLength int `json:"max_length,omitempty"`
	// Options, if any, make the field a choice among them.
	Options []string `json:"options,omitempty"`
	Hint    string   `json:"hint,omitempty"`
}

// WrapUpCode is one outcome an agent records when closing a chat
// (parley.v1.WrapUpCode).
type WrapUpCode struct {
	Code  string `json:"code"`
	Label string `json:"label"`
}

// Fields of the Setting.
func (Setting) Fields() []ent.Field {
	return []ent.Field{
		field.Int("id").Immutable(),
		field.Int("max_guest_sessions_per_hour").NonNegative(),
		field.String("guest_sessions_rate_limit_reached_message").NotEmpty(),
		field.JSON("issue_types", []IssueType{}),
		// next_case_number numbers cases (CS0001001, ...) without gaps or clashes.
		field.Int64("next_case_number").Default(1001),
		// abandon_after closes conversations without customer activity for
		// this long; 0 never does.
		field.Int64("abandon_after_seconds").NonNegative().Default(0),
		// max_guest_sessions_per_hour_per_address limits guest sessions from
		// one client address; 0 means no per-address limit.
		field.Int("max_guest_sessions_per_hour_per_address").NonNegative().Default(0),
		// default_queue_id takes chats no rule matches; nil refuses them.
		field.UUID("default_queue_id", uuid.UUID{}).Optional().Nillable(),
		// agent_grace_seconds is how long a dropped work stream may stay
		// away before its agent counts as offline.
		field.Int("agent_grace_seconds").NonNegative().Default(60),
		// demo is set when the installation was configured from the
		// built-in demo bootstrap: only then does parleyd trust the demo
		// portal's public JWT secret (and only without -identity).
		field.Bool("demo").Default(false).Immutable(),
		// bot_channels are the channels whose new chats start with the
		// virtual agent ("web_portal", "messenger", "mobile").
		field.JSON("bot_channels", []string{}).Default([]string{}).
			Annotations(entsql.DefaultExprs(map[string]string{dialect.Postgres: "'[]'::jsonb", dialect.SQLite: "'[]'"})),
		// bot_config is the virtual agent's configuration as the admin wrote
		// it (YAML); bot_config_version increases with every change.
		field.Text("bot_config").Default(""),
		field.Int64("bot_config_version").Default(0),
		// pre_chat_fields are the pre-chat form's extra fields, in order.
		field.JSON("pre_chat_fields", []PreChatField{}).Default([]PreChatField{}).
			Annotations(entsql.DefaultExprs(map[string]string{dialect.Postgres: "'[]'::jsonb", dialect.SQLite: "'[]'"})),
		// wrap_up_codes are the outcomes agents pick from when closing;
		// wrap_up_required makes an agent pick one.
		field.JSON("wrap_up_codes", []WrapUpCode{}).Default([]WrapUpCode{}).
			Annotations(entsql.DefaultExprs(map[string]string{dialect.Postgres: "'[]'::jsonb", dialect.SQLite: "'[]'"})),
		field.Bool("wrap_up_required").Default(false),
	}
}
