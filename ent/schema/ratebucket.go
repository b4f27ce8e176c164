package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// RateBucket is one caller's rate-limit bucket for one kind of write, kept
// in the store so that every replica spends from the same bucket (a
// limit is not multiplied by the replica count). It holds the bucket as
// the generic cell rate algorithm does: the theoretical arrival time
// (TAT) of the next write; a bucket whose TAT has passed is full, and is
// deleted by retention.
type RateBucket struct {
	ent.Schema
}

// Fields of the RateBucket.
func (RateBucket) Fields() []ent.Field {
	return []ent.Field{
		// id is the limit's name and the caller's key ("send/guest:...").
		field.String("id").NotEmpty().Immutable(),
		// tat is the theoretical arrival time, in Unix nanoseconds.
		field.Int64("tat"),
	}
}

// Indexes of the RateBucket.
func (RateBucket) Indexes() []ent.Index {
	return []ent.Index{index.Fields("tat")}
}
