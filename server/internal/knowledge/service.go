package knowledge

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/article"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/paging"
	"github.com/parleyhq/parley/server/internal/store"
)

// Page sizes of ListArticles.
const (
	defaultPageSize = 100
	maxPageSize     = 500
)

// Service implements parleyv1connect.KnowledgeServiceHandler. Who may call
// which method is decided by the auth policy before a method runs.
type Service struct {
	db   *store.DB
	base *Base
	clk  clock.Clock
}

var _ parleyv1connect.KnowledgeServiceHandler = (*Service)(nil)

// NewService returns the KnowledgeService handler over base, which must be
// db's.
func NewService(db *store.DB, base *Base, clk clock.Clock) *Service {
	return &Service{db: db, base: base, clk: clk}
}

// ImportArticles creates or updates the batch's articles by external_id in
// one transaction, indexing each in it. An article whose content is what
// the store holds is left untouched (its update_time included).
func (s *Service) ImportArticles(ctx context.Context, req *parleyv1.ImportArticlesRequest) (*parleyv1.ImportArticlesResponse, error) {
	in := req.GetArticles()
	now := s.clk.Now()
	return store.Write(ctx, s.db, func(ctx context.Context, tx *ent.Tx) (*parleyv1.ImportArticlesResponse, error) {
		return s.importInTx(ctx, tx, in, now)
	})
}

// externalIDs lists the batch's external ids, refusing one that appears
// twice.
func externalIDs(in []*parleyv1.Article) ([]string, error) {
	first := make(map[string]int, len(in))
	ids := make([]string, len(in))
	for i, a := range in {
		id := a.GetExternalId()
		if j, dup := first[id]; dup {
			return nil, apierr.New(connect.CodeInvalidArgument, "DUPLICATE_EXTERNAL_ID",
				fmt.Sprintf("external_id %q appears twice in the batch (articles %d and %d); send each article once", id, j, i))
		}
		first[id] = i
		ids[i] = id
	}
	return ids, nil
}

