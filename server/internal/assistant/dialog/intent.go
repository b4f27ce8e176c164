package dialog

import (
	"math"
	"slices"

	"github.com/parleyhq/parley/server/internal/terms"
)

// index scores a message against every topic: TF-IDF cosine over stemmed
// terms. Each topic's triggers together form its document (a term's IDF
// falls with the number of topics using it, so "order", shared by many
// topics, weighs less than "track"). A topic scores the best of its
// document's cosine and its closest trigger's cosine: the document rewards
// messages that mix a topic's words, the trigger a message close to one
// phrasing. Everything but the message's own vector is computed once, in
// Parse, as postings: term -> (vector, weight), so a turn touches only the
// vectors that share a term with the message.
type index struct {
	lang     string
	idf      map[string]float64
	vocab    []string // sorted, for typo matching
	topics   []*topic
	owner    []int // vector -> topic; vectors 0..len(topics)-1 are the documents
	postings map[string][]posting
	unknown  float64 // weight of a term no trigger has
}

type posting struct {
	vec    int
	weight float64 // in the unit-length vector
}

// vector is a sparse term -> weight map.
type vector map[string]float64

func (v vector) unit() vector {
	var n float64
	for _, w := range v {
		n += w * w
	}
	n = math.Sqrt(n)
	if n > 0 {
		for t := range v {
			v[t] /= n
		}
	}
	return v
}

func newIndex(lang string, topics []*topic) *index {
	x := &index{lang: terms.Lang(lang), idf: map[string]float64{}, topics: topics, postings: map[string][]posting{}}
	df := map[string]int{}
	termsOf := make([][][]string, len(topics))
	for i, t := range topics {
		seen := map[string]bool{}
		for _, trig := range t.info.Triggers {
			ts := x.analyze(trig)
			termsOf[i] = append(termsOf[i], ts)
			for _, term := range ts {
				if !seen[term] {
					seen[term] = true
					df[term]++
				}
			}
		}
	}
	n := float64(len(topics))
	for term, d := range df {
		x.idf[term] = math.Log(1 + n/float64(d))
		x.vocab = append(x.vocab, term)
	}
	slices.Sort(x.vocab)
	// A word no trigger uses hints that the message is about something
	// else, half as strongly as a word of only one topic points at it:
	// customers wrap their request in words of their own ("it's been two
	// weeks and my order hasn't shown up"). Half scored best on the golden
	// file (testdata/golden.tsv) among 1, 3/4, 1/2, 1/3 and 1/4.
	x.unknown = math.Log(1+n) / 2
	add := func(owner int, v vector) {
		vec := len(x.owner)
		x.owner = append(x.owner, owner)
		for term, w := range v.unit() {
			x.postings[term] = append(x.postings[term], posting{vec, w})
		}
	}
	docs := make([]vector, len(topics))
	for i := range topics {
		docs[i] = vector{}
		for _, ts := range termsOf[i] {
			for _, term := range ts {
				docs[i][term] += x.idf[term]
			}
		}
		add(i, docs[i])
	}
	for i := range topics {
		for _, ts := range termsOf[i] {
			p := vector{}
			for _, term := range ts {
				p[term] += x.idf[term]
			}
			add(i, p)
		}
	}
	return x
}

// analyze is terms.Analyze without numbers: an order number says nothing
// about the topic.
func (x *index) analyze(text string) []string {
	ts := terms.Analyze(x.lang, text)
	out := ts[:0]
	for _, t := range ts {
		if !isNumber(t) {
			out = append(out, t)
		}
	}
	return out
}

func isNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// scored is a topic and its score in [0, 1].
type scored struct {
	topic *topic
	score float64
}

// match returns the best topic for text (nil when no term is known) and
// whether text had any term at all.
func (x *index) match(text string) (best scored, meaningful bool) {
	ts := x.analyze(text)
	if len(ts) == 0 {
		return scored{}, false
	}
	q := vector{}
	for _, t := range ts {
		t = x.correct(t)
		if w, ok := x.idf[t]; ok {
			q[t] += w
		} else {
			q[t] += x.unknown
		}
	}
	q.unit()
	dots := make([]float64, len(x.owner))
	for t, w := range q {
		for _, p := range x.postings[t] {
			dots[p.vec] += w * p.weight
		}
	}
	for vec, s := range dots {
		if s > best.score {
			best = scored{topic: x.topics[x.owner[vec]], score: s}
		}
	}
	return best, true
}

// correct maps a term no trigger has to a known term one typo away
// ("pasword" -> "password"); terms under four letters stay as they are.
func (x *index) correct(t string) string {
	if _, ok := x.idf[t]; ok || len(t) < 4 {
		return t
	}
	for _, v := range x.vocab {
		if len(v) >= 4 && withinOne(t, v) {
			return v
		}
	}
	return t
}
