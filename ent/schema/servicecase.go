package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// ServiceCase is a unit of service work linked to the conversation it came from.
type ServiceCase struct {
	ent.Schema
}

// Mixin of the ServiceCase.
func (ServiceCase) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the ServiceCase.
func (ServiceCase) Fields() []ent.Field {
	return []ent.Field{
		field.String("number").Unique().Immutable(),
		field.String("short_description"),
		field.Enum("state").Values("new", "in_progress", "on_hold", "resolved", "closed").Default("new"),
		// assigned_agent_id is the agent working on the case, if any.
		field.UUID("assigned_agent_id", uuid.UUID{}).Optional().Nillable(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now).
			Annotations(entsql.DefaultExprs(map[string]string{dialect.Postgres: "now()", dialect.SQLite: "CURRENT_TIMESTAMP"})),
		field.UUID("conversation_id", uuid.UUID{}).Immutable(),
		field.UUID("consumer_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		// opened_by_agent_id is nil for a message a waiting customer left.
		field.UUID("opened_by_agent_id", uuid.UUID{}).Optional().Nillable().Immutable(),
		// request_id and request_hash held the idempotency key of cases
		// made before case creation stored its keys with idempotency.Do;
		// new cases leave them unset. They stay in the schema because
		// databases made before keep the columns (migrations never drop
		// one), which must accept the new rows.
		field.String("request_id").Optional().Nillable().Unique().Immutable(),
		field.Bytes("request_hash").Optional().Immutable(),
	}
}

// Edges of the ServiceCase.
func (ServiceCase) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("cases").Field("conversation_id").Unique().Required().Immutable(),
		edge.From("consumer", Consumer.Type).Ref("cases").Field("consumer_id").Unique().Immutable(),
	}
}

// Indexes of the ServiceCase.
func (ServiceCase) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("consumer_id"),
		index.Fields("conversation_id"),
		index.Fields("assigned_agent_id", "state"),
	}
}

// Annotations of the ServiceCase.
func (ServiceCase) Annotations() []schema.Annotation {
	return []schema.Annotation{entsql.Table("cases")}
}
