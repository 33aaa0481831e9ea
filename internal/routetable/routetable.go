// Package routetable maps an HTTP method and URL path to a value, with the
// most specific rule winning regardless of the order rules were added.
//
// A pattern starts with "/" and is split on "/" into segments. Each segment
// is a literal, {name} for exactly one non-empty path segment, or, only as
// the whole last segment, "*" for the rest of the path: "/x/*" matches "/x/"
// and everything below it, but not "/x". Empty segments are literals, so
// "/v1/apps/" and "/v1/apps" are different patterns.
//
// Precedence: patterns are compared segment by segment from the left, a
// literal beats {param}, which beats "*"; on equal patterns a named method
// beats "*". Only rules matching both the path and the method compete. A rule
// for GET also matches HEAD unless the same pattern has a rule for HEAD.
package routetable

import (
	"fmt"
	"net/url"
	"strings"
)

// Table maps request methods and paths to values. Build it with Add, then
// Match concurrently (read-only after building). The zero value is an empty
// table ready to use.
type Table[V any] struct {
	root  *node[V]
	rules int
}

// node is one position in the pattern trie. Patterns with the same shape end
// at the same node, which is what makes conflict detection and equal-pattern
// method precedence local to a node.
type node[V any] struct {
	lit   map[string]*node[V] // literal segment -> child
	param *node[V]            // {name} child; names do not affect matching
	end   *ruleSet[V]         // rules whose pattern ends here
	wild  *ruleSet[V]         // rules whose pattern ends here with "/*"
}

// ruleSet holds the rules of one pattern shape, by method.
type ruleSet[V any] struct {
	named map[string]*entry[V]
	any   *entry[V] // rule for "*", if any
}

type entry[V any] struct {
	v       V
	pattern string // as given to Add, for conflict errors
}

type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segWild
)

type segment struct {
	kind segKind
	lit  string // literal text, or the parameter name
}

// Len reports the number of rules added, that is, successful calls to Add.
func (t *Table[V]) Len() int { return t.rules }

// Add adds a rule matching pattern for the given methods. Each method is an
// HTTP method token (case-insensitive, stored uppercased) or "*" for any
// method; an empty slice means "*". Add fails, leaving the table unchanged,
// if the pattern or a method is malformed, or if a rule with the same
// pattern shape (same literals, parameters in the same positions whatever
// their names, same final "*") already covers one of the methods.
func (t *Table[V]) Add(methods []string, pattern string, v V) error {
	segs, err := parsePattern(pattern)
	if err != nil {
		return err
	}
	ms, err := parseMethods(pattern, methods)
	if err != nil {
		return err
	}

	if t.root == nil {
		t.root = &node[V]{}
	}
	n := t.root
	for _, s := range segs {
		n = n.child(s)
	}
	// Check every method before inserting any, so a failed Add changes
	// nothing observable: nodes and rule sets without rules match nothing.
	rsp := &n.end
	if len(segs) > 0 && segs[len(segs)-1].kind == segWild {
		rsp = &n.wild
	}
	if *rsp == nil {
		*rsp = &ruleSet[V]{named: map[string]*entry[V]{}}
	}
	rs := *rsp
	for _, m := range ms {
		if old := rs.get(m); old != nil {
			return fmt.Errorf("pattern %q: method %s conflicts with existing rule %q", pattern, m, m+" "+old.pattern)
		}
	}
	e := &entry[V]{v: v, pattern: pattern}
	for _, m := range ms {
		if m == "*" {
			rs.any = e
		} else {
			rs.named[m] = e
		}
	}
	t.rules++
	return nil
}

// child returns the child of n for s, creating it if needed. A wildcard
// segment stays at n: its rules live in n.wild.
func (n *node[V]) child(s segment) *node[V] {
	switch s.kind {
	case segParam:
		if n.param == nil {
			n.param = &node[V]{}
		}
		return n.param
	case segLiteral:
		c := n.lit[s.lit]
		if c == nil {
			if n.lit == nil {
				n.lit = map[string]*node[V]{}
			}
			c = &node[V]{}
			n.lit[s.lit] = c
		}
		return c
	}
	return n
}

