// Package idempotency makes retryable writes safe: a write runs in one
// transaction together with the record of its key, request fingerprint and
// response, so a retry with the same key and request gets the first
// response back, and the same key with another request is refused. Keys
// live in the store under a unique index, not in memory, so they hold
// across restarts and replicas, and are scoped to their caller, so two
// callers' keys never collide.
//
// Do is the one mechanism for retryable writes. The two writes whose key
// must outlive the idempotency retention or must not be stored in the
// clear keep their key on their own record (SendMessage's
// client_message_id on the message event, StartGuestChat's request id,
// hashed, on the interaction), but tell a retry from a reused key with the
// same Fingerprint and Match.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/idempotencykey"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/store"
	"google.golang.org/protobuf/proto"
)

// Key identifies one retryable write.
type Key struct {
	// Caller is who made the write (auth.Principal.Caller), so callers'
	// keys never collide.
	Caller string
	// Procedure is the RPC's procedure name.
	Procedure string
	// ID is the client's idempotency key (its request_id).
	ID string
	// Now is when the write happens, by the server's clock: the record is
	// kept for the idempotency retention from then (zero: the wall clock).
	Now time.Time
}

// Do runs write in a transaction and stores its response under key in the
// same transaction. If key was used before with an equal request, Do
// returns the stored response without calling write; if with a different
// request, it fails with AlreadyExists. replayed tells which happened.
func Do[R proto.Message](ctx context.Context, db *store.DB, key Key, req proto.Message, write func(ctx context.Context, tx *ent.Tx) (R, error)) (resp R, replayed bool, err error) {
	hash, err := Fingerprint(req)
	if err != nil {
		return resp, false, apierr.Internal(err)
	}
	err = store.InTx(ctx, db, func(ctx context.Context, tx *ent.Tx) error {
		var found bool
		if resp, found, err = lookup[R](ctx, tx.IdempotencyKey, key, hash); err != nil || found {
			replayed = found
			return err
		}
		if resp, err = write(ctx, tx); err != nil {
			return err
		}
		body, err := proto.Marshal(resp)
		if err != nil {
			return fmt.Errorf("idempotency: marshal response: %w", err)
		}
		create := tx.IdempotencyKey.Create().
			SetCaller(key.Caller).SetProcedure(key.Procedure).SetKey(key.ID).
			SetRequestHash(hash).SetResponse(body)
		if !key.Now.IsZero() {
			create.SetCreatedAt(key.Now)
		}
		return create.Exec(ctx)
	})
	if ent.IsConstraintError(err) {
		// A concurrent call with the same key committed first (possible on
		// PostgreSQL, where transactions do not take the write lock first).
		if prior, found, lerr := lookup[R](ctx, db.IdempotencyKey, key, hash); lerr != nil || found {
			return prior, found, lerr
		}
	}
	if err != nil {
		return resp, false, apierr.From(err)
	}
	return resp, replayed, nil
}

// lookup returns the response stored under key, if any.
func lookup[R proto.Message](ctx context.Context, keys *ent.IdempotencyKeyClient, key Key, hash []byte) (R, bool, error) {
	var zero R
	prior, err := keys.Query().Where(
		idempotencykey.Caller(key.Caller), idempotencykey.Procedure(key.Procedure), idempotencykey.Key(key.ID),
	).Only(ctx)
	if ent.IsNotFound(err) {
		return zero, false, nil
	}
	if err != nil {
		return zero, false, fmt.Errorf("idempotency: look up key: %w", err)
	}
	if err := Match(prior.RequestHash, hash, "request_id", key.ID); err != nil {
		return zero, false, err
	}
	resp, ok := zero.ProtoReflect().Type().New().Interface().(R)
	if !ok {
		return zero, false, fmt.Errorf("idempotency: cannot make a %T", zero)
	}
	if err := proto.Unmarshal(prior.Response, resp); err != nil {
		return zero, false, fmt.Errorf("idempotency: decode stored response: %w", err)
	}
	return resp, true, nil
}

// Fingerprint hashes the deterministic encoding of req.
func Fingerprint(req proto.Message) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("idempotency: marshal request: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// Match tells a retry from a reused key: nil if the stored fingerprint
// equals hash, otherwise Reused.
func Match(stored, hash []byte, field, id string) error {
	if bytes.Equal(stored, hash) {
		return nil
	}
	return Reused(field, id)
}

// Reused is the refusal of key id, sent in the request's field (request_id,
// client_message_id), that was already used for a different request:
// AlreadyExists with the reason <FIELD>_REUSED (REQUEST_ID_REUSED,
// CLIENT_MESSAGE_ID_REUSED).
func Reused(field, id string) error {
	return apierr.New(connect.CodeAlreadyExists, strings.ToUpper(field)+"_REUSED",
		fmt.Sprintf("%s %q was already used for a different request; use a new %s for a new request", field, id, field))
}

// Scoped is key id scoped to caller, for a key that is stored outside Do
// under a unique index of its own, so that two callers' keys never
// collide there either.
func Scoped(caller, id string) string {
	return caller + "/" + id
}
