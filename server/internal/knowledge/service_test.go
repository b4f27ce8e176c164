package knowledge_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/knowledge"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store"
	"github.com/parleyhq/parley/server/internal/store/storetest"
	"google.golang.org/protobuf/proto"
)

// demoServer starts a server and imports the demo corpus as the admin;
// it returns the server, an admin client and an agent (Beth) client.
func demoServer(t *testing.T) (*servertest.Server, *parley.Client, *parley.Client, []*parleyv1.Article) {
	t.Helper()
	srv := servertest.Start(t, emptyKnowledge)
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	agent := srv.Client(parley.Connect, servertest.BethToken)
	articles, err := knowledge.ParseMarkdown(bootstrap.DemoArticles())
	if err != nil {
		t.Fatalf("parse demo articles: %v", err)
	}
	resp, err := admin.Knowledge.ImportArticles(context.Background(), &parleyv1.ImportArticlesRequest{Articles: articles})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if int(resp.GetCreated()) != len(articles) || resp.GetUpdated() != 0 || resp.GetUnchanged() != 0 {
		t.Fatalf("first import: created %d, updated %d, unchanged %d; want %d created", resp.GetCreated(), resp.GetUpdated(), resp.GetUnchanged(), len(articles))
	}
	return srv, admin, agent, articles
}

func search(t *testing.T, c *parley.Client, req *parleyv1.SearchKnowledgeRequest) []string {
	t.Helper()
	resp, err := c.Knowledge.SearchKnowledge(context.Background(), req)
	if err != nil {
		t.Fatalf("search %q: %v", req.GetQuery(), err)
	}
	var ids []string
	for _, r := range resp.GetResults() {
		ids = append(ids, r.GetExternalId())
	}
	return ids
}

func TestImportIsIdempotentAndUpdates(t *testing.T) {
	ctx := context.Background()
	_, admin, agent, articles := demoServer(t)
	list := func() map[string]*parleyv1.Article {
		out := map[string]*parleyv1.Article{}
		token := ""
		for pages := 0; ; pages++ {
			resp, err := agent.Knowledge.ListArticles(ctx, &parleyv1.ListArticlesRequest{PageSize: 10, PageToken: token})
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if len(resp.GetArticles()) > 10 {
				t.Fatalf("page of %d articles; asked for 10", len(resp.GetArticles()))
			}
			for _, a := range resp.GetArticles() {
				if _, dup := out[a.GetExternalId()]; dup {
					t.Fatalf("%s listed twice", a.GetExternalId())
				}
				out[a.GetExternalId()] = a
			}
			if token = resp.GetNextPageToken(); token == "" {
				return out
			}
		}
	}
	before := list()
	if len(before) != len(articles) {
		t.Fatalf("listed %d articles, imported %d", len(before), len(articles))
	}

	time.Sleep(10 * time.Millisecond) // an update would get a later update_time
	again, err := admin.Knowledge.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: articles})
	if err != nil {
		t.Fatalf("re-import: %v", err)
	}
	if int(again.GetUnchanged()) != len(articles) || again.GetCreated() != 0 || again.GetUpdated() != 0 {
		t.Fatalf("re-import: created %d, updated %d, unchanged %d; want all %d unchanged", again.GetCreated(), again.GetUpdated(), again.GetUnchanged(), len(articles))
	}
	for i, r := range again.GetResults() {
		if r.GetOutcome() != parleyv1.ImportOutcome_IMPORT_OUTCOME_UNCHANGED || r.GetExternalId() != articles[i].GetExternalId() ||
			r.GetArticleId() != before[r.GetExternalId()].GetId() {
			t.Fatalf("re-import result %d: %v", i, r)
		}
	}
	for id, a := range list() {
		if !proto.Equal(a, before[id]) {
			t.Fatalf("re-import changed %s:\n%v\nwas\n%v", id, a, before[id])
		}
	}

	// Change one article: only it is updated, and a search finds its new words.
	changed := proto.Clone(articles[0]).(*parleyv1.Article)
	changed.Body += "\n\nAsk for the zanzibar procedure."
	resp, err := admin.Knowledge.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{changed, articles[1]}})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if resp.GetUpdated() != 1 || resp.GetUnchanged() != 1 || resp.GetResults()[0].GetOutcome() != parleyv1.ImportOutcome_IMPORT_OUTCOME_UPDATED {
		t.Fatalf("update: %v", resp)
	}
	got, err := agent.Knowledge.GetArticle(ctx, &parleyv1.GetArticleRequest{ArticleId: resp.GetResults()[0].GetArticleId()})
	if err != nil {
		t.Fatal(err)
	}
	old := before[changed.GetExternalId()]
	if got.GetArticle().GetBody() != changed.GetBody() || !got.GetArticle().GetUpdateTime().AsTime().After(old.GetUpdateTime().AsTime()) ||
		!got.GetArticle().GetCreateTime().AsTime().Equal(old.GetCreateTime().AsTime()) {
		t.Fatalf("updated article: %v (was %v)", got.GetArticle(), old)
	}
	// A typo of the new word: the vocabulary followed the update.
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "zanzibr procedure"}); len(ids) == 0 || ids[0] != changed.GetExternalId() {
		t.Fatalf("search for the updated article's new word: %v", ids)
	}
}

