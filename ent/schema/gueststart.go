package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// GuestStart records one StartGuestChat that was answered with a token: a
// new chat or a retry of one. The guest session limits count these rows
// over the last hour (so retries count too, on every replica alike); rows
// older than the limit window are deleted.
type GuestStart struct {
	ent.Schema
}

// Fields of the GuestStart.
func (GuestStart) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(time.Now).Immutable(),
		// client_address is the guest's address as the trusted proxies
		// report it ("" when unknown).
		field.String("client_address").Default("").Immutable(),
		// site_id is the messenger site the guest came from, if any.
		field.UUID("site_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		// retry is true for a retried StartGuestChat.
		field.Bool("retry").Default(false).Immutable(),
	}
}

// Indexes of the GuestStart.
func (GuestStart) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("created_at"),
		index.Fields("client_address", "created_at"),
		index.Fields("site_id", "created_at"),
	}
}
