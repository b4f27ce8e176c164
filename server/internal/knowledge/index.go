package knowledge

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/store"
)

// index is the full-text index of one kind of database. Both index the
// same pre-analyzed stems (package terms), so they match alike; each ranks
// with its database's own function, weighting title, tags and body.
type index interface {
	// prepare creates what the index needs beyond the migrated schema.
	prepare(ctx context.Context, db *store.DB) error
	// put (re)indexes article a, whose text is doc, inside tx.
	put(ctx context.Context, tx *ent.Tx, a *ent.Article, doc document) error
	// remove drops article id from the index inside tx.
	remove(ctx context.Context, tx *ent.Tx, id uuid.UUID) error
	// terms returns every indexed term with the number of articles that
	// hold it.
	terms(ctx context.Context, db *store.DB) (map[string]int, error)
	// search returns the published articles that f admits and that hold
	// any of p's terms, best first, at most limit.
	search(ctx context.Context, db *store.DB, p plan, f filter, limit int) ([]hit, error)
}

// hit is one matching article and its score (higher is better).
type hit struct {
	id    uuid.UUID
	score float64
}

// filter says which published articles a search may return.
type filter struct {
	// locale, when set (lower case), admits articles in it or in one of
	// its regional variants ("fr" admits "fr-ca").
	locale     string
	publicOnly bool
}

// sqliteIndex keeps an FTS5 table beside the articles, holding what a
// search filters on too (first, so that reading it never reads the long
// columns' overflow pages), so a search reads nothing else. Its rowid is a
// 64-bit hash of the article id, so an article's row is found without a
// scan; a collision (about one chance in 40 million for a million
// articles) fails the write that makes it rather than mixing two articles
// up, as every statement also names the article id.
type sqliteIndex struct{}

// ftsWeights are bm25's column weights: article_id, published, audience
// and locale (not indexed), title, body, tags.
const ftsWeights = "0, 0, 0, 0, 10.0, 1.0, 6.0"

func (sqliteIndex) prepare(ctx context.Context, db *store.DB) error {
	// One transaction each: the writer prepares statements apart from
	// the transaction, so the second must find the first committed.
	for _, stmt := range []string{
		// The stems are words already: the tokenizer only splits them
		// apart, keeping phraseSep inside tag phrases.
		`CREATE VIRTUAL TABLE IF NOT EXISTS article_fts USING fts5(article_id UNINDEXED, published UNINDEXED, audience UNINDEXED, locale UNINDEXED, title, body, tags, tokenize = "unicode61 remove_diacritics 0 tokenchars '` + phraseSep + `'")`,
		`CREATE VIRTUAL TABLE IF NOT EXISTS article_fts_vocab USING fts5vocab(article_fts, 'row')`,
	} {
		err := store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
			_, err := tx.ExecContext(ctx, stmt)
			return err
		})
		if err != nil {
			return fmt.Errorf("knowledge: create the FTS5 index: %w", err)
		}
	}
	return nil
}

// ftsRowID is article id's rowid in article_fts.
func ftsRowID(id uuid.UUID) int64 {
	h := fnv.New64a()
	h.Write(id[:])
	return int64(h.Sum64())
}

