package knowledge

import (
	"context"
	"io/fs"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/clock"
)

// ImportMarkdown imports the Markdown articles in fsys (ParseMarkdown's
// format) inside tx, as ImportArticles would: a new installation's
// bootstrap uses it to write its knowledge base with its configuration.
func (b *Base) ImportMarkdown(ctx context.Context, tx *ent.Tx, fsys fs.FS) error {
	articles, err := ParseMarkdown(fsys)
	if err != nil {
		return err
	}
	if len(articles) == 0 {
		return nil
	}
	s := &Service{base: b, clk: clock.Real{}}
	_, err = s.importInTx(ctx, tx, articles, s.clk.Now())
	return err
}
