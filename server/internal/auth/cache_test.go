package auth

import (
	"testing"
	"time"
)

func TestRemoteRevocationDropsCachedPrincipals(t *testing.T) {
	c := newPrincipals()
	now := time.Now()
	loads := 0
	load := func() (*Principal, error) {
		loads++
		return &Principal{Role: RoleAgent}, nil
	}
	for range 2 {
		if _, err := c.resolve("secret", now, load); err != nil {
			t.Fatal(err)
		}
	}
	if loads != 1 {
		t.Fatalf("loaded %d times before a revocation, want 1 (then cached)", loads)
	}
	NoteRemoteRevocation()
	if _, err := c.resolve("secret", now, load); err != nil {
		t.Fatal(err)
	}
	if loads != 2 {
		t.Fatalf("loaded %d times after a revocation on another replica, want 2", loads)
	}
}
