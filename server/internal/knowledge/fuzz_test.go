package knowledge

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// FuzzSearch gives the query builder any text, on the store the run
// selects: the search never fails (no FTS5 or tsquery syntax error), and
// every term it matches is a known stem or tag phrase, never the
// customer's characters.
func FuzzSearch(f *testing.F) {
	for _, seed := range []string{
		"I forgot my password", "can't", "??", "NOT", "order-status", `"refund"`, `"`, "'", "*", "refund*",
		"NEAR(", "NEAR(refund order, 2)", "AND OR", "the and of is", "title:refund", "{title}: refund", "-refund",
		"^refund", `\`, `'); DROP TABLE articles; --`, "refund & | ! ( ) :*", "'a':1A", "\x00", "\xff\xfe\xfd",
		"🙂", "ﬁx Ⅻ ｒｅｆｕｎｄ", "re\u0301fund", "refnud pasword", "where_is_my_order", "where is my order",
		strings.Repeat("refund ", 142), strings.Repeat("ü", 1000), strings.Repeat("(", 1000),
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	db := storetest.Open(f, filepath.Join(f.TempDir(), "fuzz.db"), store.Options{})
	base, err := Open(ctx, db)
	if err != nil {
		f.Fatal(err)
	}
	_, err = NewService(db, base, clock.Real{}).ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{
		{ExternalId: "a/refund", Title: "When will I get my refund?", Body: "Refunds take **3 to 10** days. See [returns](/returns).",
			Tags: []string{"money back", "where is my refund"}, Published: true},
		{ExternalId: "a/password", Title: "Reset a forgotten password", Body: "Choose *Forgot password* and follow the link.",
			Tags: []string{"can't log in", "NOT", `"quoted"`}, Published: true},
		{ExternalId: "a/near", Title: "NEAR AND OR NOT", Body: "Operators: NEAR( AND OR NOT * ^ : 'a':1A", Locale: "fr-CA", Published: true},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, locale := range []string{"", "fr"} {
			if _, err := base.Search(ctx, Query{Text: q, Locale: locale, Limit: 3}); err != nil {
				t.Fatalf("search %q: %v", q, err)
			}
		}
		v, err := base.vocabulary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := newPlan("en", q, v)
		if len(p.terms) > maxQueryTerms || len(p.weights) != len(p.terms) {
			t.Fatalf("%q: %d terms, %d weights", q, len(p.terms), len(p.weights))
		}
		for _, term := range p.terms {
			if _, known := v.df[term]; !known || strings.IndexFunc(term, func(r rune) bool {
				return !unicode.IsLetter(r) && !unicode.IsDigit(r) && string(r) != phraseSep
			}) >= 0 {
				t.Fatalf("%q: matches %q, not a known stem", q, term)
			}
		}
	})
}
