package identity_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/identity"
)

// FuzzVerify feeds arbitrary strings to the verifier as customer tokens.
// Exactly one of them is genuine: the token signed with the issuer's
// secret. Every other string, however close to it, must be refused, and
// none may panic the verifier.
func FuzzVerify(f *testing.F) {
	good := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	genuine, err := good.SignedString([]byte(secret))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add(genuine + ".")
	f.Add(genuine[:len(genuine)-1] + "d") // the same signature bytes if decoding is lax
	f.Add(genuine + "\r")                 // base64 decoding skips \r and \n
	f.Add(genuine[:20] + "\n" + genuine[20:])
	f.Add(noneToken(claims(nil)))
	f.Add("eyJhbGciOiJIUzI1NiJ9..")
	f.Add("eyJ.eyJ.eyJ")
	f.Add("")
	c, err := identity.ParseConfig([]byte("issuers:\n- {issuer: " + issuer + ", audience: " + audience + ", hs256_secret: '" + secret + "'}\n"))
	if err != nil {
		f.Fatal(err)
	}
	v, err := identity.NewVerifier(f.Context(), c, clock.NewFake(now), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := v.Verify(raw)
		switch {
		case raw == genuine && (err != nil || got.Subject != "user-42"):
			t.Fatalf("the genuine token: %+v, %v", got, err)
		case raw != genuine && err == nil:
			t.Fatalf("a forged token verified as %+v: %q", got, raw)
		}
	})
}

// FuzzParseConfig feeds arbitrary identity files to the parser: it may
// refuse them, never panic, and what it accepts names each issuer once,
// with an audience and exactly one source of keys.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(identity.Demo))
	f.Add([]byte("issuers:\n- {issuer: a, audience: b, jwks_url: 'https://keys.example.com/jwks.json'}\n"))
	f.Add([]byte("issuers:\n- {issuer: a, audience: b, jwks_url: 'http://127.0.0.1:9/jwks.json'}\n"))
	f.Add([]byte("issuers: [{issuer: a, audience: b, hs256_secret_env: PORTAL_SECRET}, {issuer: c, audience: d, jwks_file: k.json}]"))
	f.Add([]byte("issuers: {}"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := identity.ParseConfig(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, is := range c.Issuers {
			sources := 0
			for _, s := range []string{is.HS256Secret, is.HS256SecretEnv, is.JWKSFile, is.JWKSURL} {
				if s != "" {
					sources++
				}
			}
			if is.Issuer == "" || is.Audience == "" || sources != 1 || seen[is.Issuer] {
				t.Fatalf("accepted a bad issuer %+v from %q", is, data)
			}
			seen[is.Issuer] = true
		}
	})
}

// The verifier must refuse a token the moment it expires past the leeway.
func TestExpiryBoundary(t *testing.T) {
	c, err := identity.ParseConfig([]byte("issuers:\n- {issuer: " + issuer + ", audience: " + audience + ", hs256_secret: '" + secret + "'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(now)
	v, err := identity.NewVerifier(t.Context(), c, clk, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(time.Minute).Unix() })).SignedString([]byte(secret))
	clk.Advance(time.Minute + identity.Leeway - time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("verified past exp plus the leeway")
	}
}

// A signature's last base64 character carries two unused bits; a token
// that differs from a genuine one only there is another string and must
// not verify (lax decoding would accept it, making tokens malleable).
func TestSignatureEncodingIsStrict(t *testing.T) {
	v := verifier(t, "issuers:\n- {issuer: "+issuer+", audience: "+audience+", hs256_secret: '"+secret+"'}\n")
	genuine, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, genuine[len(genuine)-1])
	for i := range 4 {
		variant := genuine[:len(genuine)-1] + string(alphabet[last&^3|i])
		if variant == genuine {
			continue
		}
		if _, err := v.Verify(variant); err == nil {
			t.Errorf("a token re-encoded in its unused bits verified: %q", variant)
		}
	}
}
