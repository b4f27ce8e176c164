package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parleyd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// With -tls-cert and -tls-key, parleyd serves TLS and negotiates HTTP/2
// (what browsers need to multiplex streams) for Connect and gRPC alike, and
// no longer answers cleartext.
func TestTLSServesHTTP2(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, pool := selfSigned(t, dir)
	d := startDaemon(t, filepath.Join(dir, "parley.db"), "-tls-cert", certPath, "-tls-key", keyPath)
	if !strings.HasPrefix(d.url, "https://") {
		t.Fatalf("parleyd greeted with %s, want https", d.url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url+"/parley.v1.SessionService/GetPreChatForm", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS == nil {
		t.Fatalf("status %d over %s (TLS %v), want 200 over HTTP/2 with TLS", resp.StatusCode, resp.Proto, resp.TLS != nil)
	}
	for _, protocol := range []parley.Protocol{parley.Connect, parley.GRPC, parley.GRPCWeb} {
		c := parley.New(d.url, parley.WithProtocol(protocol), parley.WithHTTPClient(hc))
		form, err := c.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
		if err != nil || len(form.GetIssueTypes()) == 0 {
			t.Fatalf("%v over TLS: %v, %v", protocol, form, err)
		}
	}
	plain := parley.New(strings.Replace(d.url, "https://", "http://", 1))
	if _, err := plain.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{}); err == nil {
		t.Fatal("the TLS port answered cleartext")
	}
}

// A certificate without its key (or a key that does not load) stops
// parleyd at once with a message naming the flags.
func TestTLSFlagsChecked(t *testing.T) {
	dir := t.TempDir()
	certPath, _, _ := selfSigned(t, dir)
	for name, flags := range map[string][]string{
		"cert only":   {"-tls-cert", certPath},
		"missing key": {"-tls-cert", certPath, "-tls-key", filepath.Join(dir, "absent.pem")},
	} {
		out, err := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-db", filepath.Join(dir, name+".db")}, flags...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "-tls-") {
			t.Errorf("%s: err %v, output %q; want a refusal naming the TLS flags", name, err, out)
		}
	}
}
