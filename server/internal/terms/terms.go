// Package terms turns customer text into the terms that search and intent
// matching compare: words split on anything that is not a letter or digit,
// lower-cased, apostrophes dropped ("can't" is "cant"), stop words left out
// and each word stemmed (Snowball) for the languages that have a stemmer.
// It never fails: any string, however hostile, yields some (maybe no) terms.
package terms

import (
	"strings"
	"unicode"

	"github.com/kljensen/snowball/english"
	"github.com/kljensen/snowball/french"
	"github.com/kljensen/snowball/spanish"
)

// Words splits text into lower-case words. Apostrophes inside a word are
// dropped, so "can't" and "cant" are the same word; any other character
// that is not a letter or digit separates words ("order-status" is
// "order", "status").
func Words(text string) []string {
	var words []string
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			words = append(words, b.String())
			b.Reset()
		}
	}
	for _, r := range text {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		case r == '\'' || r == '’':
			// Inside a word: skip it; elsewhere it separates nothing.
		default:
			flush()
		}
	}
	flush()
	return words
}

// Lang picks a stemmer and stop word list from a BCP 47 tag ("fr-CA" is
// French); anything unknown is English.
func Lang(tag string) string {
	base, _, _ := strings.Cut(strings.ToLower(tag), "-")
	switch base {
	case "fr", "es":
		return base
	}
	return "en"
}

// Stem returns word's stem in lang (a Lang result). Words of one or two
// letters are kept as they are.
func Stem(lang, word string) string {
	if len([]rune(word)) <= 2 {
		return word
	}
	switch lang {
	case "fr":
		return french.Stem(word, false)
	case "es":
		return spanish.Stem(word, false)
	}
	return english.Stem(word, false)
}

// IsStop reports whether word (lower case) is a stop word in lang: a word
// too common to tell texts apart ("the", "my", "is").
func IsStop(lang, word string) bool {
	_, ok := stopWords[lang][word]
	return ok
}

// Analyze returns the stems of text's words that are not stop words, in
// order (repeats kept).
func Analyze(lang, text string) []string {
	words := Words(text)
	out := words[:0]
	for _, w := range words {
		if IsStop(lang, w) {
			continue
		}
		out = append(out, Stem(lang, w))
	}
	return out
}

// stopWords are the words each language leaves out. The English list is
// the usual function words plus customer-service filler ("hi", "please",
// "thanks") that says nothing about what the customer wants. Negations
// and question words that change meaning in routing ("not", "how") are
// stop words too: ranking never needs them.
var stopWords = map[string]map[string]struct{}{
	"en": set(`a about above after again against all am an and any are as at be because been before being below
between both but by can cant could couldnt did didnt do does doesnt doing dont down during each few for from
further had hadnt has hasnt have havent having he hed hell hes her here heres hers herself him himself his how
hows i id ill im ive if in into is isnt it its itself lets me more most my myself no nor not of off on once
only or other ought our ours ourselves out over own same shant she shed shell shes should shouldnt so some
such than that thats the their theirs them themselves then there theres these they theyd theyll theyre
theyve this those through to too under until up very was wasnt we wed well were weve werent what whats when
whens where wheres which while who whos whom why whys with wont would wouldnt you youd youll youre youve your
yours yourself yourselves hi hello hey please thanks thank thx pls plz ok okay yes yeah just also still get got
want wanted need needs would like know help hmm um uh`),
	"fr": set(`au aux avec ce ces dans de des du elle en et eux il ils je la le les leur lui ma mais me même mes
moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton tu un une vos
votre vous c d j l à m n s t y été être avoir bonjour merci svp est sont ai as a`),
	"es": set(`de la que el en y a los del se las por un para con no una su al lo como más pero sus le ya o
este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante
todos uno les ni contra otros ese eso ante ellos e esto mí antes algunos qué unos yo otro otras otra él
hola gracias por favor es son mi`),
}

func set(words string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, w := range strings.Fields(words) {
		m[w] = struct{}{}
	}
	return m
}
