package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Offer proposes a conversation to one agent until it is accepted,
// declined, expires or is withdrawn.
type Offer struct {
	ent.Schema
}

// Mixin of the Offer.
func (Offer) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Offer.
func (Offer) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("conversation_id", uuid.UUID{}).Immutable(),
		field.UUID("agent_id", uuid.UUID{}).Immutable(),
		field.Enum("state").Values("pending", "accepted", "declined", "expired", "withdrawn").Default("pending"),
		field.Time("expires_at"),
		field.Time("decided_at").Optional().Nillable(),
		// Set when an agent transfers the conversation to another agent.
		field.UUID("transfer_from_agent_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.String("transfer_note").Default("").Immutable(),
	}
}

// Edges of the Offer.
func (Offer) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("offers").Field("conversation_id").Unique().Required().Immutable(),
		edge.From("agent", Agent.Type).Ref("offers").Field("agent_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Offer.
func (Offer) Indexes() []ent.Index {
	return []ent.Index{
		// At most one pending offer per conversation.
		index.Fields("conversation_id").Unique().Annotations(entsql.IndexWhere("state = 'pending'")),
		index.Fields("agent_id", "state"),
		index.Fields("state", "expires_at"),
	}
}
