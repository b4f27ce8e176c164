package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// ReadCursor is how far one participant has received and read a
// conversation's log. Both seqs only move forward.
type ReadCursor struct {
	ent.Schema
}

// Fields of the ReadCursor.
func (ReadCursor) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("conversation_id", uuid.UUID{}).Immutable(),
		field.Enum("participant_role").Values("guest", "customer", "agent").Immutable(),
		// participant_id is the guest's interaction id or the agent id.
		field.String("participant_id").NotEmpty().Immutable(),
		field.String("participant_name").Default(""),
		field.Int64("delivered_seq").NonNegative().Default(0),
		field.Int64("read_seq").NonNegative().Default(0),
		field.Time("updated_at").Default(time.Now),
	}
}

// Edges of the ReadCursor.
func (ReadCursor) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("read_cursors").Field("conversation_id").Unique().Required().Immutable(),
	}
}

// Indexes of the ReadCursor.
func (ReadCursor) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("conversation_id", "participant_id").Unique(),
	}
}
