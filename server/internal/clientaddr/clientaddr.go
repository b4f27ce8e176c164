// Package clientaddr finds the address a request comes from: the TCP peer,
// or, when the peer is one of the operator's trusted proxies, the
// rightmost untrusted address of X-Forwarded-For (parsed by realclientip).
// Forwarded headers from any other peer are ignored, so a client cannot
// choose its own address by sending them.
package clientaddr

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/realclientip/realclientip-go"
)

// Resolver tells a request's client address.
type Resolver struct {
	trusted []net.IPNet
	header  realclientip.Strategy
}

// NewResolver trusts X-Forwarded-For from peers in trustedProxies (IP
// addresses or CIDR ranges); with none, the TCP peer is always the client.
func NewResolver(trustedProxies []string) (*Resolver, error) {
	ranges, err := realclientip.AddressesAndRangesToIPNets(trustedProxies...)
	if err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	header, err := realclientip.NewRightmostTrustedRangeStrategy("X-Forwarded-For", ranges)
	if err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	return &Resolver{trusted: ranges, header: header}, nil
}

// Address returns r's client address, as a rate-limit key: an IPv4
// address, or the /64 network of an IPv6 address (one subscriber usually
// holds a whole /64, so rotating within it must not reset a limit).
func (res *Resolver) Address(r *http.Request) string {
	peer := realclientip.RemoteAddrStrategy{}.ClientIP(nil, r.RemoteAddr)
	addr := peer
	if res.isTrusted(peer) {
		if forwarded := res.header.ClientIP(r.Header, r.RemoteAddr); forwarded != "" {
			addr = forwarded
		}
	}
	return key(addr)
}

func (res *Resolver) isTrusted(peer string) bool {
	ip := net.ParseIP(peer)
	if ip == nil {
		return false
	}
	for _, n := range res.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// key normalizes an address to what limits count by.
func key(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		prefix, _ := ip.Prefix(64) // cannot fail for an IPv6 address
		return prefix.String()
	}
	return ip.String()
}

type addressKey struct{}

// Middleware stores each request's client address in its context.
func (res *Resolver) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), addressKey{}, res.Address(r))))
	})
}

// FromContext returns the client address Middleware stored, or "".
func FromContext(ctx context.Context) string {
	a, _ := ctx.Value(addressKey{}).(string)
	return a
}
