package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Agent is a live agent who takes conversations.
type Agent struct {
	ent.Schema
}

// Mixin of the Agent.
func (Agent) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Agent.
func (Agent) Fields() []ent.Field {
	return []ent.Field{
		field.String("display_name").NotEmpty(),
		field.Enum("presence").Values("available", "away", "offline").Default("offline"),
		field.Int("capacity").NonNegative(),
		// load counts the agent's open conversations and pending offers. It
		// only changes through conditional updates that keep it within
		// capacity; the table's check constraint is the backstop.
		field.Int("load").Default(0),
		// last_assigned_at breaks ties between agents with equal free capacity.
		field.Time("last_assigned_at").Optional().Nillable(),
	}
}

// Edges of the Agent.
func (Agent) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("queues", Queue.Type),
		edge.To("tokens", Token.Type),
		edge.To("offers", Offer.Type),
		edge.To("conversations", Conversation.Type),
	}
}

// Annotations of the Agent.
func (Agent) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entsql.Checks(map[string]string{
			"agent_load_within_capacity": "load >= 0 AND load <= capacity",
		}),
	}
}