// get returns the rule registered for exactly method m ("*" included).
func (rs *ruleSet[V]) get(m string) *entry[V] {
	if m == "*" {
		return rs.any
	}
	return rs.named[m]
}

// lookup returns the rule of rs that applies to a request method: the named
// rule, else GET for HEAD (net/http.ServeMux behaviour), else "*".
func (rs *ruleSet[V]) lookup(method string) *entry[V] {
	if rs == nil {
		return nil
	}
	if e := rs.named[method]; e != nil {
		return e
	}
	if method == "HEAD" {
		if e := rs.named["GET"]; e != nil {
			return e
		}
	}
	return rs.any
}

// Match returns the value of the most specific rule matching the request
// method (compared case-sensitively, as HTTP methods are) and path (the
// decoded path, as in net/url.URL.Path). A path not starting with "/", such
// as "*" in "OPTIONS *", matches nothing. Match does not allocate, and its
// cost depends on the path and the trie depth, not on the number of rules.
func (t *Table[V]) Match(method, path string) (v V, ok bool) {
	if t.root == nil || len(path) == 0 || path[0] != '/' {
		return v, false
	}
	if e := t.root.match(method, path, 1, false); e != nil {
		return e.v, true
	}
	return v, false
}

// MatchEscaped is Match on an escaped path (as in net/url.URL.EscapedPath):
// the path is split into segments first and each segment decoded after, so
// an encoded slash stays inside its segment, as Go's http.ServeMux and
// Express read it. A segment such as "a%2Fb" matches a {param}, and a
// literal only if the literal equals the decoded segment ("a/b", which no
// literal is); "%61pps" matches the literal "apps". Segments holding no
// "%" cost no allocation.
func (t *Table[V]) MatchEscaped(method, path string) (v V, ok bool) {
	if t.root == nil || len(path) == 0 || path[0] != '/' {
		return v, false
	}
	if e := t.root.match(method, path, 1, true); e != nil {
		return e.v, true
	}
	return v, false
}

// match finds the best rule below n for path[i:], where i is the start of
// the next segment, or len(path)+1 once all segments are consumed. Trying
// literal, then param, then wildcard and returning the first hit yields the
// most specific pattern; backtracking happens when a more specific subtree
// has no rule for the method.
//
// With escaped set, path is escaped and a segment is decoded before it is
// compared with literals; one that does not decode matches no literal.
func (n *node[V]) match(method, path string, i int, escaped bool) *entry[V] {
	if i > len(path) {
		return n.end.lookup(method)
	}
	seg, next := path[i:], len(path)+1
	if j := strings.IndexByte(seg, '/'); j >= 0 {
		seg, next = seg[:j], i+j+1
	}
	lit, litOK := seg, true
	if escaped && strings.IndexByte(seg, '%') >= 0 && len(n.lit) > 0 {
		var err error
		lit, err = url.PathUnescape(seg)
		litOK = err == nil
	}
	if c := n.lit[lit]; litOK && c != nil {
		if e := c.match(method, path, next, escaped); e != nil {
			return e
		}
	}
	if n.param != nil && seg != "" {
		if e := n.param.match(method, path, next, escaped); e != nil {
			return e
		}
	}
	// At least one segment (possibly empty) remains, so "*" applies.
	return n.wild.lookup(method)
}

// ValidatePattern reports whether pattern is well-formed, with the same
// error Add would give.
func ValidatePattern(pattern string) error {
	_, err := parsePattern(pattern)
	return err
}

