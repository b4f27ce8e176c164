package bootstrap

import (
	"embed"
	"io/fs"
)

//go:embed knowledge/*.md
var demoArticles embed.FS

// DemoArticles is the demo knowledge base: Example Shop's help articles,
// one Markdown file with front matter each (read them with
// knowledge.ParseMarkdown).
func DemoArticles() fs.FS {
	sub, _ := fs.Sub(demoArticles, "knowledge") // a literal, valid path: cannot fail
	return sub
}