func TestImportRefusesBadBatchesWhole(t *testing.T) {
	ctx := context.Background()
	srv := servertest.Start(t, emptyKnowledge)
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	ok := &parleyv1.Article{ExternalId: "a/one", Title: "One", Body: "Body one.", Published: true}
	for name, tc := range map[string]struct {
		batch  []*parleyv1.Article
		reason string
		says   string
	}{
		"duplicate external_id": {
			batch:  []*parleyv1.Article{ok, {ExternalId: "a/two", Title: "Two", Body: "x"}, {ExternalId: "a/one", Title: "Again", Body: "y"}},
			reason: "DUPLICATE_EXTERNAL_ID", says: `"a/one" appears twice`,
		},
		"empty title":        {batch: []*parleyv1.Article{ok, {ExternalId: "a/two", Body: "x"}}, reason: "INVALID_FIELD", says: "title"},
		"bad external_id":    {batch: []*parleyv1.Article{ok, {ExternalId: "../etc", Title: "T", Body: "x"}}, reason: "INVALID_FIELD", says: "external_id"},
		"bad locale":         {batch: []*parleyv1.Article{ok, {ExternalId: "a/two", Title: "T", Body: "x", Locale: "english!"}}, reason: "INVALID_FIELD", says: "locale"},
		"undefined audience": {batch: []*parleyv1.Article{ok, {ExternalId: "a/two", Title: "T", Body: "x", Audience: 7}}, reason: "INVALID_FIELD", says: "audience"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := admin.Knowledge.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: tc.batch})
			if connect.CodeOf(err) != connect.CodeInvalidArgument || apierr.Reason(err) != tc.reason || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v (reason %q); want InvalidArgument %s saying %q", err, apierr.Reason(err), tc.reason, tc.says)
			}
		})
	}
	list, err := admin.Knowledge.ListArticles(ctx, &parleyv1.ListArticlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetArticles()) != 0 {
		t.Fatalf("refused batches wrote %d articles", len(list.GetArticles()))
	}
}

