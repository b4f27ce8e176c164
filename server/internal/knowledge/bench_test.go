package knowledge_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
	"go.yaml.in/yaml/v3"
)

// scaledCorpus is the demo corpus scaled to n articles: variants of each
// demo article for made-up products, with a sentence of filler words, the
// same every run.
func scaledCorpus(tb testing.TB, n int) []*parleyv1.Article {
	demo, err := knowledge.ParseMarkdown(bootstrap.DemoArticles())
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(15, 10000))
	adjectives := []string{"compact", "deluxe", "outdoor", "travel", "wireless", "classic", "smart", "mini", "pro", "eco"}
	nouns := []string{"kettle", "lamp", "backpack", "blender", "jacket", "router", "camera", "mattress", "drill", "speaker", "watch", "heater"}
	filler := strings.Fields(`please note that this also covers bundles accessories spare parts colours sizes editions
seasonal offers members marketplace sellers warehouse regional carriers loyalty points subscriptions
invoices receipts vouchers packaging recycling assembly instructions manuals batteries chargers cables`)
	out := make([]*parleyv1.Article, 0, n)
	for i := range n {
		a := demo[i%len(demo)]
		product := fmt.Sprintf("Example %s %s X%d", adjectives[rng.IntN(len(adjectives))], nouns[rng.IntN(len(nouns))], rng.IntN(900)+100)
		var extra []string
		for range 12 {
			extra = append(extra, filler[rng.IntN(len(filler))])
		}
		out = append(out, &parleyv1.Article{
			ExternalId: fmt.Sprintf("%s-v%05d", a.GetExternalId(), i),
			Title:      a.GetTitle() + " for the " + product,
			Body:       a.GetBody() + "\n\nThis applies to the " + product + ": " + strings.Join(extra, " ") + ".",
			Tags:       a.GetTags(),
			Audience:   a.GetAudience(),
			Locale:     a.GetLocale(),
			Published:  a.GetPublished(),
		})
	}
	return out
}

// scaledBase is a knowledge base holding scaledCorpus(n), on the store the
// run selects.
func scaledBase(b *testing.B, n int) *knowledge.Base {
	ctx := context.Background()
	db := storetest.Open(b, filepath.Join(b.TempDir(), "bench.db"), store.Options{})
	base, err := knowledge.Open(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	svc := knowledge.NewService(db, base, clock.Real{})
	corpus := scaledCorpus(b, n)
	for start := 0; start < len(corpus); start += 500 {
		if _, err := svc.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: corpus[start:min(start+500, len(corpus))]}); err != nil {
			b.Fatal(err)
		}
	}
	return base
}

// BenchmarkSearch10k measures one Base.Search (a labelled customer
// question, in turn) on the demo corpus scaled to 10,000 articles, on the
// store the run selects.
func BenchmarkSearch10k(b *testing.B) {
	ctx := context.Background()
	base := scaledBase(b, 10000)
	data, err := os.ReadFile("testdata/questions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var qs []question
	if err := yaml.Unmarshal(data, &qs); err != nil {
		b.Fatal(err)
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		results, err := base.Search(ctx, knowledge.Query{Text: qs[i%len(qs)].Q, PublicOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(results) == 0 && i < len(qs) && qs[i].Q != "can I get it by tomorrow" {
			b.Fatalf("%q found nothing", qs[i].Q)
		}
		i++
	}
}
