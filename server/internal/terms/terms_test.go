package terms

import (
	"slices"
	"testing"
)

func TestAnalyze(t *testing.T) {
	for _, tc := range []struct {
		lang, text string
		want       []string
	}{
		{"en", "Where is my order?", []string{"order"}},
		{"en", "I can't reset my passwords!!", []string{"reset", "password"}},
		{"en", "order-status NOT shipped", []string{"order", "status", "ship"}},
		{"en", "??", nil},
		{"en", "", nil},
		{"en", `"quoted" OR (refunds) AND NEAR/2 *`, []string{"quot", "refund", "near", "2"}},
		{"fr-CA", "Je voudrais parler à un conseiller", []string{"voudr", "parl", "conseil"}},
	} {
		got := Analyze(Lang(tc.lang), tc.text)
		if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("Analyze(%q, %q) = %q, want %q", tc.lang, tc.text, got, tc.want)
		}
	}
}

func TestWordsKeepsContractionsWhole(t *testing.T) {
	if got := Words("can't won’t I'm"); !slices.Equal(got, []string{"cant", "wont", "im"}) {
		t.Errorf("Words = %q", got)
	}
}

func FuzzAnalyze(f *testing.F) {
	f.Add("en", "can't ?? NOT order-status")
	f.Fuzz(func(t *testing.T, lang, text string) {
		for _, term := range Analyze(Lang(lang), text) {
			if term == "" {
				t.Fatalf("empty term from %q", text)
			}
		}
	})
}
