package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Event is one entry of a conversation's append-only log.
type Event struct {
	ent.Schema
}

// Fields of the Event.
func (Event) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id").Immutable(),
		field.UUID("conversation_id", uuid.UUID{}).Immutable(),
		field.Int64("seq").Positive().Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
		// kind names the payload: message_posted, participant_joined, ...
		field.String("kind").Immutable(),
		field.Enum("sender_role").Values("guest", "customer", "agent", "system", "bot").Immutable(),
		field.String("sender_id").Default("").Immutable(),
		field.String("sender_name").Default("").Immutable(),
		field.Enum("channel").Values("web_portal", "messenger", "mobile").Optional().Nillable().Immutable(),
		// client_message_id is the sender's idempotency key for messages.
		field.String("client_message_id").Optional().Nillable().Immutable(),
		// payload is the event's parley.v1 payload message in protobuf binary.
		field.Bytes("payload").Immutable(),
	}
}

// Edges of the Event.
func (Event) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("events").Field("conversation_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Event.
func (Event) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("conversation_id", "seq").Unique(),
		index.Fields("conversation_id", "sender_id", "client_message_id").Unique(),
	}
}
