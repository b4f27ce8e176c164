package identity_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/identity"
)

const (
	issuer   = "https://shop.example.com"
	audience = "parley"
	secret   = "a-shared-secret-of-at-least-32-bytes!"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// signer mints tokens for one issuer's key kind.
type signer struct {
	name   string
	method jwt.SigningMethod
	key    any // what SignedString takes
	kid    string
}

func (s signer) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": issuer, "aud": audience, "sub": "user-42", "name": "Ana", "email": "ana@example.com",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

// publicJWKS returns a JWKS document holding the public halves of keys.
func publicJWKS(t *testing.T, keys map[string]crypto.Signer) []byte {
	t.Helper()
	store := jwkset.NewMemoryStorage()
	for kid, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			t.Fatal(err)
		}
	}
	out, err := store.JSONPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func verifier(t *testing.T, config string) *identity.Verifier {
	t.Helper()
	c, err := identity.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(t.Context(), c, clock.NewFake(now), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVerifyVectors checks every key kind against the same bad tokens: each
// must fail, and the good one must verify.
func TestVerifyVectors(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := publicJWKS(t, map[string]crypto.Signer{"rsa-1": rsaKey, "ec-1": ecKey, "ed-1": edKey})

	dir := t.TempDir()
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	served := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(served.Close)

	configs := map[string]string{
		"hs256":     "issuers:\n- {issuer: " + issuer + ", audience: " + audience + ", hs256_secret: '" + secret + "'}\n",
		"jwks file": "issuers:\n- {issuer: " + issuer + ", audience: " + audience + ", jwks_file: '" + jwksFile + "'}\n",
		"jwks url":  "issuers:\n- {issuer: " + issuer + ", audience: " + audience + ", jwks_url: '" + served.URL + "'}\n",
	}
	signers := map[string][]signer{
		"hs256": {{name: "HS256", method: jwt.SigningMethodHS256, key: []byte(secret)}},
	}
	for _, src := range []string{"jwks file", "jwks url"} {
		signers[src] = []signer{
			{name: "RS256", method: jwt.SigningMethodRS256, key: rsaKey, kid: "rsa-1"},
			{name: "ES256", method: jwt.SigningMethodES256, key: ecKey, kid: "ec-1"},
			{name: "EdDSA", method: jwt.SigningMethodEdDSA, key: edKey, kid: "ed-1"},
		}
	}
	for src, config := range configs {
		v := verifier(t, config)
		for _, s := range signers[src] {
			t.Run(src+"/"+s.name, func(t *testing.T) {
				got, err := v.Verify(s.sign(t, claims(nil)))
				if err != nil || got.Subject != "user-42" || got.Issuer != issuer || got.Name != "Ana" {
					t.Fatalf("good token: %+v, %v", got, err)
				}
				// Inside the clock skew, an expired token still verifies.
				if _, err := v.Verify(s.sign(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-identity.Leeway / 2).Unix() }))); err != nil {
					t.Errorf("token expired within the leeway: %v", err)
				}
				good := s.sign(t, claims(nil))
				bad := map[string]string{
					"expired":         s.sign(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
					"no expiry":       s.sign(t, claims(func(c jwt.MapClaims) { delete(c, "exp") })),
					"not yet valid":   s.sign(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })),
					"wrong audience":  s.sign(t, claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" })),
					"unknown issuer":  s.sign(t, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })),
					"no subject":      s.sign(t, claims(func(c jwt.MapClaims) { delete(c, "sub") })),
					"alg none":        noneToken(claims(nil)),
					"tampered":        tamper(t, good),
					"bad signature":   good[:len(good)-4] + "AAAA",
					"garbage":         "eyJhbGciOi.not-a.token",
					"wrong key":       wrongKey(t, s, otherRSA),
					"unknown key id":  signer{method: s.method, key: s.key, kid: "nobody"}.sign(t, claims(nil)),
					"hs256 with jwks": signer{method: jwt.SigningMethodHS256, key: jwks}.sign(t, claims(nil)),
				}
				if s.kid == "" {
					delete(bad, "unknown key id") // HS256 issuers have no key ids
				}
				for name, tok := range bad {
					if _, err := v.Verify(tok); err == nil {
						t.Errorf("%s: verified, want rejected", name)
					}
				}
			})
		}
	}
}

// wrongKey signs a good token with a key the issuer does not trust.
func wrongKey(t *testing.T, s signer, other *rsa.PrivateKey) string {
	switch s.method {
	case jwt.SigningMethodHS256:
		return signer{method: s.method, key: []byte("another-secret-that-is-32-bytes-long!")}.sign(t, claims(nil))
	case jwt.SigningMethodES256:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return signer{method: s.method, key: k, kid: s.kid}.sign(t, claims(nil))
	case jwt.SigningMethodEdDSA:
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		return signer{method: s.method, key: k, kid: s.kid}.sign(t, claims(nil))
	}
	return signer{method: s.method, key: other, kid: s.kid}.sign(t, claims(nil))
}

// noneToken is an unsigned token (alg "none") with the given claims.
func noneToken(c jwt.MapClaims) string {
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return tok
}

// tamper swaps a signed token's subject, keeping its signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	c["sub"] = "admin"
	payload, _ = json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// TestKnownVector is jwt.io's published HS256 example: correctly signed
// with its secret, but it names no issuer, audience or expiry, so even an
// issuer trusting that secret must refuse it.
func TestKnownVector(t *testing.T) {
	const example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	// The signature is genuine: golang-jwt accepts it when no claim is checked.
	if _, err := jwt.Parse(example, func(*jwt.Token) (any, error) { return []byte("your-256-bit-secret"), nil }); err != nil {
		t.Fatalf("the published vector no longer verifies with its secret: %v", err)
	}
	v := verifier(t, "issuers:\n- {issuer: "+issuer+", audience: "+audience+", hs256_secret: 'your-256-bit-secret-padded-to-32-bytes'}\n")
	if _, err := v.Verify(example); err == nil {
		t.Fatal("a token without iss, aud and exp verified")
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := map[string]string{
		"two key sources": "issuers:\n- {issuer: a, audience: b, hs256_secret: x, jwks_file: y}\n",
		"no key source":   "issuers:\n- {issuer: a, audience: b}\n",
		"plain http url":  "issuers:\n- {issuer: a, audience: b, jwks_url: 'http://keys.example.com/jwks.json'}\n",
		"no audience":     "issuers:\n- {issuer: a, hs256_secret: x}\n",
		"listed twice":    "issuers:\n- {issuer: a, audience: b, jwks_file: y}\n- {issuer: a, audience: b, jwks_file: y}\n",
		"unknown key":     "issuers:\n- {issuer: a, audience: b, jwks_file: y, colour: red}\n",
	}
	for name, config := range tests {
		if _, err := identity.ParseConfig([]byte(config)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	short := "issuers:\n- {issuer: a, audience: b, hs256_secret: too-short}\n"
	c, err := identity.ParseConfig([]byte(short))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.NewVerifier(t.Context(), c, clock.Real{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a secret under 32 bytes was accepted")
	}
}
