// Package schema defines Parley's ent schemas: the tables behind
// conversations and their logs, routing configuration, tokens and cases.
package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
	"github.com/google/uuid"
)

// idMixin gives an entity a time-ordered UUIDv7 primary key and a creation
// time, so ids sort in creation order and pages by id are stable.
type idMixin struct {
	mixin.Schema
}

// Fields of the idMixin.
func (idMixin) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(newID).Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func newID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}
