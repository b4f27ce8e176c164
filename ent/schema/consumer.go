package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Consumer is a person the service team serves.
type Consumer struct {
	ent.Schema
}

// Mixin of the Consumer.
func (Consumer) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Consumer.
func (Consumer) Fields() []ent.Field {
	return []ent.Field{
		field.String("display_name").NotEmpty(),
		field.String("email"),
		// verified is false for records made from a guest's typed form.
		field.Bool("verified").Default(false),
	}
}

// Edges of the Consumer.
func (Consumer) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("cases", ServiceCase.Type),
	}
}
