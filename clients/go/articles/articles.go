// Package articles reads knowledge base articles from a folder of Markdown
// files, each starting with YAML front matter:
//
//	---
//	external_id: account/reset-password
//	title: Reset a forgotten password
//	tags: [forgot password, locked out]
//	audience: public      # or internal (staff only); public when left out
//	locale: en            # BCP 47; "en" when left out
//	published: true       # false keeps it a draft, never searched
//	---
//	# Reset a forgotten password
//	...
//
// The parley CLI's import-articles and the server's demo bootstrap both
// read articles with it.
package articles

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"go.yaml.in/yaml/v3"
)

// frontMatter is what a file's front matter may say.
type frontMatter struct {
	ExternalID string   `yaml:"external_id"`
	Title      string   `yaml:"title"`
	Tags       []string `yaml:"tags"`
	Audience   string   `yaml:"audience"`
	Locale     string   `yaml:"locale"`
	Published  *bool    `yaml:"published"`
}

var (
	externalIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	localePattern     = regexp.MustCompile(`^$|^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,3}$`)
)

// ParseMarkdown reads every *.md file of fsys (in subfolders too, in
// lexical order) as one article. An error names the file and what is wrong
// with it; two files with one external_id are an error.
func ParseMarkdown(fsys fs.FS) ([]*parleyv1.Article, error) {
	var out []*parleyv1.Article
	seen := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || path.Ext(p) != ".md" {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		a, err := Parse(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if other, dup := seen[a.GetExternalId()]; dup {
			return fmt.Errorf("%s: external_id %q is also the external_id of %s; each article needs its own", p, a.GetExternalId(), other)
		}
		seen[a.GetExternalId()] = p
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Parse reads one article: front matter between two "---" lines, then the
// Markdown body.
func Parse(data []byte) (*parleyv1.Article, error) {
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	rest, ok := bytes.CutPrefix(data, []byte("---\n"))
	if !ok {
		return nil, errors.New(`the file must start with front matter: a line "---", the YAML fields, and another "---"`)
	}
	head, body, ok := bytes.Cut(rest, []byte("\n---\n"))
	if !ok {
		if head, ok = bytes.CutSuffix(rest, []byte("\n---")); !ok {
			return nil, errors.New(`the front matter has no closing "---" line`)
		}
	}
	var fm frontMatter
	dec := yaml.NewDecoder(bytes.NewReader(head))
	dec.KnownFields(true)
	if err := dec.Decode(&fm); err != nil {
		return nil, fmt.Errorf("front matter: %w (fields: external_id, title, tags, audience, locale, published)", err)
	}
	a := &parleyv1.Article{
		ExternalId: fm.ExternalID,
		Title:      strings.TrimSpace(fm.Title),
		Body:       strings.TrimSpace(string(body)),
		Tags:       fm.Tags,
		Locale:     fm.Locale,
	}
	switch {
	case !externalIDPattern.MatchString(fm.ExternalID):
		return nil, fmt.Errorf("external_id %q: give one of letters, digits and . _ / - (such as account/reset-password)", fm.ExternalID)
	case a.Title == "":
		return nil, errors.New("title: missing")
	case a.Body == "":
		return nil, errors.New("the article has no body after its front matter")
	case !localePattern.MatchString(fm.Locale):
		return nil, fmt.Errorf("locale %q: give a BCP 47 tag such as en or fr-CA", fm.Locale)
	case fm.Published == nil:
		return nil, errors.New("published: missing; say true, or false for a draft")
	}
	a.Published = *fm.Published
	switch fm.Audience {
	case "", "public":
		a.Audience = parleyv1.ArticleAudience_ARTICLE_AUDIENCE_PUBLIC
	case "internal":
		a.Audience = parleyv1.ArticleAudience_ARTICLE_AUDIENCE_INTERNAL
	default:
		return nil, fmt.Errorf("audience %q: say public or internal", fm.Audience)
	}
	for i, t := range a.Tags {
		if strings.TrimSpace(t) == "" {
			return nil, fmt.Errorf("tags: tag %d is empty", i+1)
		}
	}
	return a, nil
}