func TestSearchDemoCorpus(t *testing.T) {
	_, _, agent, _ := demoServer(t)
	for query, want := range map[string]string{
		"I forgot my password":               "account/reset-password",
		"where is my order":                  "orders/track-order",
		"there's a charge I don't recognize": "billing/dispute-a-charge",
		"refnud":                             "billing/refund-timing",
		"how do I send this back":            "returns/start-a-return",
		"how long does delivery take":        "shipping/delivery-times",
		"change my email":                    "account/change-email",
		"cancel my order":                    "orders/cancel-order",
	} {
		ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: query, PublicOnly: true})
		if len(ids) == 0 || ids[0] != want {
			t.Errorf("%q: got %v; want %s first", query, ids, want)
		}
	}
	resp, err := agent.Knowledge.SearchKnowledge(context.Background(), &parleyv1.SearchKnowledgeRequest{Query: "I forgot my password"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetResults()); n != knowledge.DefaultLimit {
		t.Errorf("page_size 0 gave %d results; want %d", n, knowledge.DefaultLimit)
	}
	top := resp.GetResults()[0]
	if !strings.Contains(top.GetSnippet(), "[password]") || strings.ContainsAny(top.GetSnippet(), "*#<>`") ||
		top.GetTitle() != "Reset a forgotten password" || top.GetArticleId() == "" || len(top.GetTags()) == 0 || top.GetScore() <= 0 {
		t.Errorf("top result: %v", top)
	}
	for i := 1; i < len(resp.GetResults()); i++ {
		if resp.GetResults()[i].GetScore() > resp.GetResults()[i-1].GetScore() {
			t.Errorf("results not best first: %v", resp.GetResults())
		}
	}
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "password", PageSize: 2}); len(ids) != 2 {
		t.Errorf("page_size 2 gave %v", ids)
	}
}

func TestSearchHostileText(t *testing.T) {
	_, _, agent, _ := demoServer(t)
	// Invalid UTF-8 cannot be sent (the client refuses to marshal it); the
	// fuzz test gives such text to the query builder directly.
	hostile := []string{
		"can't", "??", "NOT", "order-status", `"refund`, `"`, "'", "*", "refund*", "NEAR(", "NEAR(refund order, 2)",
		"AND OR", "OR", "the and of is", "title:refund", "refund ^ order", "{title body}: refund", "-refund", "+",
		`\`, `'); DROP TABLE articles; --`, "refund & | ! ( ) :*", "a:1A,2B", "🙂🙂", "ﬁ ligature Ⅻ",
		"ｒｅｆｕｎｄ", "re\u0301fund", "‮refund", strings.Repeat("refund ", 142), strings.Repeat("ü", 1000),
		strings.Repeat("x", 1000), strings.Repeat("(", 1000), strings.Repeat(`"a" `, 250),
	}
	for _, q := range hostile {
		for _, locale := range []string{"", "fr"} {
			if _, err := agent.Knowledge.SearchKnowledge(context.Background(), &parleyv1.SearchKnowledgeRequest{Query: q, Locale: locale}); err != nil {
				t.Errorf("%q (locale %q): %v", q, locale, err)
			}
		}
	}
	// NUL is refused (as in every request: PostgreSQL cannot store it),
	// with a message that says so, never an internal error.
	if _, err := agent.Knowledge.SearchKnowledge(context.Background(), &parleyv1.SearchKnowledgeRequest{Query: "refund\x00"}); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(err.Error(), "NUL") {
		t.Errorf("a NUL in the query: %v", err)
	}
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "the and of is"}); len(ids) != 0 {
		t.Errorf("a question of stop words only found %v", ids)
	}
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "order-status"}); len(ids) == 0 {
		t.Errorf("order-status found nothing")
	}
}

