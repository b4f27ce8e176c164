package knowledge

import (
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleyhq/parley/server/internal/terms"
)

// maxTermRunes bounds an indexed or searched term: longer "words" (a pasted
// token, a URL without separators) are left out, so neither store ever
// sees a lexeme it refuses.
const maxTermRunes = 60

var (
	mdImage   = regexp.MustCompile(`!\[([^\]]*)\]\([^)]*\)`)
	mdLink    = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	mdRefLink = regexp.MustCompile(`\[([^\]]*)\]\[[^\]]*\]`)
	mdHTML    = regexp.MustCompile(`<[^>]*>`)
	// mdHidden are HTML elements whose content a reader never sees.
	mdHidden   = regexp.MustCompile(`(?is)<(script|style|template)\b[^>]*>.*?</(script|style|template)\s*>`)
	mdEntity   = regexp.MustCompile(`&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});`)
	mdAngles   = strings.NewReplacer("<", "", ">", "")
	mdURL      = regexp.MustCompile(`https?://\S+`)
	mdEmphasis = strings.NewReplacer("**", "", "__", "", "*", "", "`", "", "~~", "")
	mdBrackets = strings.NewReplacer("[", "(", "]", ")")
	mdListItem = regexp.MustCompile(`^\s*(?:[-*+]|\d+[.)])\s+`)
)

// plainText turns Markdown into plain text: headings, list markers,
// emphasis, links (their text is kept), images, HTML tags (with the
// content of script and style elements), angle brackets and code fences
// are removed, HTML entities are decoded, and any bracket left becomes a parenthesis, so that in a
// snippet "[" and "]" only ever mark matches. Each block ends with a
// sentence break.
func plainText(markdown string) string {
	var b strings.Builder
	markdown = mdHidden.ReplaceAllString(markdown, "")
	for _, line := range strings.Split(markdown, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "```"), strings.HasPrefix(line, "~~~"),
			strings.Trim(line, "-=*_ ") == "", strings.HasPrefix(line, "|") && strings.Trim(line, "|-: ") == "":
			continue
		}
		line = strings.TrimLeft(line, "#> ")
		line = mdListItem.ReplaceAllString(line, "")
		line = mdImage.ReplaceAllString(line, "$1")
		line = mdLink.ReplaceAllString(line, "$1")
		line = mdRefLink.ReplaceAllString(line, "$1")
		line = mdHTML.ReplaceAllString(line, "")
		// Entities read as what they stand for, but never as markup.
		line = mdAngles.Replace(mdEntity.ReplaceAllStringFunc(line, html.UnescapeString))
		line = mdURL.ReplaceAllString(line, "")
		line = mdEmphasis.Replace(line)
		line = mdBrackets.Replace(line)
		line = strings.ReplaceAll(line, "|", " ")
		line = strings.Join(strings.Fields(line), " ")
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(line)
		if r, _ := utf8.DecodeLastRuneInString(line); !strings.ContainsRune(".!?:;", r) {
			b.WriteByte('.')
		}
	}
	return b.String()
}

// analyze is terms.Analyze without the terms too long to index.
func analyze(lang, text string) []string {
	out := terms.Analyze(lang, text)
	kept := out[:0]
	for _, t := range out {
		if utf8.RuneCountInString(t) <= maxTermRunes {
			kept = append(kept, t)
		}
	}
	return kept
}

// document is an article's text as both indexes store it: the stems of
// each field, space separated, in order.
type document struct {
	title, body, tags []string
}

// analyzeArticle is the document of an article in locale. Its tags are
// analyzed like its title (a tag "refund status" indexes "refund" and
// "status"), and each tag of several words is also indexed whole, as
// phrase terms (see tagPhrases), so a question that says a tag outright
// ranks its article first.
func analyzeArticle(locale, title, markdown string, tags []string) document {
	lang := terms.Lang(locale)
	doc := document{
		title: analyze(lang, title),
		body:  analyze(lang, plainText(markdown)),
		tags:  analyze(lang, strings.Join(tags, " . ")),
	}
	for _, tag := range tags {
		doc.tags = append(doc.tags, tagPhrases(lang, tag)...)
	}
	return doc
}

// Phrase terms: a tag's stems joined by phraseSep, which no word holds
// (package terms splits words on it), so a phrase term never equals a word.
const (
	phraseSep = "_"
	// maxPhraseWords is the longest phrase a question is searched for.
	maxPhraseWords = 8
)

