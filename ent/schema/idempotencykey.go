package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// IdempotencyKey remembers a retryable write: who made it, with which key,
// a fingerprint of the request and the response it got. It is written in
// the same transaction as the write's effects, so a retry either finds it
// (and gets the same response) or finds no effects either.
type IdempotencyKey struct {
	ent.Schema
}

// Fields of the IdempotencyKey.
func (IdempotencyKey) Fields() []ent.Field {
	return []ent.Field{
		// caller identifies who used the key (such as "agent:<id>"), so one
		// caller's keys never collide with another's.
		field.String("caller").NotEmpty().Immutable(),
		// procedure is the RPC, such as /parley.v1.MessagingService/MarkRead.
		field.String("procedure").NotEmpty().Immutable(),
		field.String("key").NotEmpty().Immutable(),
		// request_hash is the SHA-256 of the deterministic encoding of the request.
		field.Bytes("request_hash").Immutable(),
		// response is the protobuf encoding of the first call's response.
		field.Bytes("response").Immutable(),
		// created_at is set from the server's clock; keys older than the
		// idempotency retention are deleted.
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

// Indexes of the IdempotencyKey.
func (IdempotencyKey) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("caller", "procedure", "key").Unique(),
		index.Fields("created_at"),
	}
}
