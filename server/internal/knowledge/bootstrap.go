package knowledge

import (
	"context"
	"fmt"
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
	ids := make([]string, len(articles))
	seen := make(map[string]bool, len(articles))
	for i, a := range articles {
		if seen[a.GetExternalId()] {
			return fmt.Errorf("knowledge: external_id %q appears twice", a.GetExternalId())
		}
		seen[a.GetExternalId()] = true
		ids[i] = a.GetExternalId()
	}
	s := &Service{base: b, clk: clock.Real{}}
	_, err = s.importInTx(ctx, tx, articles, ids, s.clk.Now())
	return err
}
