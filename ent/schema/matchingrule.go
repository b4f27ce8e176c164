package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"
)

// MatchingRule routes interactions that satisfy its condition to a queue.
// Rules are evaluated by ascending order; the first match wins.
type MatchingRule struct {
	ent.Schema
}

// Mixin of the MatchingRule.
func (MatchingRule) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the MatchingRule.
func (MatchingRule) Fields() []ent.Field {
	return []ent.Field{
		field.String("display_name").NotEmpty(),
		field.Int32("order").Unique(),
		field.UUID("queue_id", uuid.UUID{}),
		// condition is the rule's parley.v1.Condition in protojson.
		field.Text("condition"),
	}
}

// Edges of the MatchingRule.
func (MatchingRule) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("queue", Queue.Type).Ref("rules").Field("queue_id").Unique().Required(),
	}
}
