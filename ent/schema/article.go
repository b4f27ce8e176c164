package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Article is a knowledge base article: what the virtual agent answers from
// and agents search.
type Article struct {
	ent.Schema
}

// Mixin of the Article.
func (Article) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Article.
func (Article) Fields() []ent.Field {
	return []ent.Field{
		// external_id is the article's key in the system it was imported
		// from; imports upsert by it.
		field.String("external_id").NotEmpty().Unique(),
		field.String("title").NotEmpty(),
		// body is Markdown.
		field.Text("body"),
		field.JSON("tags", []string{}).Default([]string{}),
		field.Enum("audience").Values("public", "internal").Default("public"),
		field.String("locale").Default("en"),
		field.Bool("published").Default(false),
		// content_hash fingerprints what an import sets, so re-importing the
		// same article is told apart from a change.
		field.String("content_hash"),
		field.Time("updated_at").Default(time.Now),
		// search_doc is the PostgreSQL full-text document (tsvector, GIN
		// indexed), written in the same transaction as the article. SQLite
		// keeps its index in an FTS5 table instead and leaves this NULL.
		field.String("search_doc").Optional().Nillable().
			SchemaType(map[string]string{dialect.Postgres: "tsvector", dialect.SQLite: "text"}),
	}
}

// Indexes of the Article.
func (Article) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("search_doc").Annotations(entsql.IndexTypes(map[string]string{dialect.Postgres: "GIN"})),
		index.Fields("published", "locale"),
	}
}
