package routing_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // a second, raw connection to the store's file

	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

// TestOneBrokenChatDoesNotStopRouting: a waiting conversation whose row is
// broken (its interaction is gone, as a bad migration or a manual edit
// might leave it) does not keep a healthy chat from being offered; its
// failure is logged, then retried with backoff rather than on every pass.
func TestOneBrokenChatDoesNotStopRouting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "parley.db")
	r := newRig(t, servertest.WithDBFile(file))
	r.issueTypes("fragile")
	q := r.queue("fragile", 1, nil)
	broken, _ := r.chat("fragile")
	healthy, _ := r.chat("fragile")

	raw := storetest.Raw(t, file)
	res, err := raw.ExecContext(r.ctx, "UPDATE conversations SET interaction_id = $1 WHERE id = $2", uuid.NewString(), broken)
	must(t, err)
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("corrupted %d rows, want 1", n)
	}

	// A pass the chats kicked may have read them before the corruption;
	// passes take turns, so this one ends it before an agent exists (with
	// none, a pass looks at no waiting chat).
	r.pass()
	r.agent("Ann", 2, q)
	r.pass()
	if r.pending(healthy) == nil {
		t.Fatal("the healthy chat waits: one broken row stopped routing")
	}
	if r.pending(broken) != nil {
		t.Fatal("the broken chat was offered")
	}
	failures := func() int { return strings.Count(r.srv.Log.String(), `row="conversation `+broken+`"`) }
	if failures() != 1 {
		t.Fatalf("the broken row was logged %d times, want once:\n%s", failures(), r.srv.Log.String())
	}
	r.pass()
	if failures() != 1 {
		t.Fatalf("the broken row was tried again before its backoff: logged %d times", failures())
	}
	r.advance(2 * time.Second)
	if failures() != 2 {
		t.Fatalf("the broken row was not retried after its backoff: logged %d times", failures())
	}
}