// tagPhrases returns the phrase terms of a tag of two words or more: its
// stems without stop words ("forgot password" for "forgot my password"),
// and all its stems when stop words make up part of it ("where is my
// order", whose only other stem is "order").
func tagPhrases(lang, tag string) []string {
	all, kept := phraseStems(lang, terms.Words(tag))
	var out []string
	if len(kept) >= 2 && len(kept) <= maxPhraseWords {
		out = append(out, strings.Join(kept, phraseSep))
	}
	if len(all) >= 2 && len(all) != len(kept) && len(all) <= maxPhraseWords {
		out = append(out, strings.Join(all, phraseSep))
	}
	return out
}

// phraseStems stems words, all of them and those that are not stop words.
func phraseStems(lang string, words []string) (all, kept []string) {
	for _, w := range words {
		s := terms.Stem(lang, w)
		all = append(all, s)
		if !terms.IsStop(lang, w) {
			kept = append(kept, s)
		}
	}
	return all, kept
}

// snippetWords is how many words a snippet shows, and snippetLead how
// many of them come before the first match when the text allows.
const (
	snippetWords = 30
	snippetLead  = 6
)

// snippet is the part of body's plain text (of locale) that holds the most
// of stems, at most snippetWords words, with each matching word between
// "[" and "]" and "..." where text was cut. With no match it is the text's
// beginning.
func snippet(locale, markdown string, stems map[string]bool) string {
	lang := terms.Lang(locale)
	text := plainText(markdown)
	words := strings.Fields(text)
	match := make([]bool, len(words))
	for i, w := range words {
		_, match[i] = markParts(lang, w, stems)
	}
	// The window with the most distinct matches (then the most matches)
	// wins, the earliest among equals; the window slides one word at a
	// time, so long bodies cost one pass.
	key := func(i int) string { return strings.ToLower(strings.TrimFunc(words[i], notWordRune)) }
	counts := map[string]int{}
	n := 0
	add := func(i, d int) {
		if !match[i] {
			return
		}
		k := key(i)
		counts[k] += d
		if counts[k] == 0 {
			delete(counts, k)
		}
		n += d
	}
	for i := 0; i < min(snippetWords, len(words)); i++ {
		add(i, 1)
	}
	start, best, bestDistinct := 0, n, len(counts)
	for s := 1; s+snippetWords <= len(words); s++ {
		add(s-1, -1)
		add(s+snippetWords-1, 1)
		if len(counts) > bestDistinct || len(counts) == bestDistinct && n > best {
			start, best, bestDistinct = s, n, len(counts)
		}
	}
	// Start a few words before the window's first match, for context; the
	// window only moves right, so it keeps every match it had.
	for i := start; i < min(start+snippetWords, len(words)); i++ {
		if match[i] {
			start = max(start, min(i-snippetLead, len(words)-snippetWords))
			break
		}
	}
	end := min(start+snippetWords, len(words))
	var b strings.Builder
	if start > 0 {
		b.WriteString("... ")
	}
	for i := start; i < end; i++ {
		if i > start {
			b.WriteByte(' ')
		}
		if match[i] {
			marked, _ := markParts(lang, words[i], stems)
			b.WriteString(marked)
		} else {
			b.WriteString(words[i])
		}
	}
	if end < len(words) {
		b.WriteString(" ...")
	}
	return b.String()
}

// markParts wraps each word of w (a run of letters and digits, with
// apostrophes inside, as terms.Words reads them) whose stem is in stems
// between "[" and "]", leaving the punctuation around and between words
// alone; it reports whether any word matched.
func markParts(lang, w string, stems map[string]bool) (string, bool) {
	var b strings.Builder
	matched := false
	for rest := w; rest != ""; {
		start := strings.IndexFunc(rest, func(r rune) bool { return !notWordRune(r) })
		if start < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:start])
		rest = rest[start:]
		end := len(rest)
		for k, r := range rest {
			if notWordRune(r) && !isApostrophe(r) {
				end = k
				break
			}
		}
		part := strings.TrimRightFunc(rest[:end], isApostrophe)
		rest = rest[len(part):]
		hit := false
		for _, word := range terms.Words(part) {
			if !terms.IsStop(lang, word) && stems[terms.Stem(lang, word)] {
				hit = true
			}
		}
		if hit {
			b.WriteString("[" + part + "]")
			matched = true
		} else {
			b.WriteString(part)
		}
	}
	return b.String(), matched
}

func isApostrophe(r rune) bool { return r == '\'' || r == '’' }

func notWordRune(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }
