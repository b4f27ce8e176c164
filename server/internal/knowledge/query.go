package knowledge

import (
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/parleyhq/parley/server/internal/terms"
)

// maxQueryTerms bounds how many terms one search matches: a rambling
// question keeps its most telling (rarest) ones.
const maxQueryTerms = 24

// plan is a question reduced to what the indexes match: stems only, never
// the customer's text, so no operator or quote in it reaches a query
// syntax.
type plan struct {
	// terms are the distinct stems to match, each a known term of the
	// vocabulary (a typo corrected to its nearest known term).
	terms []string
	// weights are the terms' weights (inverse document frequency).
	weights []float64
	// highlight holds the stems a snippet marks: terms, and the question's
	// own stems before correction.
	highlight map[string]bool
}

// newPlan analyzes text in lang and keeps the stems the vocabulary knows,
// correcting the others to the nearest known term when one is close enough
// (see vocabulary.correct).
func newPlan(lang, text string, v *vocabulary) plan {
	p := plan{highlight: map[string]bool{}}
	seen := map[string]bool{}
	use := func(term string) {
		if !seen[term] {
			seen[term] = true
			p.terms = append(p.terms, term)
		}
	}
	words := terms.Words(text)
	all, kept := phraseStems(lang, words)
	corrected := kept[:0:0]
	for _, stem := range kept {
		if utf8.RuneCountInString(stem) > maxTermRunes {
			continue
		}
		p.highlight[stem] = true
		if _, known := v.df[stem]; !known {
			fixed, ok := v.correct(stem)
			if !ok {
				continue
			}
			p.highlight[fixed] = true
			stem = fixed
		}
		corrected = append(corrected, stem)
		use(stem)
	}
	// Phrases the question holds that are tags, with and without its stop
	// words (see tagPhrases).
	for _, seq := range [][]string{corrected, all} {
		for n := 2; n <= maxPhraseWords; n++ {
			for i := 0; i+n <= len(seq); i++ {
				if phrase := strings.Join(seq[i:i+n], phraseSep); v.df[phrase] > 0 {
					use(phrase)
				}
			}
		}
	}
	// A term in more than half of the articles tells them apart no more
	// than a stop word: bm25 gives it (next to) no weight, yet matching it
	// would score nearly every article. It is matched only when the
	// question has nothing rarer.
	if common := slices.DeleteFunc(slices.Clone(p.terms), func(t string) bool { return 2*v.df[t] > v.docs }); len(common) > 0 {
		p.terms = common
	}
	if len(p.terms) > maxQueryTerms {
		// Keep the rarest, in the question's order.
		byRarity := slices.Clone(p.terms)
		slices.SortStableFunc(byRarity, func(a, b string) int { return v.df[a] - v.df[b] })
		keep := map[string]bool{}
		for _, t := range byRarity[:maxQueryTerms] {
			keep[t] = true
		}
		p.terms = slices.DeleteFunc(p.terms, func(t string) bool { return !keep[t] })
	}
	for _, t := range p.terms {
		p.weights = append(p.weights, v.idf(t))
	}
	return p
}

// ftsMatch is the plan as an FTS5 MATCH expression: each term a quoted
// string (quotes doubled), OR'ed. It is "" for a plan without terms.
func ftsMatch(terms []string) string {
	quoted := make([]string, len(terms))
	for i, t := range terms {
		quoted[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
	}
	return strings.Join(quoted, " OR ")
}

// tsLexeme is t as a quoted lexeme of a PostgreSQL tsvector or tsquery
// literal (quotes doubled, backslashes escaped).
func tsLexeme(t string) string {
	return "'" + strings.NewReplacer(`'`, `''`, `\`, `\\`).Replace(t) + "'"
}

// tsQuery is the plan as a PostgreSQL tsquery literal: the terms OR'ed.
// It is "" for a plan without terms.
func tsQuery(terms []string) string {
	quoted := make([]string, len(terms))
	for i, t := range terms {
		quoted[i] = tsLexeme(t)
	}
	return strings.Join(quoted, " | ")
}

// vocabulary is every term of the index with the number of articles that
// hold it, as of a knowledge version.
type vocabulary struct {
	version int64
	docs    int
	df      map[string]int
	// byLen lists the terms by length in runes, for typo correction.
	byLen map[int][][]rune
}

func newVocabulary(version int64, docs int, df map[string]int) *vocabulary {
	v := &vocabulary{version: version, docs: docs, df: df, byLen: map[int][][]rune{}}
	for t := range df {
		if strings.Contains(t, phraseSep) {
			continue // a tag's phrase: never the word a typo meant
		}
		r := []rune(t)
		v.byLen[len(r)] = append(v.byLen[len(r)], r)
	}
	for _, ts := range v.byLen {
		// One answer among equals, whatever the map's order.
		slices.SortFunc(ts, func(a, b []rune) int { return strings.Compare(string(a), string(b)) })
	}
	return v
}

// idf is term's inverse document frequency (BM25's, never negative).
func (v *vocabulary) idf(term string) float64 {
	n, df := float64(v.docs), float64(v.df[term])
	return math.Log(1 + (n-df+0.5)/(df+0.5))
}

// maxEdits is how many edits (insertions, deletions, substitutions or
// swaps of two neighbours) a typo of a stem of n runes may have: none
// below 4 runes (too many short words are a letter apart), one up to 5,
// two from 6.
func maxEdits(n int) int {
	switch {
	case n < 5:
		return 0
	case n < 8:
		return 1
	}
	return 2
}

// correct returns the known term nearest to stem (a typo of it), if one is
// within maxEdits; among equals, the one more articles hold.
func (v *vocabulary) correct(stem string) (string, bool) {
	s := []rune(stem)
	limit := maxEdits(len(s))
	best, bestDist, bestDF := "", limit+1, 0
	for n := len(s) - limit; n <= len(s)+limit; n++ {
		for _, r := range v.byLen[n] {
			d := editDistance(s, r, limit)
			if d > limit || d > bestDist {
				continue
			}
			if t := string(r); d < bestDist || v.df[t] > bestDF {
				best, bestDist, bestDF = t, d, v.df[t]
			}
		}
	}
	return best, best != ""
}

// editDistance is the optimal string alignment distance between a and b
// (insertions, deletions, substitutions and swaps of adjacent runes), or
// limit+1 when it is more than limit.
func editDistance(a, b []rune, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, prev2[j-2]+1)
			}
			cur[j] = d
			rowMin = min(rowMin, d)
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return min(prev[len(b)], limit+1)
}
