package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Token is a bearer credential. Only its SHA-256 hash is stored.
// Guest tokens are scoped to one conversation and expire; staff tokens
// (agent, supervisor, admin) may expire; any token can be revoked.
type Token struct {
	ent.Schema
}

// Mixin of the Token.
func (Token) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Token.
func (Token) Fields() []ent.Field {
	return []ent.Field{
		field.Bytes("hash").Unique().Immutable().Sensitive(),
		field.Enum("role").Values("guest", "agent", "supervisor", "admin").Immutable(),
		// label says who holds a staff token, for the audit list.
		field.String("label").Default("").Immutable(),
		field.UUID("agent_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.UUID("conversation_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		field.Time("expires_at").Optional().Nillable(),
		field.Time("revoked_at").Optional().Nillable(),
	}
}

// Edges of the Token.
func (Token) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("agent", Agent.Type).Ref("tokens").Field("agent_id").Unique().Immutable(),
		edge.From("conversation", Conversation.Type).Ref("tokens").Field("conversation_id").Unique().Immutable(),
	}
}

// Indexes of the Token.
func (Token) Indexes() []ent.Index {
	return []ent.Index{
		// The retention sweep deletes tokens long expired or revoked.
		index.Fields("expires_at"),
		index.Fields("revoked_at"),
		// Closing a chat revokes its guest tokens: without this index the
		// revocation reads every token (and, on PostgreSQL, conflicts
		// with every concurrent guest start).
		index.Fields("conversation_id"),
	}
}
