package paging_test

import (
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/server/internal/paging"
)

func TestSize(t *testing.T) {
	for _, tt := range []struct {
		requested int32
		want      int
	}{{0, 50}, {1, 1}, {50, 50}, {1000, 200}, {200, 200}} {
		if got := paging.Size(tt.requested, 50, 200); got != tt.want {
			t.Errorf("Size(%d) = %d, want %d", tt.requested, got, tt.want)
		}
	}
}

// FuzzPageToken feeds arbitrary page tokens to Decode and DecodeID (which
// must refuse them with InvalidArgument or accept them, never panic) and
// checks that every token Encode makes decodes to its cursor for its own
// scope only.
func FuzzPageToken(f *testing.F) {
	f.Add("c1b5a3d2-5f0e-4d7e-9a51-7f3c2b1e0d9a", "42", "")
	f.Add("", "0b9f6a8e-2c4d-4e6f-8a0b-1c2d3e4f5a6b", paging.Encode("", "0b9f6a8e-2c4d-4e6f-8a0b-1c2d3e4f5a6b"))
	f.Add("conv", "7", paging.Encode("other", "7"))
	f.Add("conv", "7", "eyJzIjoiY29udiIsImEiOiIifQ") // {"s":"conv","a":""}
	f.Add("conv", "7", "not base64!")
	f.Add("conv", "7", "e30")                          // {}
	f.Add("conv", "7", "eyJzIjoiY29udiIsImEiOjd9")     // a number where a string goes
	f.Add("conv", "7", "eyJzIjoiY29udiIsImEiOiI3In0=") // padded
	f.Fuzz(func(t *testing.T, scope, cursor, raw string) {
		if got, err := paging.Decode(scope, raw); err != nil {
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("Decode(%q): %v, want InvalidArgument", raw, err)
			}
		} else if raw != "" && got == "" {
			t.Fatalf("Decode(%q) accepted a token without a cursor", raw)
		}
		if _, err := paging.DecodeID(scope, raw); err != nil && connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("DecodeID(%q): %v, want InvalidArgument", raw, err)
		}
		// Cursors and scopes are ids and numbers, always valid UTF-8 (JSON
		// would replace invalid bytes).
		if cursor == "" || !utf8.ValidString(cursor) || !utf8.ValidString(scope) {
			return
		}
		tok := paging.Encode(scope, cursor)
		if got, err := paging.Decode(scope, tok); err != nil || got != cursor {
			t.Fatalf("Decode(Encode(%q, %q)) = %q, %v", scope, cursor, got, err)
		}
		if _, err := paging.Decode(scope+"x", tok); err == nil {
			t.Fatalf("a token for scope %q was accepted for scope %q", scope, scope+"x")
		}
	})
}
