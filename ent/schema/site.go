package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Site is a website that embeds the messenger: the browser origins allowed
// to call Parley (CORS) and its own guest session limit.
type Site struct {
	ent.Schema
}

// Mixin of the Site.
func (Site) Mixin() []ent.Mixin { return []ent.Mixin{idMixin{}} }

// Fields of the Site.
func (Site) Fields() []ent.Field {
	return []ent.Field{
		field.String("display_name").NotEmpty(),
		// allowed_origins are exact origins such as https://shop.example.com.
		field.JSON("allowed_origins", []string{}),
		// max_guest_sessions_per_hour is this site's guest session limit;
		// 0 means only the installation's limits apply.
		field.Int("max_guest_sessions_per_hour").NonNegative().Default(0),
		// bot says whether the site's messenger chats start with the virtual
		// agent: "default" follows the settings' bot channels.
		field.Enum("bot").Values("default", "on", "off").Default("default"),
	}
}

// Edges of the Site.
func (Site) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("interactions", Interaction.Type),
	}
}
