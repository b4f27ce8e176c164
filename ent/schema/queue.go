package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"
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
		// strategy picks among eligible agents.
		field.Enum("strategy").Values("most_available", "least_recently_assigned").Default("most_available"),
		// priority orders work across queues: higher first.
		field.Int("priority").NonNegative().Default(0),
		// required_skills must all be among an agent's skills.
		field.JSON("required_skills", []string{}).Default([]string{}),
		// timeout_presence is where an agent who lets an offer lapse goes.
		field.Enum("timeout_presence").Values("available", "away", "offline").Default("away"),
		// auto_accept assigns at once instead of offering.
		field.Bool("auto_accept").Default(false),
		// max_wait_ms moves a chat to overflow_queue_id, or offers its
		// customer to leave a message, after it waited this long; 0 never.
		field.Int64("max_wait_ms").NonNegative().Default(0),
		field.UUID("overflow_queue_id", uuid.UUID{}).Optional().Nillable(),
		// agent_loss_policy says what happens to a lost agent's chats.
		field.Enum("agent_loss_policy").Values("requeue", "keep").Default("requeue"),
		// wrap_up_ms holds an agent's capacity this long after a chat closes.
		field.Int64("wrap_up_ms").NonNegative().Default(0),
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
