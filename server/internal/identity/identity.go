// Package identity verifies signed-in customers: a JWT issued by the
// company's portal or by the host site of the embedded messenger, checked
// with golang-jwt against the issuers parleyd trusts (signature, issuer,
// audience, expiry, with a small clock skew). Keys are an HS256 shared
// secret or public keys (RS256, ES256, EdDSA) from a JWKS file or URL,
// read with keyfunc.
package identity

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
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

// Issuer is one site that signs customer tokens, with exactly one source
// of keys: an HS256 shared secret (inline or from the environment), or the
// public keys of a JWKS document (a file, or a URL that is re-read hourly
// and when a token names an unknown key id) for RS256, ES256 and EdDSA.
type Issuer struct {
	// Issuer is the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience must be in the token's aud claim.
	Audience string `yaml:"audience"`
	// HS256Secret is the shared secret; HS256SecretEnv names an
	// environment variable holding it instead.
	HS256Secret    string `yaml:"hs256_secret"`
	HS256SecretEnv string `yaml:"hs256_secret_env"`
	// JWKSFile is a JSON Web Key Set on disk; JWKSURL is one served over
	// HTTPS (HTTP only for loopback addresses, for tests and local setups).
	JWKSFile string `yaml:"jwks_file"`
	JWKSURL  string `yaml:"jwks_url"`
}

// keySources counts how many key sources is names.
func (is Issuer) keySources() int {
	n := 0
	for _, s := range []string{is.HS256Secret, is.HS256SecretEnv, is.JWKSFile, is.JWKSURL} {
		if s != "" {
			n++
		}
	}
	return n
}

// ParseConfig reads an identity configuration and checks it.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("identity: %w", err)
	}
	seen := map[string]bool{}
	for i, is := range c.Issuers {
		switch {
		case is.Issuer == "" || is.Audience == "":
			return nil, fmt.Errorf("identity: issuer %d needs issuer and audience", i+1)
		case seen[is.Issuer]:
			return nil, fmt.Errorf("identity: issuer %q is listed twice", is.Issuer)
		case is.keySources() != 1:
			return nil, fmt.Errorf("identity: issuer %q needs exactly one of hs256_secret, hs256_secret_env, jwks_file, jwks_url", is.Issuer)
		}
		if is.JWKSURL != "" {
			if err := checkJWKSURL(is.JWKSURL); err != nil {
				return nil, fmt.Errorf("identity: issuer %q: %w", is.Issuer, err)
			}
		}
		seen[is.Issuer] = true
	}
	return &c, nil
}

// checkJWKSURL accepts https URLs, and http ones on loopback addresses.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("jwks_url %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("jwks_url %q must use https (http is allowed on loopback addresses only)", raw)
}

// Claims is a verified customer identity.
type Claims struct {
	Issuer  string
	Subject string
	Name    string
	Email   string
	// Tier is the customer's service tier ("tier" claim), for routing.
	Tier string
	// Expires is when the token stops being accepted: its exp claim plus
	// the Leeway.
	Expires time.Time
}

// tokenClaims are the claims Parley reads from a customer token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  string `json:"name"`
	Email string `json:"email"`
	Tier  string `json:"tier"`
}

// Verifier checks customer tokens.
type Verifier struct {
	keys  map[string]issuerKey
	clock clock.Clock
}

// issuerKey is how one issuer's tokens are checked: which algorithms it
// may use and where their keys come from. Keeping HS256 and public-key
// algorithms apart per issuer rules out key confusion (a public key used
// as an HMAC secret).
type issuerKey struct {
	audience string
	methods  []string
	keyfunc  jwt.Keyfunc
}

// publicKeyMethods are the algorithms a JWKS issuer may sign with.
var publicKeyMethods = []string{
	jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg(),
}

// ErrInvalid is returned for every token that does not verify; callers
// learn nothing about why.
var ErrInvalid = errors.New("identity: the token does not verify")

