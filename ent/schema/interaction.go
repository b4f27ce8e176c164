package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Interaction is the customer interaction record created from the pre-chat
// form; routing matches on it and agents read it.
type Interaction struct {
	ent.Schema
}

// Mixin of the Interaction.
func (Interaction) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Interaction.
func (Interaction) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Immutable(),
		field.String("email").Immutable(),
		field.String("issue_type").Immutable(),
		field.Enum("channel").Values("web_portal", "messenger", "mobile").Immutable(),
		field.Text("first_message").Default("").Immutable(),
		// origin tells a guest's pre-chat form from a signed-in customer's
		// request; only guests count against the guest session limit.
		field.Enum("origin").Values("guest", "customer").Default("guest").Immutable(),
		// request_id is, for a signed-in customer, StartCustomerChat's key
		// scoped to the customer (idempotency.Scoped; Do keeps the key and
		// response), and, for guests, the SHA-256 of StartGuestChat's request_id (hex,
		// "sha256:" prefixed): the request id is the secret a retry proves,
		// so it is never stored.
		field.String("request_id").Unique().Immutable(),
		// request_hash fingerprints the form, so a reused key with another
		// form is told apart from a retry.
		field.Bytes("request_hash").Immutable(),
		// client_address is the guest's address as the trusted proxies
		// report it; the per-address guest session limit counts by it.
		field.String("client_address").Default("").Immutable(),
		// site_id is the messenger site the guest came from, if any.
		field.UUID("site_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		// language, tier, intent and form_fields are matched by rules.
		field.String("language").Default("").Immutable(),
		field.String("tier").Default("").Immutable(),
		field.String("intent").Default(""),
		field.JSON("form_fields", map[string]string{}).Default(map[string]string{}).Immutable(),
		// slots are what the virtual agent captured, by slot name.
		field.JSON("slots", map[string]string{}).Default(map[string]string{}).
			Annotations(entsql.DefaultExprs(map[string]string{dialect.Postgres: "'{}'::jsonb", dialect.SQLite: "'{}'"})),
		// guest_token_sealed is the guest's token encrypted under a key
		// derived from the request id, so that a retry of StartGuestChat
		// (which proves it knows the request id) gets the same token back.
		// It is erased once the retry window has passed.
		field.Bytes("guest_token_sealed").Optional().Nillable().Sensitive(),
	}
}

// Edges of the Interaction.
func (Interaction) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("conversation", Conversation.Type).Unique(),
		edge.From("site", Site.Type).Ref("interactions").Field("site_id").Unique().Immutable(),
	}
}

// Indexes of the Interaction.
func (Interaction) Indexes() []ent.Index {
	return []ent.Index{
		// The retention sweep erases sealed tokens past the retry window.
		index.Fields("created_at"),
	}
}
