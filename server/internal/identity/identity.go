// Package identity verifies signed-in customers: a JWT issued by the
// company's portal or by the host site of the embedded messenger, checked
// with golang-jwt against the issuers parleyd trusts (signature, issuer,
// audience, expiry, with a small clock skew).
package identity

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"

	"github.com/parleyhq/parley/server/internal/clock"
)

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 30 * time.Second

// Demo is the identity configuration parleyd uses without -identity: one
// issuer with a public HS256 secret, for trying Parley locally only.
//
//go:embed demo.yaml
var Demo []byte

// Config lists the issuers whose tokens identify customers.
type Config struct {
	Issuers []Issuer `yaml:"issuers"`
}

// Issuer is one site that signs customer tokens.
type Issuer struct {
	// Issuer is the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience must be in the token's aud claim.
	Audience string `yaml:"audience"`
	// HS256Secret is the shared secret; HS256SecretEnv names an
	// environment variable holding it instead.
	HS256Secret    string `yaml:"hs256_secret"`
	HS256SecretEnv string `yaml:"hs256_secret_env"`
}

// ParseConfig reads an identity configuration and checks it.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		switch {
		case is.Issuer == "" || is.Audience == "":
			return nil, fmt.Errorf("identity: issuer %d needs issuer and audience", i+1)
		case seen[is.Issuer]:
			return nil, fmt.Errorf("identity: issuer %q is listed twice", is.Issuer)
		case (is.HS256Secret == "") == (is.HS256SecretEnv == ""):
			return nil, fmt.Errorf("identity: issuer %q needs exactly one of hs256_secret, hs256_secret_env", is.Issuer)
		}
		seen[is.Issuer] = true
	}
	return &c, nil
}

// Claims is a verified customer identity.
type Claims struct {
	Issuer  string
	Subject string
	Name    string
	Email   string
}

// tokenClaims are the claims Parley reads from a customer token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Verifier checks customer tokens.
type Verifier struct {
	keys  map[string]issuerKey
	clock clock.Clock
}

type issuerKey struct {
	audience string
	secret   []byte
}

// ErrInvalid is returned for every token that does not verify; callers
// learn nothing about why.
var ErrInvalid = errors.New("identity: the token does not verify")

// NewVerifier returns a verifier of c's issuers, reading secrets from the
// environment where c names variables.
func NewVerifier(c *Config, clk clock.Clock) (*Verifier, error) {
	v := &Verifier{keys: map[string]issuerKey{}, clock: clk}
	for _, is := range c.Issuers {
		secret := is.HS256Secret
		if is.HS256SecretEnv != "" {
			if secret = os.Getenv(is.HS256SecretEnv); secret == "" {
				return nil, fmt.Errorf("identity: issuer %q: environment variable %s is empty", is.Issuer, is.HS256SecretEnv)
			}
		}
		if len(secret) < 32 {
			return nil, fmt.Errorf("identity: issuer %q: the HS256 secret must be at least 32 bytes", is.Issuer)
		}
		v.keys[is.Issuer] = issuerKey{audience: is.Audience, secret: []byte(secret)}
	}
	return v, nil
}

// LooksLikeJWT tells a JWT from Parley's opaque tokens.
func LooksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2 && strings.HasPrefix(token, "eyJ")
}

// Verify checks raw and returns its identity: HS256 signed by a trusted
// issuer, for that issuer's audience, with exp set and not passed, and a
// subject.
func (v *Verifier) Verify(raw string) (Claims, error) {
	// The unverified issuer only picks the key; the signature and every
	// claim are then checked against that issuer.
	var unverified tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &unverified); err != nil {
		return Claims{}, ErrInvalid
	}
	key, ok := v.keys[unverified.Issuer]
	if !ok {
		return Claims{}, ErrInvalid
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(raw, &claims,
		func(*jwt.Token) (any, error) { return key.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(unverified.Issuer),
		jwt.WithAudience(key.audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(v.clock.Now),
	)
	if err != nil || claims.Subject == "" {
		return Claims{}, ErrInvalid
	}
	name := claims.Name
	if name == "" {
		name = claims.Subject
	}
	return Claims{Issuer: claims.Issuer, Subject: claims.Subject, Name: name, Email: claims.Email}, nil
}
