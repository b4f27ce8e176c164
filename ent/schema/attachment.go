package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Attachment is a file uploaded to a conversation, which messages then
// reference. The content lives in the row: the embedded store keeps
// everything in one file.
type Attachment struct {
	ent.Schema
}

// Mixin of the Attachment.
func (Attachment) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Attachment.
func (Attachment) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("conversation_id", uuid.UUID{}).Immutable(),
		field.Enum("uploader_role").Values("guest", "customer", "agent").Immutable(),
		field.String("uploader_id").NotEmpty().Immutable(),
		field.String("uploader_name").Default("").Immutable(),
		field.String("filename").NotEmpty().Immutable(),
		field.String("content_type").NotEmpty().Immutable(),
		field.Int64("size").Positive().Immutable(),
		// sha256 is the lowercase hex SHA-256 of content.
		field.String("sha256").Immutable(),
		field.Bytes("content").Immutable(),
		// referenced turns true when a message references the attachment;
		// unreferenced uploads are deleted after the attachment retention.
		field.Bool("referenced").Default(false),
	}
}

// Edges of the Attachment.
func (Attachment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("attachments").Field("conversation_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Attachment.
func (Attachment) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("conversation_id"),
		// The retention sweep finds old unreferenced uploads.
		index.Fields("referenced", "created_at"),
	}
}
