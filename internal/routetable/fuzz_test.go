package routetable

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Fuzzing the scope table: rules and requests come from the fuzzer; Add's
// verdicts are checked against a grammar written here from the package
// documentation and DESIGN.md, and Match against the reference matcher of
// routetable_test.go (refMatch), on the fuzzer's request and on paths
// derived from every accepted pattern.

// fuzzParamName is the documented parameter name grammar.
var fuzzParamName = regexp.MustCompile(`^\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// fuzzShorthands are the simple placeholder shorthands of Caddy v2.11.9's
// Caddyfile adapter (caddyconfig/httpcaddyfile/shorthands.go) whose names
// would otherwise be valid parameter names.
var fuzzShorthands = strings.Fields(`host hostport port orig_method orig_uri orig_path orig_dir
	orig_file orig_query method uri path dir file query remote remote_host remote_port
	scheme uuid tls_cipher tls_version tls_client_fingerprint tls_client_issuer
	tls_client_serial tls_client_subject tls_client_certificate_pem
	tls_client_certificate_der_base64 upstream_hostport client_ip`)

// fuzzParsePattern parses a pattern by the documented rules: it starts
// with "/"; "*" only as the whole last segment; {name} a whole segment
// with a valid, non-shorthand, unique name; other segments are literals
// holding none of "*{}".
func fuzzParsePattern(pattern string) ([]refSeg, bool) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, false
	}
	parts := strings.Split(pattern[1:], "/")
	var segs []refSeg
	names := map[string]bool{}
	for i, p := range parts {
		switch m := fuzzParamName.FindStringSubmatch(p); {
		case p == "*":
			if i != len(parts)-1 {
				return nil, false
			}
			segs = append(segs, refSeg{kind: segWild})
		case m != nil:
			for _, s := range fuzzShorthands {
				if m[1] == s {
					return nil, false
				}
			}
			if names[m[1]] {
				return nil, false
			}
			names[m[1]] = true
			segs = append(segs, refSeg{kind: segParam}) // names don't matter for matching
		case strings.ContainsAny(p, "*{}"):
			return nil, false
		default:
			segs = append(segs, refSeg{kind: segLiteral, lit: p})
		}
	}
	return segs, true
}

// fuzzParseMethods parses methods as documented: HTTP method tokens
// (case-insensitive) or "*"; none means "*".
func fuzzParseMethods(methods []string) (map[string]bool, bool) {
	set := map[string]bool{}
	if len(methods) == 0 {
		set["*"] = true
		return set, true
	}
	for _, m := range methods {
		if m == "" {
			return nil, false
		}
		for _, c := range []byte(m) {
			tchar := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
			if !tchar {
				return nil, false
			}
		}
		set[strings.ToUpper(m)] = true
	}
	return set, true
}

// fuzzRules parses the fuzzer's rule text: one rule per line,
// "<methods> <pattern>", methods comma-separated, empty for none.
func fuzzRules(text string) []rule {
	var rules []rule
	for i, line := range strings.Split(text, "\n") {
		if i == 32 {
			break
		}
		methods, pattern, _ := strings.Cut(line, " ")
		r := rule{pattern: pattern}
		if methods != "" {
			r.methods = strings.Split(methods, ",")
		}
		rules = append(rules, r)
	}
	return rules
}

// fuzzPaths returns request paths derived from a pattern: its parameters
// and wildcard filled in several ways, its parent, and the pattern itself.
func fuzzPaths(pattern string) []string {
	fill := func(param, wild string) string {
		parts := strings.Split(pattern, "/")
		for i, p := range parts {
			switch {
			case i > 0 && p == "*" && i == len(parts)-1:
				parts[i] = wild
			case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
				parts[i] = param
			}
		}
		return strings.Join(parts, "/")
	}
	paths := []string{pattern, pattern + "/", fill("v", ""), fill("v", "w"), fill("v", "w/x"), fill("", ""), fill("v/w", "")}
	if i := strings.LastIndexByte(pattern, '/'); i >= 0 {
		paths = append(paths, pattern[:i], pattern[:i+1])
	}
	return paths
}

// FuzzRouteTable builds a table from the fuzzer's rules (and the same
// accepted rules in reverse order), checks every Add verdict and Len, and
// checks Match on the fuzzer's request and derived paths against the
// reference matcher: literal beats {param} beats "*" segment by segment
// from the left; a named method beats "*"; GET covers HEAD unless the same
// pattern has a HEAD rule; "/x/*" matches "/x/" and below, not "/x";
// {param} matches one non-empty segment.
func FuzzRouteTable(f *testing.F) {
	f.Add("GET /v1/apps\nGET /v1/apps/{app}\nPOST /v1/apps/{app}/runs\n* /v1/secrets/*\nGET /healthz", "GET", "/v1/apps/x")
	f.Add("GET /x/*\n /x\nPOST /x/{id}", "HEAD", "/x/")
	f.Add("GET /a/{b}/c\n /a/b/*\nGET,HEAD /a/{b}/{c}", "HEAD", "/a/b/c")
	f.Add("GET /a\nHEAD /a\n* /a\nget /a", "HEAD", "/a")
	f.Add("GET /{a}/{a}\nGET /{path}\nGET /a*\nGET /*/a\nGET a\nGET /{a\nG\tET /x\n,GET /y", "GET", "/x")
	f.Add("* /\n /*\nGET //\nGET /{x}/", "GET", "//")
	f.Add("GET /v1/apps/\nGET /v1/apps\nGET /v1/{x}/\nDELETE /v1/*", "DELETE", "/v1/apps/")
	f.Add("GET /{p0_1}/a\nPOST /a/{p1_0}\n* /{p0_0}/*", "POST", "/a/a")
	f.Add("M-SEARCH /a/{x}\n*,GET /a/{y}\nGET /a/b", "m-search", "/a/%2F")
	f.Add("GET /é/{ü}\nGET /é/*", "GET", "/é/ü")
	f.Fuzz(func(t *testing.T, rulesText, method, path string) {
		var tb Table[int]
		var accepted []*refRule
		paths := []string{path, "", "*", "/"}
		for id, r := range fuzzRules(rulesText) {
			segs, pok := fuzzParsePattern(r.pattern)
			ms, mok := fuzzParseMethods(r.methods)
			if err := ValidatePattern(r.pattern); (err == nil) != pok {
				t.Fatalf("ValidatePattern(%q) = %v, documented grammar says valid=%v", r.pattern, err, pok)
			}
			var rr *refRule
			want := pok && mok
			if want {
				rr = &refRule{id: id, segs: segs, methods: ms, rule: r}
				want = !refConflict(accepted, rr)
			}
			err := tb.Add(r.methods, r.pattern, id)
			if (err == nil) != want {
				t.Fatalf("Add(%v) = %v, reference says accepted=%v (pattern ok %v, methods ok %v)", r, err, want, pok, mok)
			}
			if err != nil && err.Error() == "" {
				t.Fatalf("Add(%v): empty error", r)
			}
			if err == nil {
				accepted = append(accepted, rr)
				paths = append(paths, fuzzPaths(r.pattern)...)
			}
		}
		if tb.Len() != len(accepted) {
			t.Fatalf("Len() = %d, want %d", tb.Len(), len(accepted))
		}
		var rev Table[int]
		for i := len(accepted) - 1; i >= 0; i-- {
			if err := rev.Add(accepted[i].rule.methods, accepted[i].rule.pattern, accepted[i].id); err != nil {
				t.Fatalf("reversed Add(%v) = %v", accepted[i].rule, err)
			}
		}
		methods := []string{method, "GET", "HEAD", "POST", "get", "*"}
		for _, p := range paths {
			for _, m := range methods {
				want, wok := refMatch(t, accepted, m, p)
				got, gok := tb.Match(m, p)
				rgot, rgok := rev.Match(m, p)
				if got != want || gok != wok || rgot != want || rgok != wok {
					var desc []string
					for _, r := range accepted {
						desc = append(desc, "  "+r.rule.String())
					}
					t.Fatalf("Match(%q, %q) = %d, %v (reversed %d, %v); reference %d, %v\nrules:\n%s",
						m, p, got, gok, rgot, rgok, want, wok, strings.Join(desc, "\n"))
				}
				// The same path with every segment escaped matches alike
				// when read escaped.
				if egot, eok := tb.MatchEscaped(m, escapeSegments(p)); egot != want || eok != wok {
					t.Fatalf("MatchEscaped(%q, %q) = %d, %v; Match on %q gives %d, %v", m, escapeSegments(p), egot, eok, p, want, wok)
				}
			}
		}
	})
}

// escapeSegments percent-encodes each "/"-separated segment of p.
func escapeSegments(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
