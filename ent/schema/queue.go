package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Queue holds conversations waiting for a live agent.
type Queue struct {
	ent.Schema
}

// Mixin of the Queue.
func (Queue) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Queue.
func (Queue) Fields() []ent.Field {
	return []ent.Field{
		field.String("display_name").NotEmpty().Unique(),
		// offer_timeout_ms is how long an agent has to accept an offer.
		field.Int64("offer_timeout_ms").Positive(),
	}
}

// Edges of the Queue.
func (Queue) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("rules", MatchingRule.Type),
		edge.To("conversations", Conversation.Type),
		edge.From("agents", Agent.Type).Ref("queues"),
	}
}
