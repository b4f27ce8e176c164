package idempotency_test

import (
	"context"
	"path/filepath"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestKeysAreScopedToTheirCaller: two callers using the same key on the
// same procedure get independent results; each caller's retry gets its
// own first response back, and its reuse of the key with another request
// gets AlreadyExists.
func TestKeysAreScopedToTheirCaller(t *testing.T) {
	ctx := t.Context()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	writes := 0
	do := func(caller, request string) (string, bool, error) {
		key := idempotency.Key{Caller: caller, Procedure: "/parley.v1.Test/Write", ID: "same-key"}
		resp, replayed, err := idempotency.Do(ctx, db, key, wrapperspb.String(request), func(context.Context, *ent.Tx) (*wrapperspb.StringValue, error) {
			writes++
			return wrapperspb.String(caller + " wrote " + request), nil
		})
		return resp.GetValue(), replayed, err
	}
	for _, step := range []struct {
		caller, request, want string
		replayed              bool
		writes                int
	}{
		{"agent:a", "x", "agent:a wrote x", false, 1},
		{"agent:b", "y", "agent:b wrote y", false, 2},
		{"agent:a", "x", "agent:a wrote x", true, 2},
		{"agent:b", "y", "agent:b wrote y", true, 2},
		{"guest:c", "x", "guest:c wrote x", false, 3},
	} {
		got, replayed, err := do(step.caller, step.request)
		if err != nil || got != step.want || replayed != step.replayed || writes != step.writes {
			t.Fatalf("%s %s = %q, replayed %v, %v after %d writes; want %q, replayed %v after %d writes",
				step.caller, step.request, got, replayed, err, writes, step.want, step.replayed, step.writes)
		}
	}
	_, _, err = do("agent:a", "y")
	if connect.CodeOf(err) != connect.CodeAlreadyExists || apierr.Reason(err) != "REQUEST_ID_REUSED" {
		t.Fatalf("reused key with another request: %v, want AlreadyExists REQUEST_ID_REUSED", err)
	}
}