func TestSearchFilters(t *testing.T) {
	_, _, agent, _ := demoServer(t)
	contains := func(ids []string, id string) bool {
		for _, x := range ids {
			if x == id {
				return true
			}
		}
		return false
	}
	// Drafts are never searched, whoever asks.
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "holiday shipping deadlines christmas", PageSize: 50}); contains(ids, "shipping/holiday-schedule-2026") {
		t.Errorf("a draft was found: %v", ids)
	}
	// Internal articles: for staff, not for the virtual agent.
	q := "goodwill refund exceptions"
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: q}); len(ids) == 0 || ids[0] != "internal/refund-exceptions" {
		t.Errorf("staff search for an internal article: %v", ids)
	}
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: q, PublicOnly: true, PageSize: 50}); contains(ids, "internal/refund-exceptions") || contains(ids, "internal/suspected-fraud") {
		t.Errorf("public_only search found an internal article: %v", ids)
	}
	// Locale: "fr" finds fr-CA; "en" does not.
	for locale, want := range map[string]bool{"fr": true, "fr-CA": true, "FR-ca": true, "en": false, "fr-FR": false} {
		ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "mot de passe oublié", Locale: locale, PageSize: 50})
		if got := len(ids) > 0 && ids[0] == "fr/account/reset-password"; got != want {
			t.Errorf("locale %q: %v", locale, ids)
		}
		for _, id := range ids {
			if locale == "en" && strings.HasPrefix(id, "fr/") || strings.HasPrefix(locale, "fr") && !strings.HasPrefix(id, "fr/") {
				t.Errorf("locale %q found %s", locale, id)
			}
		}
	}
}

func TestDeleteArticle(t *testing.T) {
	ctx := context.Background()
	_, admin, agent, _ := demoServer(t)
	ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "pair my earbuds"})
	if len(ids) == 0 || ids[0] != "setup/pair-headphones" {
		t.Fatalf("before delete: %v", ids)
	}
	resp, err := agent.Knowledge.SearchKnowledge(ctx, &parleyv1.SearchKnowledgeRequest{Query: "pair my earbuds"})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetResults()[0].GetArticleId()
	for range 2 { // idempotent
		if _, err := admin.Knowledge.DeleteArticle(ctx, &parleyv1.DeleteArticleRequest{ArticleId: id}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	if ids := search(t, agent, &parleyv1.SearchKnowledgeRequest{Query: "pair my earbuds", PageSize: 50}); len(ids) > 0 && ids[0] == "setup/pair-headphones" {
		t.Fatalf("a deleted article was found: %v", ids)
	}
	_, err = agent.Knowledge.GetArticle(ctx, &parleyv1.GetArticleRequest{ArticleId: id})
	if connect.CodeOf(err) != connect.CodeNotFound || apierr.Reason(err) != "ARTICLE_NOT_FOUND" {
		t.Fatalf("get a deleted article: %v", err)
	}
}

func TestKnowledgePermissions(t *testing.T) {
	ctx := context.Background()
	srv, _, agent, articles := demoServer(t)
	customer := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-1", "Casey", "casey@example.com"))
	if _, err := customer.Knowledge.SearchKnowledge(ctx, &parleyv1.SearchKnowledgeRequest{Query: "refund"}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("customer search: %v", err)
	}
	anonymous := srv.Client(parley.Connect, "")
	if _, err := anonymous.Knowledge.SearchKnowledge(ctx, &parleyv1.SearchKnowledgeRequest{Query: "refund"}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("anonymous search: %v", err)
	}
	if _, err := agent.Knowledge.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: articles[:1]}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("agent import: %v", err)
	}
	if _, err := agent.Knowledge.DeleteArticle(ctx, &parleyv1.DeleteArticleRequest{ArticleId: "0190d4c4-0000-7000-8000-000000000000"}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("agent delete: %v", err)
	}
}

