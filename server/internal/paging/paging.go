// Package paging implements AIP-style pagination: page size defaults and
// clamping, and opaque page tokens bound to the request they came from.
package paging

import (
	"encoding/base64"
	"encoding/json"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/server/internal/apierr"
)

// Size returns the page size to use: def for 0, at most max. Negative sizes
// are rejected by the request validator before this is called.
func Size(requested int32, def, max int) int {
	switch {
	case requested <= 0:
		return def
	case int(requested) > max:
		return max
	}
	return int(requested)
}

type token struct {
	Scope string `json:"s"`
	After string `json:"a"`
}

// Encode returns a page token that resumes after cursor, for requests with
// the given scope (such as a conversation id; "" for global lists).
func Encode(scope, cursor string) string {
	b, _ := json.Marshal(token{Scope: scope, After: cursor}) // cannot fail for strings
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode returns the cursor of a page token, or "" for an empty token. A
// token that is malformed or was issued for another scope is rejected with
// InvalidArgument.
func Decode(scope, pageToken string) (string, error) {
	if pageToken == "" {
		return "", nil
	}
	bad := ErrBadToken()
	raw, err := base64.RawURLEncoding.DecodeString(pageToken)
	if err != nil {
		return "", bad
	}
	var t token
	if err := json.Unmarshal(raw, &t); err != nil || t.Scope != scope || t.After == "" {
		return "", bad
	}
	return t.After, nil
}

// Trim takes rows fetched with a limit of size+1 and returns the page and
// the token for the next one ("" when there is none).
func Trim[T any](rows []T, size int, scope string, cursor func(T) string) ([]T, string) {
	if len(rows) <= size {
		return rows, ""
	}
	rows = rows[:size]
	return rows, Encode(scope, cursor(rows[len(rows)-1]))
}

// DecodeID returns the UUID cursor of a page token, or uuid.Nil (which sorts
// first) for an empty token.
func DecodeID(scope, pageToken string) (uuid.UUID, error) {
	after, err := Decode(scope, pageToken)
	if err != nil || after == "" {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(after)
	if err != nil {
		return uuid.Nil, ErrBadToken()
	}
	return id, nil
}

// ErrBadToken is the error for a page token this list did not return.
func ErrBadToken() error {
	return apierr.New(connect.CodeInvalidArgument, "INVALID_PAGE_TOKEN",
		"page_token is not one this list returned; start again without it")
}