// NewVerifier returns a verifier of c's issuers, reading secrets from the
// environment and key sets from files where c names them. JWKS URLs are
// fetched now (a failure is logged, and retried when a token needs a key)
// and refreshed in the background until ctx ends.
func NewVerifier(ctx context.Context, c *Config, clk clock.Clock, log *slog.Logger) (*Verifier, error) {
	v := &Verifier{keys: map[string]issuerKey{}, clock: clk}
	for _, is := range c.Issuers {
		key, err := newIssuerKey(ctx, is, log)
		if err != nil {
			return nil, fmt.Errorf("identity: issuer %q: %w", is.Issuer, err)
		}
		v.keys[is.Issuer] = key
	}
	return v, nil
}

func newIssuerKey(ctx context.Context, is Issuer, log *slog.Logger) (issuerKey, error) {
	key := issuerKey{audience: is.Audience, methods: publicKeyMethods}
	switch {
	case is.HS256Secret != "" || is.HS256SecretEnv != "":
		secret := is.HS256Secret
		if is.HS256SecretEnv != "" {
			if secret = os.Getenv(is.HS256SecretEnv); secret == "" {
				return key, fmt.Errorf("environment variable %s is empty", is.HS256SecretEnv)
			}
		}
		if len(secret) < 32 {
			return key, errors.New("the HS256 secret must be at least 32 bytes")
		}
		key.methods = []string{jwt.SigningMethodHS256.Alg()}
		key.keyfunc = func(*jwt.Token) (any, error) { return []byte(secret), nil }
	case is.JWKSFile != "":
		data, err := os.ReadFile(is.JWKSFile)
		if err != nil {
			return key, fmt.Errorf("read jwks_file: %w", err)
		}
		kf, err := keyfunc.NewJWKSetJSON(data)
		if err != nil {
			return key, fmt.Errorf("jwks_file %s: %w", is.JWKSFile, err)
		}
		key.keyfunc = kf.KeyfuncCtx(ctx)
	default:
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{is.JWKSURL}, keyfunc.Override{
			HTTPTimeout: 10 * time.Second,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Warn("could not refresh an issuer's JWKS", "issuer", is.Issuer, "url", u, "error", err)
				}
			},
		})
		if err != nil {
			return key, fmt.Errorf("jwks_url: %w", err)
		}
		key.keyfunc = kf.KeyfuncCtx(ctx)
	}
	return key, nil
}

// LooksLikeJWT tells a JWT from Parley's opaque tokens.
func LooksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2 && strings.HasPrefix(token, "eyJ")
}

// compactJWS reports whether raw is spelled as a compact JWS: three
// base64url segments joined by dots, nothing else. Go's base64 decoding
// skips carriage returns and newlines, so without this a token with one
// inserted would verify as the genuine one: one token, one spelling.
func compactJWS(raw string) bool {
	dots := 0
	for _, c := range raw {
		switch {
		case c == '.':
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// Verify checks raw and returns its identity: signed by a trusted issuer
// with one of the algorithms its keys allow, for that issuer's audience, with exp set and not passed, and a
// subject.
func (v *Verifier) Verify(raw string) (Claims, error) {
	// The unverified issuer only picks the key; the signature and every
	// claim are then checked against that issuer.
	if !compactJWS(raw) {
		return Claims{}, ErrInvalid
	}
	var unverified tokenClaims
	if _, _, err := jwt.NewParser(jwt.WithStrictDecoding()).ParseUnverified(raw, &unverified); err != nil {
		return Claims{}, ErrInvalid
	}
	key, ok := v.keys[unverified.Issuer]
	if !ok {
		return Claims{}, ErrInvalid
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(raw, &claims,
		key.keyfunc,
		jwt.WithValidMethods(key.methods),
		jwt.WithIssuer(unverified.Issuer),
		jwt.WithAudience(key.audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(v.clock.Now),
		// One token, one spelling: lax base64 would accept other strings
		// whose unused bits differ.
		jwt.WithStrictDecoding(),
	)
	if err != nil || claims.Subject == "" {
		return Claims{}, ErrInvalid
	}
	name := claims.Name
	if name == "" {
		name = claims.Subject
	}
	return Claims{
		Issuer: claims.Issuer, Subject: claims.Subject, Name: name, Email: claims.Email, Tier: claims.Tier,
		Expires: claims.ExpiresAt.Add(Leeway),
	}, nil
}
