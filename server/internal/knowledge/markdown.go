package knowledge

import (
	"io/fs"

	"github.com/parleyhq/parley/clients/go/articles"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// ParseMarkdown reads every *.md file of fsys as one article (Markdown
// with YAML front matter: see package articles, which the parley CLI
// shares). An error names the file and what is wrong with it.
func ParseMarkdown(fsys fs.FS) ([]*parleyv1.Article, error) {
	return articles.ParseMarkdown(fsys)
}
