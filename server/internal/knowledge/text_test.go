package knowledge

import (
	"strings"
	"testing"
)

func TestPlainText(t *testing.T) {
	md := "# Title\n\nSome **bold** and *italic* `code` with a [link](https://x.example/a) and ![img](a.png).\n\n" +
		"- item [one]\n1. step <b>two</b>\n\n| a | b |\n| --- | --- |\n| c | d |\n\n```\nfenced\n```\n> quoted https://example.com/x\n---\n"
	want := "Title. Some bold and italic code with a link and img. item (one). step two. a b. c d. fenced. quoted."
	if got := plainText(md); got != want {
		t.Errorf("plainText:\n got %q\nwant %q", got, want)
	}
}

func TestSnippet(t *testing.T) {
	body := strings.Repeat("Filler words here. ", 20) + "To get a **refund**, start a return; refunds take days." + strings.Repeat(" More filler.", 20)
	got := snippet("en", body, map[string]bool{"refund": true, "return": true})
	if !strings.Contains(got, "[refund], start a [return]; [refunds] take") || !strings.HasPrefix(got, "... ") || !strings.HasSuffix(got, " ...") {
		t.Errorf("snippet %q", got)
	}
	if n := len(strings.Fields(strings.Trim(got, ". "))); n > snippetWords+2 {
		t.Errorf("snippet of %d words: %q", n, got)
	}
	if got := snippet("en", "Short [text](x).", map[string]bool{"nomatch": true}); got != "Short text." {
		t.Errorf("snippet without a match: %q", got)
	}
	// Only the matching words are marked, not the punctuation around or
	// between them; hidden HTML content and entities never read as markup.
	for body, want := range map[string]string{
		"Call gronkle('x') now.":                       "Call [gronkle]('x') now.",
		"See &lt;gronkle&gt; here.":                    "See [gronkle] here.",
		"<script>document.write('gronkle')</script>ok": "ok.",
		"<style>.gronkle{}</style>Styled gronkle.":     "Styled [gronkle].",
		"it's the gronkle's-end":                       "it's the [gronkle's]-end.",
	} {
		if got := snippet("en", body, map[string]bool{"gronkl": true}); got != want {
			t.Errorf("snippet(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		limit int
		want  int
	}{
		{"refnud", "refund", 2, 1}, // a swap is one edit
		{"pasword", "password", 2, 1},
		{"delivri", "deliveri", 2, 1},
		{"kitten", "sitting", 2, 3}, // 3 > limit: limit+1
		{"abc", "abc", 0, 0},
		{"abcdef", "ab", 2, 3},
		{"", "ab", 2, 2},
	} {
		if got := editDistance([]rune(tc.a), []rune(tc.b), tc.limit); got != tc.want {
			t.Errorf("editDistance(%q, %q, %d) = %d; want %d", tc.a, tc.b, tc.limit, got, tc.want)
		}
	}
}

func TestCorrect(t *testing.T) {
	v := newVocabulary(1, 10, map[string]int{"refund": 3, "return": 5, "password": 2, "card": 4, "cart": 1, "where_is_my_order": 1,
		"select": 6, "year": 3})
	// Short words and real words two edits from a known one ("reject",
	// "near") are left alone: a wrong correction outweighs a lost typo.
	for stem, want := range map[string]string{"refnud": "refund", "pasword": "password", "retrun": "return", "cxrd": "", "car": "",
		"zzzzzz": "", "where_is_my_ordr": "", "reject": "", "near": ""} {
		got, ok := v.correct(stem)
		if want == "" && ok || want != "" && got != want {
			t.Errorf("correct(%q) = %q, %v; want %q", stem, got, ok, want)
		}
	}
}

func TestTSVector(t *testing.T) {
	got := tsVector(document{title: []string{"refund", "time"}, tags: []string{"money", "refund"}, body: []string{"o'k"}})
	want := `'refund':1A,4B 'time':2A 'money':3B 'o''k':5C`
	if got != want {
		t.Errorf("tsVector = %s; want %s", got, want)
	}
	if got := tsQuery([]string{"a", `b\`}); got != `'a' | 'b\\'` {
		t.Errorf("tsQuery = %s", got)
	}
	if got := ftsMatch([]string{"a", `b"c`}); got != `"a" OR "b""c"` {
		t.Errorf("ftsMatch = %s", got)
	}
}
