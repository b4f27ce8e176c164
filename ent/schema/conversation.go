package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Conversation is one chat and the head of its event log.
type Conversation struct {
	ent.Schema
}

// Mixin of the Conversation.
func (Conversation) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Conversation.
func (Conversation) Fields() []ent.Field {
	return []ent.Field{
		// state "bot" means the virtual agent answers (the controller is the
		// bot); "queued" waits for an agent; "assigned" is held by one.
		field.Enum("state").Values("queued", "assigned", "closed", "bot"),
		// last_seq is the seq of the newest event; the next event takes
		// last_seq+1 in the same transaction that inserts it.
		field.Int64("last_seq").Default(0),
		field.UUID("interaction_id", uuid.UUID{}).Immutable(),
		field.UUID("queue_id", uuid.UUID{}).Optional().Nillable(),
		field.UUID("agent_id", uuid.UUID{}).Optional().Nillable(),
		// queued_at orders waiting conversations first in, first out (within
		// a priority); a re-queued chat keeps its place by its creation time.
		field.Time("queued_at").Optional().Nillable(),
		// priority is the queue's priority, copied when the chat enters it.
		field.Int("priority").Default(0),
		// queue_entered_at is when the chat entered its current queue; the
		// queue's maximum wait counts from it.
		field.Time("queue_entered_at").Optional().Nillable(),
		// wait_exceeded_at is set once the customer was offered to leave a
		// message after the queue's maximum wait.
		field.Time("wait_exceeded_at").Optional().Nillable(),
		// wrap_up_until holds the closing agent's capacity until then.
		field.Time("wrap_up_until").Optional().Nillable(),
		field.Time("closed_at").Optional().Nillable(),
		// wrap_up is what the staff member who closed it recorded: internal,
		// never shown to the customer.
		field.JSON("wrap_up", &WrapUp{}).Optional(),
		// customer_active_at is when the customer last sent, acknowledged
		// or uploaded something; abandoned conversations are found by it.
		field.Time("customer_active_at").Optional().Nillable(),
		// consumer_id is the signed-in customer's record; nil for guests
		// until a signed-in customer claims the conversation with its guest
		// token.
		field.UUID("consumer_id", uuid.UUID{}).Optional().Nillable(),
	}
}

// Edges of the Conversation.
func (Conversation) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("interaction", Interaction.Type).Ref("conversation").Field("interaction_id").Unique().Required().Immutable(),
		edge.From("queue", Queue.Type).Ref("conversations").Field("queue_id").Unique(),
		edge.From("agent", Agent.Type).Ref("conversations").Field("agent_id").Unique(),
		edge.From("consumer", Consumer.Type).Ref("conversations").Field("consumer_id").Unique(),
		edge.To("events", Event.Type),
		edge.To("offers", Offer.Type),
		edge.To("tokens", Token.Type),
		edge.To("cases", ServiceCase.Type),
		edge.To("read_cursors", ReadCursor.Type),
		edge.To("attachments", Attachment.Type),
		edge.To("bot_session", BotSession.Type).Unique().Annotations(entsql.OnDelete(entsql.Cascade)),
	}
}

// Indexes of the Conversation.
func (Conversation) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("state", "queued_at"),
		index.Fields("state", "priority", "queued_at"),
		index.Fields("wrap_up_until"),
		index.Fields("agent_id", "state"),
		index.Fields("state", "customer_active_at"),
		index.Fields("consumer_id", "state"),
	}
}

// WrapUp is what the staff member who closed a conversation recorded
// (parley.v1.WrapUp).
type WrapUp struct {
	Code  string `json:"code,omitempty"`
	Label string `json:"label,omitempty"`
	Notes string `json:"notes,omitempty"`
	// ClosedBy is the participant id of who closed it.
	ClosedBy string    `json:"closed_by"`
	Time     time.Time `json:"time"`
}