func (sqliteIndex) put(ctx context.Context, tx *ent.Tx, a *ent.Article, doc document) error {
	if err := (sqliteIndex{}).remove(ctx, tx, a.ID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO article_fts (rowid, article_id, published, audience, locale, title, body, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		ftsRowID(a.ID), a.ID.String(), a.Published, string(a.Audience), strings.ToLower(a.Locale),
		strings.Join(doc.title, " "), strings.Join(doc.body, " "), strings.Join(doc.tags, " "))
	if err != nil {
		return fmt.Errorf("knowledge: index article %s: %w", a.ID, err)
	}
	return nil
}

func (sqliteIndex) remove(ctx context.Context, tx *ent.Tx, id uuid.UUID) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM article_fts WHERE rowid = ? AND article_id = ?`, ftsRowID(id), id.String()); err != nil {
		return fmt.Errorf("knowledge: unindex article %s: %w", id, err)
	}
	return nil
}

func (sqliteIndex) terms(ctx context.Context, db *store.DB) (map[string]int, error) {
	return scanTerms(db.QueryContext(ctx, `SELECT term, doc FROM article_fts_vocab`))
}

// search ranks every match by bm25 reading only the index (not the rows'
// stored columns), then reads the filter columns of the best ones only,
// taking more when the filters leave fewer than limit.
func (sqliteIndex) search(ctx context.Context, db *store.DB, p plan, f filter, limit int) ([]hit, error) {
	match := ftsMatch(p.terms)
	for candidates := 4*limit + 20; ; candidates *= 8 {
		ranked, err := ftsRanked(ctx, db, match, candidates)
		if err != nil {
			return nil, err
		}
		hits, err := ftsFiltered(ctx, db, ranked, f, limit)
		if err != nil || len(hits) == limit || len(ranked) < candidates {
			return hits, err
		}
	}
}

// ftsRanked returns the rowids and scores of the n best matches, best first.
func ftsRanked(ctx context.Context, db *store.DB, match string, n int) ([]ftsRank, error) {
	rows, err := db.QueryContext(ctx, `SELECT rowid, bm25(article_fts, `+ftsWeights+`) AS score
FROM article_fts WHERE article_fts MATCH ? ORDER BY score, rowid LIMIT ?`, match, n)
	if err != nil {
		return nil, fmt.Errorf("knowledge: search: %w", err)
	}
	defer rows.Close()
	var out []ftsRank
	for rows.Next() {
		var r ftsRank
		if err := rows.Scan(&r.rowid, &r.score); err != nil {
			return nil, fmt.Errorf("knowledge: read search results: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("knowledge: read search results: %w", err)
	}
	return out, nil
}

// ftsRank is a match's rowid and bm25 score (lower is better).
type ftsRank struct {
	rowid int64
	score float64
}

// ftsFiltered returns the first limit of ranked that f admits, as hits,
// reading the filter columns in chunks, best first.
func ftsFiltered(ctx context.Context, db *store.DB, ranked []ftsRank, f filter, limit int) ([]hit, error) {
	const chunk = 256
	var hits []hit
	for start := 0; start < len(ranked) && len(hits) < limit; start += chunk {
		part := ranked[start:min(start+chunk, len(ranked))]
		admitted, err := ftsAdmitted(ctx, db, part, f)
		if err != nil {
			return nil, err
		}
		for _, r := range part {
			if id, ok := admitted[r.rowid]; ok && len(hits) < limit {
				hits = append(hits, hit{id: id, score: -r.score})
			}
		}
	}
	return hits, nil
}

// ftsAdmitted returns the article ids of the rows of ranked that f admits,
// by rowid.
func ftsAdmitted(ctx context.Context, db *store.DB, ranked []ftsRank, f filter) (map[int64]uuid.UUID, error) {
	args := make([]any, len(ranked))
	for i, r := range ranked {
		args[i] = r.rowid
	}
	rows, err := db.QueryContext(ctx, `SELECT rowid, article_id, published, audience, locale FROM article_fts WHERE rowid IN (?`+
		strings.Repeat(", ?", len(ranked)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("knowledge: search: %w", err)
	}
	defer rows.Close()
	admitted := make(map[int64]uuid.UUID, len(ranked))
	for rows.Next() {
		var rowid int64
		var id, audience, locale string
		var published bool
		if err := rows.Scan(&rowid, &id, &published, &audience, &locale); err != nil {
			return nil, fmt.Errorf("knowledge: read search results: %w", err)
		}
		if !published || f.publicOnly && audience != "public" ||
			f.locale != "" && locale != f.locale && !strings.HasPrefix(locale, f.locale+"-") {
			continue
		}
		uid, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("knowledge: read search results: article id %q: %w", id, err)
		}
		admitted[rowid] = uid
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("knowledge: read search results: %w", err)
	}
	return admitted, nil
}

// postgresIndex keeps each article's tsvector in its search_doc column
// (GIN indexed): the stems as lexemes with their positions, weighted A for
// the title, B for the tags and C for the body. It ranks with ts_rank per
// term, weighted by the term's inverse document frequency (ts_rank alone
// has none, so a common word would count as much as a rare one).
type postgresIndex struct{}

// tsWeights are ts_rank's weights for D (unused), C (body), B (tags) and A
// (title).
const tsWeights = "{0.0, 0.2, 0.7, 1.0}"

func (postgresIndex) prepare(context.Context, *store.DB) error { return nil }

func (postgresIndex) put(ctx context.Context, tx *ent.Tx, a *ent.Article, doc document) error {
	if _, err := tx.ExecContext(ctx, `UPDATE articles SET search_doc = $1::tsvector WHERE id = $2`, tsVector(doc), a.ID); err != nil {
		return fmt.Errorf("knowledge: index article %s: %w", a.ID, err)
	}
	return nil
}

// remove has nothing to do: the document goes with its row.
func (postgresIndex) remove(context.Context, *ent.Tx, uuid.UUID) error { return nil }

func (postgresIndex) terms(ctx context.Context, db *store.DB) (map[string]int, error) {
	return scanTerms(db.QueryContext(ctx, `SELECT word, ndoc FROM ts_stat('SELECT search_doc FROM articles WHERE search_doc IS NOT NULL')`))
}

func (postgresIndex) search(ctx context.Context, db *store.DB, p plan, f filter, limit int) ([]hit, error) {
	// One ts_rank per term, times its weight, summed in one expression;
	// the matches' documents are detoasted once each (the concatenation
	// makes a plain copy; OFFSET 0 keeps the subquery from being folded
	// into the outer one) rather than once per term.
	args := []any{tsQuery(p.terms), limit}
	score := make([]string, len(p.terms))
	for i, t := range p.terms {
		args = append(args, p.weights[i], tsLexeme(t))
		score[i] = fmt.Sprintf("$%d * ts_rank('%s', m.doc, $%d::tsquery, 1)", len(args)-1, tsWeights, len(args))
	}
	var q strings.Builder
	q.WriteString(`SELECT m.id, ` + strings.Join(score, " + ") + ` AS score
FROM (SELECT a.id, a.search_doc || ''::tsvector AS doc FROM articles a
  WHERE a.search_doc @@ $1::tsquery AND a.published`)
	if f.publicOnly {
		q.WriteString(` AND a.audience = 'public'`)
	}
	if f.locale != "" {
		args = append(args, f.locale, f.locale+"-")
		fmt.Fprintf(&q, ` AND (lower(a.locale) = $%d OR starts_with(lower(a.locale), $%d))`, len(args)-1, len(args))
	}
	q.WriteString(` OFFSET 0) AS m ORDER BY score DESC, m.id LIMIT $2`)
	rows, err := db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("knowledge: search: %w", err)
	}
	return scanHits(rows)
}

// maxPositions bounds the positions of one lexeme (PostgreSQL keeps 256)
// and maxPosition is the largest position it stores.
const (
	maxPositions = 255
	maxPosition  = 16383
)

// tsVector is doc as a PostgreSQL tsvector literal.
func tsVector(doc document) string {
	type entry struct {
		lexeme    string
		positions []string
	}
	var order []*entry
	byLexeme := map[string]*entry{}
	pos := 0
	add := func(stems []string, weight string) {
		for _, s := range stems {
			pos = min(pos+1, maxPosition)
			e := byLexeme[s]
			if e == nil {
				e = &entry{lexeme: s}
				byLexeme[s] = e
				order = append(order, e)
			}
			if len(e.positions) < maxPositions {
				e.positions = append(e.positions, fmt.Sprintf("%d%s", pos, weight))
			}
		}
	}
	add(doc.title, "A")
	add(doc.tags, "B")
	add(doc.body, "C")
	var b strings.Builder
	for i, e := range order {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(tsLexeme(e.lexeme))
		b.WriteByte(':')
		b.WriteString(strings.Join(e.positions, ","))
	}
	return b.String()
}

func scanTerms(rows *sql.Rows, err error) (map[string]int, error) {
	if err != nil {
		return nil, fmt.Errorf("knowledge: read the vocabulary: %w", err)
	}
	defer rows.Close()
	df := map[string]int{}
	for rows.Next() {
		var term string
		var n int
		if err := rows.Scan(&term, &n); err != nil {
			return nil, fmt.Errorf("knowledge: read the vocabulary: %w", err)
		}
		df[term] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("knowledge: read the vocabulary: %w", err)
	}
	return df, nil
}

// scanHits reads (id, score) rows.
func scanHits(rows *sql.Rows) ([]hit, error) {
	defer rows.Close()
	var hits []hit
	for rows.Next() {
		var id string
		var score float64
		if err := rows.Scan(&id, &score); err != nil {
			return nil, fmt.Errorf("knowledge: read search results: %w", err)
		}
		uid, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("knowledge: read search results: article id %q: %w", id, err)
		}
		hits = append(hits, hit{id: uid, score: score})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("knowledge: read search results: %w", err)
	}
	return hits, nil
}
