package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// loopbackOnly guards a server listening on a loopback address against DNS
// rebinding: a web page on a name the attacker controls, resolved to
// 127.0.0.1, would otherwise reach it as its own origin (and, on a demo
// installation, with public tokens). Only this machine can connect to
// such a listener, so every request it answers must name a loopback host
// (localhost, a *.localhost name, 127.0.0.0/8 or ::1); others get 421
// Misdirected Request and nothing of the server. On any other listener it
// returns next: the names a public server answers to are its operator's.
func loopbackOnly(addr net.Addr, next http.Handler) http.Handler {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loopbackHost(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMisdirectedRequest)
		fmt.Fprintf(w, "parleyd listens on a loopback address and answers only requests for localhost, 127.0.0.1 or [::1], not %q "+
			"(a guard against DNS rebinding); to serve other names, listen on another address (-addr)\n", r.Host)
	})
}

// loopbackHost reports whether host (a Host header: a name or an IP, with
// or without a port) names this machine's loopback interface.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}
