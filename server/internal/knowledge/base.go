// Package knowledge is Parley's knowledge base: articles, their full-text
// index and the search that the virtual agent, agents and the agent-context
// call share, and KnowledgeService, which serves it.
//
// Search behaves alike on both stores because the text analysis is done in
// Go (package terms: words, stop words, Snowball stems) for articles and
// questions; each store only indexes and ranks the stems: SQLite in an FTS5
// table (bm25 with column weights), PostgreSQL in the articles' tsvector
// column (GIN; ts_rank with A/B/C weights per term, times the term's
// inverse document frequency). A question never reaches a query syntax:
// only stems that the index already holds are matched, each quoted. A
// question's word the index does not hold is taken as a typo of the
// nearest indexed term within a small edit distance. The indexed terms
// are cached per replica, keyed by a version that every article write
// increases in the same transaction, so a search on any replica sees an
// import made on another at once.
package knowledge

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect/v2"
	"entgo.io/ent/dialect"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/article"
	"github.com/parleyhq/parley/ent/schema"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/terms"
)

// Search limits.
const (
	// DefaultLimit is how many results a search returns when not told.
	DefaultLimit = 5
	// MaxLimit is the most results a search returns.
	MaxLimit = 50
	// MaxQueryRunes bounds the question: a longer one is searched by its
	// beginning (SearchKnowledge refuses more).
	MaxQueryRunes = 1000
)

// Base is the knowledge base's search over one store. It is safe for
// concurrent use.
type Base struct {
	db  *store.DB
	idx index

	reload sync.Mutex // one vocabulary reload at a time
	vocab  atomic.Pointer[vocabulary]
}

// Open returns the knowledge base of db. On SQLite it creates the FTS5
// index table unless it exists (PostgreSQL's index comes with the
// migrations).
func Open(ctx context.Context, db *store.DB) (*Base, error) {
	b := &Base{db: db, idx: postgresIndex{}}
	if db.Dialect() != dialect.Postgres {
		b.idx = sqliteIndex{}
	}
	if err := b.idx.prepare(ctx, db); err != nil {
		return nil, err
	}
	b.vocab.Store(newVocabulary(-1, 0, nil))
	return b, nil
}

// Query is a question to the knowledge base.
type Query struct {
	// Text is the question as a customer writes it; no character in it has
	// any meaning to the search. Only its first MaxQueryRunes runes count.
	Text string
	// Locale, when set (BCP 47), keeps only articles in it or in one of its
	// regional variants ("fr" also finds "fr-CA").
	Locale string
	// Limit is how many results at most: 0 means DefaultLimit, and more
	// than MaxLimit means MaxLimit.
	Limit int
	// PublicOnly leaves internal articles out, as the virtual agent must.
	PublicOnly bool
}

var localePattern = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,3}$`)

// Search returns the published articles that best answer q, best first,
// with snippets; none when nothing matches (a question of stop words
// only, say). It reads outside any write transaction; call it with no
// write transaction open. A malformed locale is an InvalidArgument error.
func (b *Base) Search(ctx context.Context, q Query) ([]*parleyv1.KnowledgeResult, error) {
	if q.Locale != "" && !localePattern.MatchString(q.Locale) {
		return nil, apierr.New(connect.CodeInvalidArgument, "INVALID_LOCALE",
			fmt.Sprintf("locale %q is not a BCP 47 tag such as \"en\" or \"fr-CA\"", q.Locale))
	}
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	v, err := b.vocabulary(ctx)
	if err != nil {
		return nil, err
	}
	text := q.Text
	if len(text) > MaxQueryRunes { // bytes: a cheap first check
		if r := []rune(text); len(r) > MaxQueryRunes {
			text = string(r[:MaxQueryRunes])
		}
	}
	p := newPlan(terms.Lang(q.Locale), text, v)
	if len(p.terms) == 0 {
		return nil, nil
	}
	hits, err := b.idx.search(ctx, b.db, p, filter{locale: strings.ToLower(q.Locale), publicOnly: q.PublicOnly}, limit)
	if err != nil || len(hits) == 0 {
		return nil, err
	}
	ids := make([]uuid.UUID, len(hits))
	for i, h := range hits {
		ids[i] = h.id
	}
	found, err := b.db.Article.Query().Where(article.IDIn(ids...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("knowledge: load the articles found: %w", err)
	}
	byID := make(map[uuid.UUID]*ent.Article, len(found))
	for _, a := range found {
		byID[a.ID] = a
	}
	out := make([]*parleyv1.KnowledgeResult, 0, len(hits))
	for _, h := range hits {
		a := byID[h.id]
		if a == nil {
			continue // deleted since the search read it
		}
		out = append(out, &parleyv1.KnowledgeResult{
			ArticleId:  a.ID.String(),
			ExternalId: a.ExternalID,
			Title:      a.Title,
			Snippet:    snippet(a.Locale, a.Body, p.highlight),
			Score:      h.score,
			Tags:       a.Tags,
		})
	}
	return out, nil
}

// vocabulary returns the indexed terms as of the store's current
// knowledge version, reloading them if another write (on any replica)
// changed it. The version is read before the terms, so a cached
// vocabulary is never older than the version it is kept under.
func (b *Base) vocabulary(ctx context.Context) (*vocabulary, error) {
	version, err := b.version(ctx)
	if err != nil {
		return nil, err
	}
	if v := b.vocab.Load(); v.version == version {
		return v, nil
	}
	b.reload.Lock()
	defer b.reload.Unlock()
	if v := b.vocab.Load(); v.version >= version {
		return v, nil
	}
	df, err := b.idx.terms(ctx, b.db)
	if err != nil {
		return nil, err
	}
	docs, err := b.db.Article.Query().Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("knowledge: count articles: %w", err)
	}
	v := newVocabulary(version, docs, df)
	b.vocab.Store(v)
	return v, nil
}

// version is the store's knowledge version (0 before the first write).
func (b *Base) version(ctx context.Context) (int64, error) {
	s, err := b.db.KnowledgeState.Get(ctx, schema.KnowledgeStateID)
	switch {
	case ent.IsNotFound(err):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("knowledge: read the knowledge version: %w", err)
	}
	return s.Version, nil
}

// bumpVersion increases the knowledge version inside tx, so every
// replica's next search reloads its vocabulary.
func bumpVersion(ctx context.Context, tx *ent.Tx) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO knowledge_states (id, version) VALUES (1, 1)
ON CONFLICT (id) DO UPDATE SET version = knowledge_states.version + 1`)
	if err != nil {
		return fmt.Errorf("knowledge: increase the knowledge version: %w", err)
	}
	return nil
}

// index (re)indexes a inside tx.
func (b *Base) index(ctx context.Context, tx *ent.Tx, a *ent.Article) error {
	return b.idx.put(ctx, tx, a, analyzeArticle(a.Locale, a.Title, a.Body, a.Tags))
}
