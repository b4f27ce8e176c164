// Package origin checks browser origins as an admin writes them for a
// site or a flag. Parley compares origins as exact strings, as browsers
// serialize them (the Origin header, location.origin), so an origin that
// no browser ever sends would be accepted and then never match.
package origin

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Check returns nil if s is an http(s) origin in the one spelling browsers
// send: lower case, punycode host, no default port, no trailing dot, no
// path. Otherwise its error says what to write instead, where it can.
func Check(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		s != u.Scheme+"://"+u.Host {
		return fmt.Errorf("%q is not an origin: write the scheme (http or https), the host and any port, as in https://shop.example.com", s)
	}
	host, port := u.Hostname(), u.Port()
	if strings.Contains(u.Host, "[") {
		return fmt.Errorf("%q: IPv6 addresses are not supported as origins; use a host name", s)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
		}
		if u.Scheme == "https" && n == 443 || u.Scheme == "http" && n == 80 {
			return fmt.Errorf("%q: browsers send the default port as no port at all; write %s://%s", s, u.Scheme, host)
		}
	}
	if strings.HasSuffix(host, ".") {
		fixed := strings.TrimSuffix(host, ".")
		if port != "" {
			fixed += ":" + port
		}
		return fmt.Errorf("%q: browsers send the host without its trailing dot; write %s://%s", s, u.Scheme, fixed)
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q: %q is not a host name (each part between dots has 1 to 63 letters, digits or hyphens, and starts and ends with a letter or digit)", s, host)
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("%q: write the host in lower case, and a non-ASCII name in its punycode form (xn--...)", s)
			}
		}
	}
	return nil
}
