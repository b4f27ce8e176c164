package knowledge_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/ent"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
	"github.com/parleyhq/parley/server/internal/terms"
	"go.yaml.in/yaml/v3"
)

// The quality the search must reach on testdata/questions.yaml.
const (
	minRecallAt3 = 0.90
	minMRRAt10   = 0.80
)

type question struct {
	Q    string `yaml:"q"`
	Want string `yaml:"want"`
}

// demoBase opens a store with the demo corpus imported, and its base.
func demoBase(t testing.TB) (*store.DB, *knowledge.Base, []*parleyv1.Article) {
	t.Helper()
	db := storetest.Open(t, filepath.Join(t.TempDir(), "kb.db"), store.Options{})
	base, err := knowledge.Open(context.Background(), db)
	if err != nil {
		t.Fatalf("open knowledge base: %v", err)
	}
	articles, err := knowledge.ParseMarkdown(bootstrap.DemoArticles())
	if err != nil {
		t.Fatalf("parse demo articles: %v", err)
	}
	svc := knowledge.NewService(db, base, clock.Real{})
	if _, err := svc.ImportArticles(context.Background(), &parleyv1.ImportArticlesRequest{Articles: articles}); err != nil {
		t.Fatalf("import demo articles: %v", err)
	}
	return db, base, articles
}

// ranker returns the external ids of the 10 best answers to a question.
type ranker func(t *testing.T, q string) []string

// measure returns recall@3 and MRR@10 of rank on qs, logging each miss.
func measure(t *testing.T, name string, qs []question, rank ranker) (recall3, mrr10 float64) {
	for _, q := range qs {
		got := rank(t, q.Q)
		pos := 0
		for i, id := range got[:min(10, len(got))] {
			if id == q.Want {
				pos = i + 1
				break
			}
		}
		if pos >= 1 && pos <= 3 {
			recall3++
		}
		if pos > 0 {
			mrr10 += 1 / float64(pos)
		}
		if pos != 1 && testing.Verbose() {
			t.Logf("%s: %q: want %s at %d; got %v", name, q.Q, q.Want, pos, got[:min(3, len(got))])
		}
	}
	n := float64(len(qs))
	return recall3 / n, mrr10 / n
}

// TestSearchQuality measures the search on the labelled questions against
// the thresholds and against a plain BM25 baseline on the same store.
func TestSearchQuality(t *testing.T) {
	data, err := os.ReadFile("testdata/questions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var qs []question
	if err := yaml.Unmarshal(data, &qs); err != nil {
		t.Fatalf("questions.yaml: %v", err)
	}
	if len(qs) < 60 {
		t.Fatalf("questions.yaml has %d questions; the measure needs at least 60", len(qs))
	}
	db, base, articles := demoBase(t)
	known := map[string]bool{}
	for _, a := range articles {
		known[a.GetExternalId()] = true
	}
	for _, q := range qs {
		if !known[q.Want] {
			t.Fatalf("question %q wants %q, which is not a demo article", q.Q, q.Want)
		}
	}
	store := "SQLite"
	if db.Dialect() == "postgres" {
		store = "PostgreSQL"
	}

	recall3, mrr10 := measure(t, "search", qs, func(t *testing.T, q string) []string {
		results, err := base.Search(context.Background(), knowledge.Query{Text: q, Limit: 10, PublicOnly: true})
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		ids := make([]string, len(results))
		for i, r := range results {
			ids[i] = r.GetExternalId()
		}
		return ids
	})
	baseRecall3, baseMRR10 := measure(t, "baseline", qs, baseline(t, db))
	t.Logf("%s, %d questions: search recall@3 %.3f, MRR@10 %.3f; plain BM25 baseline recall@3 %.3f, MRR@10 %.3f",
		store, len(qs), recall3, mrr10, baseRecall3, baseMRR10)
	if recall3 < minRecallAt3 || mrr10 < minMRRAt10 {
		t.Errorf("recall@3 %.3f, MRR@10 %.3f; want at least %.2f and %.2f", recall3, mrr10, minRecallAt3, minMRRAt10)
	}
	if baseRecall3 >= recall3 || baseMRR10 >= mrr10 {
		t.Errorf("the plain BM25 baseline (recall@3 %.3f, MRR@10 %.3f) is not worse than the search (%.3f, %.3f)",
			baseRecall3, baseMRR10, recall3, mrr10)
	}
}

// baseline is a plain BM25 search of the published public articles, as a
// default full-text set-up does it: on SQLite, an FTS5 table of the raw
// text (default tokenizer) matched by the question's words OR'ed, ranked by
// bm25 with equal column weights; on PostgreSQL, the english text search
// configuration (stemming and stop words included) with the question's
// words OR'ed, ranked by ts_rank.
func baseline(t *testing.T, db *store.DB) ranker {
	ctx := context.Background()
	if db.Dialect() == "postgres" {
		return func(t *testing.T, q string) []string {
			return queryIDs(t, db, `SELECT external_id FROM articles,
  (SELECT replace(plainto_tsquery('english', $1)::text, ' & ', ' | ')::tsquery AS q) AS query
WHERE published AND audience = 'public'
  AND to_tsvector('english', title || ' ' || body || ' ' || tags::text) @@ q
ORDER BY ts_rank(to_tsvector('english', title || ' ' || body || ' ' || tags::text), q) DESC, external_id LIMIT 10`, q)
		}
	}
	err := store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE VIRTUAL TABLE baseline_fts USING fts5(external_id UNINDEXED, title, body, tags)`)
		return err
	})
	if err != nil {
		t.Fatalf("baseline index: %v", err)
	}
	err = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO baseline_fts (external_id, title, body, tags)
SELECT external_id, title, body, tags FROM articles WHERE published AND audience = 'public'`)
		return err
	})
	if err != nil {
		t.Fatalf("baseline index: %v", err)
	}
	return func(t *testing.T, q string) []string {
		words := terms.Words(q)
		if len(words) == 0 {
			return nil
		}
		for i, w := range words {
			words[i] = `"` + strings.ReplaceAll(w, `"`, `""`) + `"`
		}
		return queryIDs(t, db, `SELECT external_id FROM baseline_fts WHERE baseline_fts MATCH ? ORDER BY bm25(baseline_fts) LIMIT 10`,
			strings.Join(words, " OR "))
	}
}

func queryIDs(t *testing.T, db *store.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("baseline query: %v", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}