func parsePattern(pattern string) ([]segment, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, fmt.Errorf("pattern %q: must start with \"/\"", pattern)
	}
	parts := strings.Split(pattern[1:], "/")
	segs := make([]segment, 0, len(parts))
	for i, p := range parts {
		switch {
		case p == "*":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("pattern %q: \"*\" is only allowed as the whole last segment", pattern)
			}
			segs = append(segs, segment{kind: segWild})
		case strings.Contains(p, "*"):
			return nil, fmt.Errorf("pattern %q: segment %q: \"*\" is only allowed as the whole last segment", pattern, p)
		case strings.HasPrefix(p, "{") && !strings.Contains(p, "}"):
			return nil, fmt.Errorf("pattern %q: segment %q: unclosed \"{\"", pattern, p)
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			if err := checkParamName(pattern, name); err != nil {
				return nil, err
			}
			for _, s := range segs {
				if s.kind == segParam && s.lit == name {
					return nil, fmt.Errorf("pattern %q: duplicate parameter name %q", pattern, name)
				}
			}
			segs = append(segs, segment{kind: segParam, lit: name})
		case strings.ContainsAny(p, "{}"):
			return nil, fmt.Errorf("pattern %q: segment %q: \"{\" and \"}\" are only allowed around a whole segment, as in {id}", pattern, p)
		default:
			segs = append(segs, segment{kind: segLiteral, lit: p})
		}
	}
	return segs, nil
}

func checkParamName(pattern, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("pattern %q: empty parameter name {}", pattern)
	case strings.Contains(name, "."):
		// The Caddyfile adapter rewrites shorthands such as {path} into
		// {http.request.uri.path} before the plugin sees the pattern.
		return fmt.Errorf("pattern %q: path parameter {%s} looks like a Caddy placeholder; Caddyfile shorthands such as {path} cannot be used as parameter names, pick another name", pattern, name)
	case !validName(name):
		return fmt.Errorf("pattern %q: parameter name %q: must match [A-Za-z_][A-Za-z0-9_]*", pattern, name)
	case caddyShorthands[name]:
		return fmt.Errorf("pattern %q: parameter name %q is a Caddyfile placeholder shorthand ({%s}); pick another name", pattern, name, name)
	}
	return nil
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// caddyShorthands are the simple placeholder shorthands the Caddyfile
// adapter rewrites (placeholderShorthands in Caddy v2.11.9's
// caddyconfig/httpcaddyfile/shorthands.go), limited to those that are valid
// parameter names. In a Caddyfile they would never reach us intact; in JSON
// config they would, but are rejected too so a pattern means the same in
// both.
var caddyShorthands = map[string]bool{
	"host": true, "hostport": true, "port": true,
	"orig_method": true, "orig_uri": true, "orig_path": true, "orig_dir": true, "orig_file": true, "orig_query": true,
	"method": true, "uri": true, "path": true, "dir": true, "file": true, "query": true,
	"remote": true, "remote_host": true, "remote_port": true,
	"scheme": true, "uuid": true,
	"tls_cipher": true, "tls_version": true,
	"tls_client_fingerprint": true, "tls_client_issuer": true, "tls_client_serial": true, "tls_client_subject": true,
	"tls_client_certificate_pem": true, "tls_client_certificate_der_base64": true,
	"upstream_hostport": true, "client_ip": true,
}

// parseMethods uppercases and deduplicates methods; empty means "*".
func parseMethods(pattern string, methods []string) ([]string, error) {
	if len(methods) == 0 {
		return []string{"*"}, nil
	}
	out := make([]string, 0, len(methods))
	for _, m := range methods {
		if m == "" {
			return nil, fmt.Errorf("pattern %q: empty method", pattern)
		}
		for i := 0; i < len(m); i++ {
			if !isTchar(m[i]) {
				return nil, fmt.Errorf("pattern %q: method %q: invalid character %q (want an HTTP method token or \"*\")", pattern, m, m[i])
			}
		}
		m = strings.ToUpper(m)
		dup := false
		for _, o := range out {
			dup = dup || o == m
		}
		if !dup {
			out = append(out, m)
		}
	}
	return out, nil
}

// isTchar reports whether c may appear in an RFC 7230 token.
func isTchar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
