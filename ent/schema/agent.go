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
		// skills are matched against queues' required skills.
		field.JSON("skills", []string{}).Default([]string{}),
		// channel_capacity limits work per channel ("web_portal": 2) within
		// capacity; a channel not listed is limited by capacity alone.
		field.JSON("channel_capacity", map[string]int{}).Default(map[string]int{}),
		// channel_presence holds the channels whose presence differs from
		// presence.
		field.JSON("channel_presence", map[string]string{}).Default(map[string]string{}),
		// stream_lease_until is renewed while the agent's work stream is
		// open; once it passes, the agent is lost (offline). Nil when the
		// agent has no stream to lose.
		field.Time("stream_lease_until").Optional().Nillable(),
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
