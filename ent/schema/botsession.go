package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// BotSession is the virtual agent's side of one conversation: where it is in
// a topic, what it captured, and the durable marker of a customer message
// it has yet to answer.
type BotSession struct {
	ent.Schema
}

// Mixin of the BotSession.
func (BotSession) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the BotSession.
func (BotSession) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("conversation_id", uuid.UUID{}).Unique().Immutable(),
		// state is the dialog state (topic, step, slots, retries, failures,
		// action results, articles shown) as JSON.
		field.Bytes("state").Optional(),
		// pending_seq is the seq of the newest customer message the bot has
		// to answer; answered_seq the newest it answered. A turn is pending
		// while pending_seq > answered_seq (turn_pending mirrors it, indexed).
		field.Int64("pending_seq").Default(0),
		field.Int64("answered_seq").Default(0),
		field.Bool("turn_pending").Default(false),
		// lease_until is how long the replica that claimed the pending turn
		// keeps it; after that any replica may take it again.
		field.Time("lease_until").Optional().Nillable(),
		field.String("lease_owner").Default(""),
		// summary is the hand-off summary (parley.v1.ConversationSummary,
		// protobuf binary), written at hand-off and transfer.
		field.Bytes("summary").Optional().Nillable(),
		field.Time("updated_at").Default(time.Now),
	}
}

// Edges of the BotSession.
func (BotSession) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("bot_session").Field("conversation_id").
			Unique().Required().Immutable(),
	}
}

// Indexes of the BotSession.
func (BotSession) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("turn_pending", "lease_until"),
	}
}
