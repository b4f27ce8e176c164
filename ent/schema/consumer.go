package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
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
		// issuer and subject identify a verified customer (the JWT's iss and
		// sub); a guest's typed details never fill them, so unverified data
		// never merges into a verified record.
		field.String("issuer").Optional().Nillable().Immutable(),
		field.String("subject").Optional().Nillable().Immutable(),
	}
}

// Edges of the Consumer.
func (Consumer) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("cases", ServiceCase.Type),
		edge.To("conversations", Conversation.Type),
	}
}

// Indexes of the Consumer.
func (Consumer) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("issuer", "subject").Unique(),
	}
}
