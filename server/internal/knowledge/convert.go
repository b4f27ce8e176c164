package knowledge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/article"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// defaultLocale is an article's locale when its import names none.
const defaultLocale = "en"

// content is what an import sets on an article, normalized: two imports
// with the same content leave the article as it is.
type content struct {
	Title     string           `json:"title"`
	Body      string           `json:"body"`
	Tags      []string         `json:"tags"`
	Audience  article.Audience `json:"audience"`
	Locale    string           `json:"locale"`
	Published bool             `json:"published"`
}

// contentOf is a's content: locale "en" when empty, audience public when
// unspecified.
func contentOf(a *parleyv1.Article) content {
	c := content{
		Title:     a.GetTitle(),
		Body:      a.GetBody(),
		Tags:      a.GetTags(),
		Audience:  article.AudiencePublic,
		Locale:    a.GetLocale(),
		Published: a.GetPublished(),
	}
	if c.Tags == nil {
		c.Tags = []string{}
	}
	if a.GetAudience() == parleyv1.ArticleAudience_ARTICLE_AUDIENCE_INTERNAL {
		c.Audience = article.AudienceInternal
	}
	if c.Locale == "" {
		c.Locale = defaultLocale
	}
	return c
}

// hash fingerprints c.
func (c content) hash() string {
	b, _ := json.Marshal(c) // strings, bools and a string slice: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func articleToProto(a *ent.Article) *parleyv1.Article {
	audience := parleyv1.ArticleAudience_ARTICLE_AUDIENCE_PUBLIC
	if a.Audience == article.AudienceInternal {
		audience = parleyv1.ArticleAudience_ARTICLE_AUDIENCE_INTERNAL
	}
	return &parleyv1.Article{
		Id:         a.ID.String(),
		ExternalId: a.ExternalID,
		Title:      a.Title,
		Body:       a.Body,
		Tags:       a.Tags,
		Audience:   audience,
		Locale:     a.Locale,
		Published:  a.Published,
		CreateTime: timestamppb.New(a.CreatedAt),
		UpdateTime: timestamppb.New(a.UpdatedAt),
	}
}
