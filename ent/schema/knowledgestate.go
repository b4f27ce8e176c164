package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// KnowledgeStateID is the id of the single knowledge state row.
const KnowledgeStateID = 1

// KnowledgeState is the knowledge base's single state row (id
// KnowledgeStateID). Every transaction that writes an article increases its
// version, so each replica can tell with one primary-key read whether its
// cached search vocabulary (for typo correction) is stale.
type KnowledgeState struct {
	ent.Schema
}

// Fields of the KnowledgeState.
func (KnowledgeState) Fields() []ent.Field {
	return []ent.Field{
		field.Int("id").Immutable(),
		field.Int64("version").Default(0),
	}
}
