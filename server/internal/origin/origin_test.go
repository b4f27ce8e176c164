package origin_test

import (
	"strings"
	"testing"

	"github.com/parleyhq/parley/server/internal/origin"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{
		"https://shop.example.com", "http://localhost:8080", "http://127.0.0.1:3000",
		"https://xn--bcher-kva.example", "https://a-b.example.com:8443", "https://example.com:65535",
	} {
		if err := origin.Check(ok); err != nil {
			t.Errorf("Check(%q) = %v, want nil", ok, err)
		}
	}
	for bad, hint := range map[string]string{
		"https://shop.example.com:443":   "write https://shop.example.com",
		"http://shop.example.com:80":     "write http://shop.example.com",
		"https://shop.example.com:99999": "from 1 to 65535",
		"https://shop.example.com:0":     "from 1 to 65535",
		"https://shop.example.com:08080": "from 1 to 65535",
		"https://shop..example.com":      "is not a host name",
		"https://.example.com":           "is not a host name",
		"https://-shop.example.com":      "is not a host name",
		"https://shop.example.com.":      "write https://shop.example.com",
		"https://shop.example.com.:8443": "write https://shop.example.com:8443",
		"https://Shop.example.com":       "lower case",
		"https://bücher.example":         "punycode",
		"https://shop.example.com/":      "is not an origin",
		"https://shop.example.com/path":  "is not an origin",
		"ftp://shop.example.com":         "is not an origin",
		"https://user@shop.example.com":  "is not an origin",
		"shop.example.com":               "is not an origin",
		"null":                           "is not an origin",
		"http://[::1]:8080":              "IPv6",
	} {
		err := origin.Check(bad)
		if err == nil || !strings.Contains(err.Error(), hint) {
			t.Errorf("Check(%q) = %v, want an error saying %q", bad, err, hint)
		}
	}
}
