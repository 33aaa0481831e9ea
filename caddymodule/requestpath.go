package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/net/http/httpguts"
)

// The rule of this file: a request is authorized on one reading of its
// method and path, and goes upstream as exactly that reading. Spellings that
// readers disagree on are refused rather than guessed at: an upstream such
// as Go's ServeMux or Express routes on the escaped path (a%2Fb is one
// segment) while a decoded path has two; Servlet containers drop ";params";
// C code stops at NUL; a second decoding turns %252F into a slash; Werkzeug
// and Django run the POST view for "post".

// pathFault says why a request path is refused; pathOK means it is not.
type pathFault uint8

const (
	pathOK pathFault = iota
	// pathEncodedSlash: %2F, one segment for the upstream, two once decoded.
	pathEncodedSlash
	// pathBackslash: \ or %5C, a separator for some servers.
	pathBackslash
	// pathParameter: ; or %3B, path parameters that Servlet containers drop.
	pathParameter
	// pathControl: an encoded control byte (%00-%1F, %7F); NUL ends a C string.
	pathControl
	// pathDoubleEncoded: %25 and two hex digits, another %XX once decoded.
	pathDoubleEncoded
	// pathMalformed: not valid percent-encoding after cleaning (not expected
	// from net/http's parser; refused rather than guessed at).
	pathMalformed
	numPathFaults
)

// pathFaultMessages are the 400 messages, by fault.
var pathFaultMessages = [numPathFaults]string{
	pathEncodedSlash:  "the request path must not contain an encoded slash (%2F)",
	pathBackslash:     "the request path must not contain a backslash, raw or encoded (%5C)",
	pathParameter:     "the request path must not contain a semicolon (path parameters), raw or encoded (%3B)",
	pathControl:       "the request path must not contain control characters such as %00",
	pathDoubleEncoded: "the request path must not be percent-encoded twice (such as %252F)",
	pathMalformed:     "the request path is not valid percent-encoding",
}

// canonical makes the method and path of r canonical, in place, and
// returns the path to match (see canonicalPath), or the 400 answer.
// allowEncodedSlash is the handler's allow_encoded_slash.
func (a *requestAnswers) canonical(r *http.Request, allowEncodedSlash bool) (path string, escaped bool, bad *denial) {
	method, ok := canonicalMethod(r.Method)
	if !ok {
		return "", false, a.badMethod
	}
	r.Method = method
	path, escaped, fault := canonicalPath(r, allowEncodedSlash)
	if fault != pathOK {
		return "", false, a.badPath[fault]
	}
	return path, escaped, nil
}

// canonicalMethod returns the method with a-z in upper case, as the
// table's rules are: "post" is authorized, and forwarded, as POST. It
// reports false for a method that is not an HTTP token: HTTP/1 parsing
// refuses those, but HTTP/2 and HTTP/3 pass :method on unchecked, and a
// Unicode-aware upstream would read "poſt" (long s) as POST. Methods
// already in upper case (all ordinary ones) cost no allocation.
func canonicalMethod(m string) (string, bool) {
	if !httpguts.ValidHeaderFieldName(m) { // a non-empty token
		return "", false
	}
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			b := []byte(m)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b), true
		}
	}
	return m, true
}

// canonicalPath checks the request's path (see pathFaultOf), resolves "."
// and ".." segments and merges repeated slashes, and makes the result the
// path the request goes on with: what was authorized is what goes upstream.
// Otherwise /v1/apps/../secrets/x would be matched as an apps route and reach
// the secrets upstream.
//
// It returns the path to match: decoded, or escaped (escaped true) when
// allowEncodedSlash is set and the path holds an encoded slash, in which
// case segments must be split before decoding (routetable.MatchEscaped).
// Dot segments are resolved on the escaped path, so "..%2F" is no dot
// segment, as it is none for the upstream. Paths already canonical cost no
// allocation.
func canonicalPath(r *http.Request, allowEncodedSlash bool) (path string, escaped bool, fault pathFault) {
	u := r.URL
	fault, unclean := scanPath(u.Path, u.RawPath, allowEncodedSlash)
	if fault != pathOK {
		return "", false, fault
	}
	escaped = allowEncodedSlash && hasEncodedSlash(u.RawPath)
	if !escaped && !unclean {
		return u.Path, false, pathOK
	}
	// EscapedPath is RawPath when it is an encoding of Path (what an
	// upstream is sent), else Path re-encoded.
	esc := u.EscapedPath()
	escaped = escaped && hasEncodedSlash(esc)
	clean := cleanEscapedPath(esc)
	if clean != esc {
		decoded, err := url.PathUnescape(clean)
		if err != nil {
			return "", false, pathMalformed
		}
		u.Path, u.RawPath = decoded, clean
	}
	if escaped {
		return clean, true, pathOK
	}
	return u.Path, false, pathOK
}

// scanPath reports what in a request path could be read differently by the
// scope table and an upstream, and whether the path has "//" or "/." (so
// may need cleaning). path is the decoded path (URL.Path), rawPath the path
// as sent when it differs from Path's default encoding (URL.RawPath, often
// empty). Looking at the decoded path catches a byte however it was sent: a
// backslash raw or as %5C, NUL as %00, and a "%" followed by two hex
// digits, which only %25 decodes to.
func scanPath(path, rawPath string, allowEncodedSlash bool) (fault pathFault, unclean bool) {
	for i := 0; i < len(path); i++ {
		c := path[i]
		if !suspectPathByte[c] { // one load per byte for most bytes
			continue
		}
		switch {
		case c == '/':
			unclean = unclean || i+1 < len(path) && (path[i+1] == '/' || path[i+1] == '.')
		case c < 0x20 || c == 0x7f:
			return pathControl, false
		case c == '\\':
			return pathBackslash, false
		case c == ';':
			return pathParameter, false
		case c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]):
			return pathDoubleEncoded, false
		}
	}
	if !allowEncodedSlash && hasEncodedSlash(rawPath) {
		return pathEncodedSlash, false
	}
	return pathOK, unclean
}

// suspectPathByte marks the bytes scanPath looks at twice.
var suspectPathByte = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t[0x7f], t['\\'], t[';'], t['%'], t['/'] = true, true, true, true, true
	return t
}()

// hasEncodedSlash reports whether an escaped path holds %2F or %2f.
func hasEncodedSlash(esc string) bool {
	for i := strings.IndexByte(esc, '%'); i >= 0 && i+2 < len(esc); {
		if esc[i+1] == '2' && (esc[i+2] == 'F' || esc[i+2] == 'f') {
			return true
		}
		j := strings.IndexByte(esc[i+1:], '%')
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

// dotDecoder decodes encoded dots, which are unreserved characters: %2E and
// "." are the same path (RFC 3986, section 2.3), and decoding them lets
// dot segments be found on the escaped path.
var dotDecoder = strings.NewReplacer("%2e", ".", "%2E", ".")

// cleanEscapedPath resolves dot segments and merges repeated slashes of an
// escaped path, keeping a trailing slash, as caddyhttp.CleanPath does for a
// decoded one. Other escapes are kept as sent.
func cleanEscapedPath(esc string) string {
	if strings.Contains(esc, "%2e") || strings.Contains(esc, "%2E") {
		esc = dotDecoder.Replace(esc)
	}
	return caddyhttp.CleanPath(esc, true)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