// importInTx upserts the batch in (each external id once) inside tx.
func (s *Service) importInTx(ctx context.Context, tx *ent.Tx, in []*parleyv1.Article, now time.Time) (*parleyv1.ImportArticlesResponse, error) {
	ids, err := externalIDs(in)
	if err != nil {
		return nil, err
	}
	stored, err := tx.Article.Query().Where(article.ExternalIDIn(ids...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("knowledge: load the batch's articles: %w", err)
	}
	byExternalID := make(map[string]*ent.Article, len(stored))
	for _, a := range stored {
		byExternalID[a.ExternalID] = a
	}
	resp := &parleyv1.ImportArticlesResponse{}
	for _, a := range in {
		out, outcome, err := s.upsert(ctx, tx, byExternalID[a.GetExternalId()], a, now)
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, &parleyv1.ImportedArticle{ExternalId: a.GetExternalId(), ArticleId: out.ID.String(), Outcome: outcome})
		switch outcome {
		case parleyv1.ImportOutcome_IMPORT_OUTCOME_CREATED:
			resp.Created++
		case parleyv1.ImportOutcome_IMPORT_OUTCOME_UPDATED:
			resp.Updated++
		default:
			resp.Unchanged++
		}
	}
	if resp.Created+resp.Updated > 0 {
		if err := bumpVersion(ctx, tx); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// upsert writes a over stored (nil when new) inside tx and indexes it,
// unless stored already has a's content.
func (s *Service) upsert(ctx context.Context, tx *ent.Tx, stored *ent.Article, a *parleyv1.Article, now time.Time) (*ent.Article, parleyv1.ImportOutcome, error) {
	c := contentOf(a)
	hash := c.hash()
	var out *ent.Article
	var err error
	outcome := parleyv1.ImportOutcome_IMPORT_OUTCOME_UPDATED
	switch {
	case stored != nil && stored.ContentHash == hash:
		return stored, parleyv1.ImportOutcome_IMPORT_OUTCOME_UNCHANGED, nil
	case stored != nil:
		out, err = tx.Article.UpdateOne(stored).
			SetTitle(c.Title).SetBody(c.Body).SetTags(c.Tags).SetAudience(c.Audience).
			SetLocale(c.Locale).SetPublished(c.Published).SetContentHash(hash).SetUpdatedAt(now).
			Save(ctx)
	default:
		outcome = parleyv1.ImportOutcome_IMPORT_OUTCOME_CREATED
		out, err = tx.Article.Create().
			SetCreatedAt(now).SetExternalID(a.GetExternalId()).
			SetTitle(c.Title).SetBody(c.Body).SetTags(c.Tags).SetAudience(c.Audience).
			SetLocale(c.Locale).SetPublished(c.Published).SetContentHash(hash).SetUpdatedAt(now).
			Save(ctx)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("knowledge: save article %q: %w", a.GetExternalId(), err)
	}
	if err := s.base.index(ctx, tx, out); err != nil {
		return nil, 0, err
	}
	return out, outcome, nil
}

// SearchKnowledge returns the published articles that best answer the
// query (Base.Search).
func (s *Service) SearchKnowledge(ctx context.Context, req *parleyv1.SearchKnowledgeRequest) (*parleyv1.SearchKnowledgeResponse, error) {
	results, err := s.base.Search(ctx, Query{
		Text:       req.GetQuery(),
		Locale:     req.GetLocale(),
		Limit:      int(req.GetPageSize()),
		PublicOnly: req.GetPublicOnly(),
	})
	if err != nil {
		return nil, err
	}
	return &parleyv1.SearchKnowledgeResponse{Results: results}, nil
}

// GetArticle returns one article, drafts and internal ones included.
func (s *Service) GetArticle(ctx context.Context, req *parleyv1.GetArticleRequest) (*parleyv1.GetArticleResponse, error) {
	id := chatlog.ParseID(req.GetArticleId())
	a, err := s.db.Article.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, apierr.New(connect.CodeNotFound, "ARTICLE_NOT_FOUND",
			fmt.Sprintf("article %s does not exist; ListArticles lists the articles there are", id))
	}
	if err != nil {
		return nil, fmt.Errorf("knowledge: load article %s: %w", id, err)
	}
	return &parleyv1.GetArticleResponse{Article: articleToProto(a)}, nil
}

// ListArticles lists articles by external_id, drafts and internal ones
// included.
func (s *Service) ListArticles(ctx context.Context, req *parleyv1.ListArticlesRequest) (*parleyv1.ListArticlesResponse, error) {
	const scope = "articles"
	after, err := paging.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := paging.Size(req.GetPageSize(), defaultPageSize, maxPageSize)
	q := s.db.Article.Query().Order(ent.Asc(article.FieldExternalID)).Limit(size + 1)
	if after != "" {
		q.Where(article.ExternalIDGT(after))
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list articles: %w", err)
	}
	page, next := paging.Trim(rows, size, scope, func(a *ent.Article) string { return a.ExternalID })
	resp := &parleyv1.ListArticlesResponse{NextPageToken: next}
	for _, a := range page {
		resp.Articles = append(resp.Articles, articleToProto(a))
	}
	return resp, nil
}

// DeleteArticle removes an article and its index entry; deleting one that
// does not exist (any more) succeeds.
func (s *Service) DeleteArticle(ctx context.Context, req *parleyv1.DeleteArticleRequest) (*parleyv1.DeleteArticleResponse, error) {
	id := chatlog.ParseID(req.GetArticleId())
	err := store.InTx(ctx, s.db, func(ctx context.Context, tx *ent.Tx) error {
		n, err := tx.Article.Delete().Where(article.ID(id)).Exec(ctx)
		if err != nil {
			return fmt.Errorf("knowledge: delete article %s: %w", id, err)
		}
		if n == 0 {
			return nil
		}
		if err := s.base.idx.remove(ctx, tx, id); err != nil {
			return err
		}
		return bumpVersion(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	return &parleyv1.DeleteArticleResponse{}, nil
}
