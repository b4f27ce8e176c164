package main

import (
	"strings"
	"testing"
)

// TestFlagsRefuseWhatCannotWork: flags that could never take effect are
// refused at start with what to write instead.
func TestFlagsRefuseWhatCannotWork(t *testing.T) {
	for args, want := range map[string]string{
		"-allowed-origins https://portal.example.com,https://console.example.com:443": `-allowed-origins: "https://console.example.com:443": browsers send the default port as no port at all; write https://console.example.com`,
		"-allowed-origins https://portal.example.com/":                                `-allowed-origins: "https://portal.example.com/" is not an origin`,
		"-tls-cert cert.pem": "-tls-cert and -tls-key go together",
		"-send-rate 0":       "must be positive",
		"-pg-max-conns -1":   "must be positive",
	} {
		_, err := parseFlags(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseFlags(%s) = %v, want an error containing %q", args, err, want)
		}
	}
	if _, err := parseFlags([]string{"-allowed-origins", "https://portal.example.com, http://localhost:3000"}); err != nil {
		t.Errorf("valid origins refused: %v", err)
	}
}
