package articles

import (
	"strings"
	"testing"
	"testing/fstest"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

func TestParseMarkdown(t *testing.T) {
	fsys := fstest.MapFS{
		"b/reset.md": {Data: []byte("---\r\nexternal_id: account/reset-password\r\ntitle: Reset it\r\ntags: [forgot password, locked out]\r\naudience: internal\r\nlocale: fr-CA\r\npublished: true\r\n---\r\n# Reset\r\n\r\nDo this.\r\n")},
		"a/draft.md": {Data: []byte("---\nexternal_id: a/draft\ntitle: Draft\npublished: false\n---\nNot yet.")},
		"notes.txt":  {Data: []byte("not an article")},
	}
	got, err := ParseMarkdown(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetExternalId() != "a/draft" || got[0].GetPublished() || got[0].GetAudience() != parleyv1.ArticleAudience_ARTICLE_AUDIENCE_PUBLIC {
		t.Fatalf("got %v", got)
	}
	r := got[1]
	if r.GetTitle() != "Reset it" || r.GetBody() != "# Reset\n\nDo this." || strings.Join(r.GetTags(), "|") != "forgot password|locked out" ||
		r.GetAudience() != parleyv1.ArticleAudience_ARTICLE_AUDIENCE_INTERNAL || r.GetLocale() != "fr-CA" || !r.GetPublished() {
		t.Fatalf("got %v", r)
	}
}

func TestParseMarkdownErrors(t *testing.T) {
	const ok = "---\nexternal_id: x/ok\ntitle: OK\npublished: true\n---\nBody."
	for name, tc := range map[string]struct {
		files map[string]string
		says  string
	}{
		"no front matter": {map[string]string{"a.md": "# Title\nBody"}, "a.md: the file must start with front matter"},
		"unclosed":        {map[string]string{"a.md": "---\nexternal_id: x\n"}, `a.md: the front matter has no closing "---"`},
		"unknown field":   {map[string]string{"a.md": "---\nexternal_id: x/a\ntitle: T\ntag: [a]\npublished: true\n---\nB"}, "a.md: front matter"},
		"bad yaml":        {map[string]string{"a.md": "---\ntitle: [\n---\nB"}, "a.md: front matter"},
		"no external_id":  {map[string]string{"a.md": "---\ntitle: T\npublished: true\n---\nB"}, `a.md: external_id ""`},
		"no title":        {map[string]string{"a.md": "---\nexternal_id: x/a\npublished: true\n---\nB"}, "a.md: title: missing"},
		"no body":         {map[string]string{"a.md": "---\nexternal_id: x/a\ntitle: T\npublished: true\n---\n  \n"}, "a.md: the article has no body"},
		"no published":    {map[string]string{"a.md": "---\nexternal_id: x/a\ntitle: T\n---\nB"}, "a.md: published: missing"},
		"bad audience":    {map[string]string{"a.md": "---\nexternal_id: x/a\ntitle: T\naudience: staff\npublished: true\n---\nB"}, `a.md: audience "staff"`},
		"bad locale":      {map[string]string{"a.md": "---\nexternal_id: x/a\ntitle: T\nlocale: en_US\npublished: true\n---\nB"}, `a.md: locale "en_US"`},
		"empty tag":       {map[string]string{"a.md": "---\nexternal_id: x/a\ntitle: T\ntags: [a, ' ']\npublished: true\n---\nB"}, "a.md: tags: tag 2 is empty"},
		"duplicate id":    {map[string]string{"a.md": ok, "b/c.md": ok}, `b/c.md: external_id "x/ok" is also the external_id of a.md`},
	} {
		t.Run(name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for p, data := range tc.files {
				fsys[p] = &fstest.MapFile{Data: []byte(data)}
			}
			_, err := ParseMarkdown(fsys)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v; want an error saying %q", err, tc.says)
			}
		})
	}
}
