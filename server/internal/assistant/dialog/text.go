package dialog

import (
	"strings"

	"github.com/parleyhq/parley/server/internal/terms"
)

// normWords is text's words (terms.Words) with accents folded, so "à" and
// "a", "sí" and "si" are the same word.
func normWords(text string) []string {
	words := terms.Words(text)
	for i, w := range words {
		words[i] = fold(w)
	}
	return words
}

var folds = map[rune]string{
	'à': "a", 'á': "a", 'â': "a", 'ä': "a", 'ã': "a", 'å': "a",
	'ç': "c", 'ñ': "n",
	'è': "e", 'é': "e", 'ê': "e", 'ë': "e",
	'ì': "i", 'í': "i", 'î': "i", 'ï': "i",
	'ò': "o", 'ó': "o", 'ô': "o", 'ö': "o", 'õ': "o",
	'ù': "u", 'ú': "u", 'û': "u", 'ü': "u",
	'ý': "y", 'ÿ': "y", 'œ': "oe", 'æ': "ae",
}

// fold removes the accents of a lower-case word.
func fold(w string) string {
	ascii := true
	for i := 0; i < len(w); i++ {
		if w[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return w
	}
	var b strings.Builder
	for _, r := range w {
		if f, ok := folds[r]; ok {
			b.WriteString(f)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// filler words are left out of hand-off phrases, so "talk to a person"
// also matches "talk with the person". They are function words only: the
// stop lists of package terms also drop "want", "need" and "help", which
// would turn "want a person" into "person".
var filler = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an the to with me i my some for of please just
		un une le la les de du des avec moi je me
		al una el los las con del yo mi por favor`) {
		filler[w] = true
	}
}

// phrase is a sequence of normalized words to find in a message.
type phrase struct {
	words []string
	loose bool // hand-off phrases: gaps, plurals and typos allowed
}

func newPhrase(text string, loose bool) phrase {
	words := normWords(text)
	if loose {
		kept := words[:0]
		for _, w := range words {
			if !filler[w] {
				kept = append(kept, w)
			}
		}
		if len(kept) > 0 {
			words = kept
		}
	}
	return phrase{words: words, loose: loose}
}

// maxGap is how many other words may stand between two words of a loose
// phrase: "talk to a real person" matches "talk person".
const maxGap = 3

// in reports whether the phrase occurs in words: loose phrases anywhere,
// in order, with gaps; the others as the message's first words.
func (p phrase) in(words []string) bool {
	if !p.loose {
		if len(words) < len(p.words) {
			return false
		}
		for i, w := range p.words {
			if words[i] != w {
				return false
			}
		}
		return true
	}
	for i := range words {
		if p.from(words, i, 0) {
			return true
		}
	}
	return false
}

// from reports whether p.words[k:] matches words starting at i.
func (p phrase) from(words []string, i, k int) bool {
	if !sameWord(words[i], p.words[k]) {
		return false
	}
	if k == len(p.words)-1 {
		return true
	}
	for j := i + 1; j < len(words) && j <= i+1+maxGap; j++ {
		if p.from(words, j, k+1) {
			return true
		}
	}
	return false
}

// sameWord matches a customer's word to a phrase word: equal, a plural
// ("agents"), or one typo away for words of seven letters or more
// ("represntative"). Shorter words must be exact, so "agent" never
// matches "argent" or "reagent".
func sameWord(got, want string) bool {
	if rest, ok := strings.CutPrefix(got, want); ok && (rest == "" || rest == "s" || rest == "es") {
		return true
	}
	return len(want) >= 7 && len(got) >= 7 && withinOne(got, want)
}

// withinOne reports whether a and b are at most one edit apart (insert,
// delete, substitute, or swap two neighbours).
func withinOne(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(b)-len(a) > 1 {
		return false
	}
	i := 0
	for i < len(a) && a[i] == b[i] {
		i++
	}
	if i == len(a) {
		return true
	}
	if len(a) == len(b) {
		if a[i+1:] == b[i+1:] {
			return true
		}
		return i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
	}
	return a[i:] == b[i+1:]
}

func anyIn(phrases []phrase, words []string) bool {
	for _, p := range phrases {
		if p.in(words) {
			return true
		}
	}
	return false
}

// choiceTerms is what a choice is matched on: its analyzed terms, or its
// words when all of them are stop words.
func (c *Config) choiceTerms(choice string) []string {
	if t := terms.Analyze(terms.Lang(c.lang), choice); len(t) > 0 {
		return t
	}
	return normWords(choice)
}

// caseKey is how branch cases and slot values compare.
func caseKey(v string) string { return strings.Join(normWords(v), " ") }