// TestVocabularyFollowsOtherBases: a base that cached its vocabulary
// corrects a typo of a word another base (another replica) just imported.
func TestVocabularyFollowsOtherBases(t *testing.T) {
	ctx := context.Background()
	db, first, _ := demoBase(t)
	second, err := knowledge.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Search(ctx, knowledge.Query{Text: "refund"}); err != nil { // caches the vocabulary
		t.Fatal(err)
	}
	svc := knowledge.NewService(db, first, clock.Real{})
	_, err = svc.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{{
		ExternalId: "product/kettle-descaling", Title: "Descaling the Example Kettle", Body: "Use citric acid every month.", Published: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	results, err := second.Search(ctx, knowledge.Query{Text: "how do I descalling my ketle"})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 || results[0].GetExternalId() != "product/kettle-descaling" {
		t.Fatalf("the other base missed the new article: %v", results)
	}
	// Only the first MaxQueryRunes runes of a question count.
	long := strings.Repeat("x ", knowledge.MaxQueryRunes/2) + "descalling"
	if results, err := second.Search(ctx, knowledge.Query{Text: long}); err != nil || len(results) != 0 {
		t.Fatalf("a question's words past MaxQueryRunes were searched: %v, %v", results, err)
	}
	if results, err := second.Search(ctx, knowledge.Query{Text: long[len(long)-40:]}); err != nil || len(results) != 1 {
		t.Fatalf("the end of the long question alone: %v, %v", results, err)
	}
	if _, err := second.Search(ctx, knowledge.Query{Text: "refund", Locale: "en_US"}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("malformed locale: %v", err)
	}
}

// TestSearchFiltersBeyondTheBestMatches: when the best matches are all
// filtered out, the search still finds the admitted one further down.
func TestSearchFiltersBeyondTheBestMatches(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, filepath.Join(t.TempDir(), "kb.db"), store.Options{})
	base, err := knowledge.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var batch []*parleyv1.Article
	for i := range 400 {
		batch = append(batch, &parleyv1.Article{
			ExternalId: fmt.Sprintf("internal/refund-%03d", i), Title: "Refund refund refund", Body: "Refund procedure.",
			Audience: parleyv1.ArticleAudience_ARTICLE_AUDIENCE_INTERNAL, Published: true,
		})
	}
	batch = append(batch, &parleyv1.Article{ExternalId: "public/refund", Title: "Refunds", Body: "A long body about many things and also a refund at the end.", Published: true, Locale: "fr-CA"})
	if _, err := knowledge.NewService(db, base, clock.Real{}).ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: batch}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []knowledge.Query{{Text: "refund", PublicOnly: true}, {Text: "refund", Locale: "fr"}} {
		results, err := base.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(results) != 1 || results[0].GetExternalId() != "public/refund" {
			t.Errorf("%+v: got %v; want public/refund alone", q, results)
		}
	}
	results, err := base.Search(ctx, knowledge.Query{Text: "refund", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 50 {
		t.Errorf("limit 50 gave %d results", len(results))
	}
}

// TestImportOnOneReplicaSearchableOnAnother: two servers on one database
// (replicas on PostgreSQL); the second has cached its vocabulary when the
// first imports, and still corrects a typo of the new article's words.
func TestImportOnOneReplicaSearchableOnAnother(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	one := servertest.Start(t, servertest.WithDBFile(path), emptyKnowledge)
	two := servertest.Start(t, servertest.WithDBFile(path), emptyKnowledge)
	agentTwo := two.Client(parley.Connect, servertest.BethToken)
	if ids := search(t, agentTwo, &parleyv1.SearchKnowledgeRequest{Query: "descaling kettle"}); len(ids) != 0 {
		t.Fatalf("found %v before the import", ids)
	}
	_, err := one.Client(parley.Connect, servertest.AdminToken).Knowledge.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: []*parleyv1.Article{{
		ExternalId: "product/kettle-descaling", Title: "Descaling the Example Kettle", Body: "Use citric acid every month.", Published: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if ids := search(t, agentTwo, &parleyv1.SearchKnowledgeRequest{Query: "descalling my ketle"}); len(ids) != 1 || ids[0] != "product/kettle-descaling" {
		t.Fatalf("the other replica found %v", ids)
	}
}

// emptyKnowledge starts a server whose knowledge base is empty: these
// tests import the demo corpus themselves (the demo bootstrap would
// already have).
var emptyKnowledge = servertest.WithBootstrap(func(f *bootstrap.File) { f.Articles = nil })
