package knowledge_test

import (
	"strings"
	"testing"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/knowledge"
)

// TestDemoCorpus checks what others rely on in the demo articles: the ids
// the virtual agent's demo topics name, every subject area, and the
// internal articles and the draft that the filters are tested with.
func TestDemoCorpus(t *testing.T) {
	articles, err := knowledge.ParseMarkdown(bootstrap.DemoArticles())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*parleyv1.Article{}
	public, internal, drafts := 0, 0, 0
	areas := map[string]int{}
	for _, a := range articles {
		byID[a.GetExternalId()] = a
		switch {
		case !a.GetPublished():
			drafts++
		case a.GetAudience() == parleyv1.ArticleAudience_ARTICLE_AUDIENCE_INTERNAL:
			internal++
		default:
			public++
			area, _, _ := strings.Cut(a.GetExternalId(), "/")
			areas[area]++
		}
	}
	for _, id := range []string{
		"account/reset-password", "orders/track-order", "billing/dispute-a-charge", "returns/start-a-return",
		"shipping/delivery-times", "billing/refund-timing", "account/change-email", "orders/cancel-order",
	} {
		if a := byID[id]; a == nil || !a.GetPublished() || a.GetAudience() != parleyv1.ArticleAudience_ARTICLE_AUDIENCE_PUBLIC {
			t.Errorf("%s: missing, a draft or internal", id)
		}
	}
	if public < 24 || internal < 1 || drafts < 1 {
		t.Errorf("%d public articles, %d internal, %d drafts; want at least 24, 1 and 1", public, internal, drafts)
	}
	for _, area := range []string{"account", "billing", "orders", "shipping", "returns", "setup"} {
		if areas[area] == 0 {
			t.Errorf("no public article in %s", area)
		}
	}
}
