package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLoopbackListenerRefusesOtherHosts: a server on a loopback address
// answers requests for loopback names only, so a DNS-rebinding page (its
// own name resolved to 127.0.0.1) cannot reach it; a server on another
// address answers every name.
func TestLoopbackListenerRefusesOtherHosts(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "served") })
	loopback := loopbackOnly(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, ok)
	for host, want := range map[string]int{
		"localhost:8080":             http.StatusOK,
		"LOCALHOST.:8080":            http.StatusOK,
		"app.localhost:8080":         http.StatusOK,
		"127.0.0.1:8080":             http.StatusOK,
		"127.8.9.10":                 http.StatusOK,
		"[::1]:8080":                 http.StatusOK,
		"[::1]":                      http.StatusOK,
		"rebind.attacker.example":    http.StatusMisdirectedRequest,
		"localhost.attacker.example": http.StatusMisdirectedRequest,
		"10.0.0.5:8080":              http.StatusMisdirectedRequest,
		"":                           http.StatusMisdirectedRequest,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		loopback.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
		if w.Code != http.StatusOK && (strings.Contains(w.Body.String(), "served") || !strings.Contains(w.Body.String(), "DNS rebinding")) {
			t.Errorf("Host %q: refused with %q", host, w.Body.String())
		}
	}
	public := loopbackOnly(&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, ok)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Host = "chat.example.com"
	w := httptest.NewRecorder()
	public.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("a server on every address refused Host chat.example.com: %d", w.Code)
	}
}
