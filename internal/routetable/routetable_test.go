package routetable

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// rule is one Add call in a test: methods, pattern, and the value stored
// (tests store the rule's own "METHODS pattern" text or index).
type rule struct {
	methods []string
	pattern string
}

func (r rule) String() string {
	m := "*"
	if len(r.methods) > 0 {
		m = strings.Join(r.methods, ",")
	}
	return m + " " + r.pattern
}

// build adds rules in order, storing each rule's String as its value.
func build(t testing.TB, rules []rule) *Table[string] {
	t.Helper()
	var tb Table[string]
	for _, r := range rules {
		if err := tb.Add(r.methods, r.pattern, r.String()); err != nil {
			t.Fatalf("Add(%v): %v", r, err)
		}
	}
	return &tb
}

func m(methods ...string) []string { return methods }

func TestPatternErrors(t *testing.T) {
	tests := []struct {
		methods []string
		pattern string
		want    string // substring of the error
	}{
		{nil, "", `must start with "/"`},
		{nil, "v1/apps", `must start with "/"`},
		{nil, "*", `must start with "/"`},
		{nil, "{id}", `must start with "/"`},
		{nil, "/*/x", `"*" is only allowed as the whole last segment`},
		{nil, "/a/*/", `"*" is only allowed as the whole last segment`},
		{nil, "/a*", `segment "a*": "*" is only allowed`},
		{nil, "/a/*b", `segment "*b": "*" is only allowed`},
		{nil, "/a/**", `segment "**": "*" is only allowed`},
		{nil, "/a/{*}", `segment "{*}": "*" is only allowed`},
		{nil, "/a/{id", `segment "{id": unclosed "{"`},
		{nil, "/{", `segment "{": unclosed "{"`},
		{nil, "/a/{id}x", `segment "{id}x": "{" and "}" are only allowed around a whole segment`},
		{nil, "/a/x{id}", `segment "x{id}": "{" and "}"`},
		{nil, "/a/id}", `segment "id}": "{" and "}"`},
		{nil, "/a/{}", `empty parameter name {}`},
		{nil, "/a/{1id}", `parameter name "1id": must match [A-Za-z_][A-Za-z0-9_]*`},
		{nil, "/a/{app-id}", `parameter name "app-id": must match`},
		{nil, "/a/{a b}", `parameter name "a b": must match`},
		{nil, "/a/{a{b}", `parameter name "a{b": must match`},
		{nil, "/a/{x}/{x}", `duplicate parameter name "x"`},
		{nil, "/v1/{path}", `parameter name "path" is a Caddyfile placeholder shorthand ({path}); pick another name`},
		{nil, "/v1/{host}", `parameter name "host" is a Caddyfile placeholder shorthand`},
		{nil, "/v1/{client_ip}", `parameter name "client_ip" is a Caddyfile placeholder shorthand`},
		{nil, "/v1/{tls_client_certificate_der_base64}", `shorthand`},
		{nil, "/v1/{orig_query}", `shorthand`},
		{nil, "/v1/{http.request.uri.path}", `path parameter {http.request.uri.path} looks like a Caddy placeholder; Caddyfile shorthands such as {path} cannot be used as parameter names, pick another name`},
		{nil, "/v1/{http.request.uri.path.0}/x", `looks like a Caddy placeholder`},
		{nil, "/v1/{a.b}", `looks like a Caddy placeholder`},
		{m(""), "/a", `empty method`},
		{m("GET", ""), "/a", `empty method`},
		{m("GE T"), "/a", `method "GE T": invalid character ' '`},
		{m("GET,POST"), "/a", `method "GET,POST": invalid character ','`},
		{m("GÉT"), "/a", `method "GÉT": invalid character`},
		{m("GET/"), "/a", `invalid character '/'`},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			var tb Table[int]
			err := tb.Add(tt.methods, tt.pattern, 1)
			if err == nil {
				t.Fatalf("Add(%q, %q) succeeded, want error containing %q", tt.methods, tt.pattern, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Add(%q, %q) = %q, want it to contain %q", tt.methods, tt.pattern, msg, tt.want)
			}
			if !strings.HasPrefix(msg, fmt.Sprintf("pattern %q: ", tt.pattern)) {
				t.Errorf("error %q does not start with the pattern", msg)
			}
			if r := []rune(msg)[0]; unicode.IsUpper(r) {
				t.Errorf("error %q starts with an uppercase letter", msg)
			}
			if tb.Len() != 0 {
				t.Errorf("Len() = %d after failed Add, want 0", tb.Len())
			}
			if tt.methods == nil {
				if verr := ValidatePattern(tt.pattern); verr == nil || verr.Error() != msg {
					t.Errorf("ValidatePattern(%q) = %v, want %q", tt.pattern, verr, msg)
				}
			}
		})
	}
}

func TestValidPatterns(t *testing.T) {
	for _, p := range []string{
		"/", "/*", "//", "/a", "/a/", "/a//b", "/a/*", "/{id}", "/v1/apps/{app}/keys/{key_id}",
		"/{_}", "/{A9_b}", "/{paths}", "/{hostname}", "/{prefixed_query}", "/a/{x}/*", "/%7B/é/a b",
	} {
		if err := ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q) = %v, want nil", p, err)
		}
		var tb Table[int]
		if err := tb.Add(nil, p, 1); err != nil {
			t.Errorf("Add(%q) = %v, want nil", p, err)
		}
	}
	var tb Table[int]
	for _, ms := range [][]string{{"get"}, {"M-SEARCH"}, {"*"}, {"PROPFIND", "propfind"}, {"!#$%&'*+-.^_`|~09az"}} {
		if err := tb.Add(ms, "/m/"+fmt.Sprint(tb.Len()), 1); err != nil {
			t.Errorf("Add(%q) = %v, want nil", ms, err)
		}
	}
}

func TestConflicts(t *testing.T) {
	tests := []struct {
		existing []rule
		add      rule
		want     string // "" means no conflict
	}{
		{[]rule{{m("GET"), "/a/{x}"}}, rule{m("GET"), "/a/{y}"}, `pattern "/a/{y}": method GET conflicts with existing rule "GET /a/{x}"`},
		{[]rule{{m("GET"), "/a/{x}"}}, rule{m("get"), "/a/{y}"}, `method GET conflicts`},
		{[]rule{{nil, "/a/*"}}, rule{m("*"), "/a/*"}, `pattern "/a/*": method * conflicts with existing rule "* /a/*"`},
		{[]rule{{m("POST", "PUT"), "/a"}}, rule{m("GET", "PUT"), "/a"}, `method PUT conflicts with existing rule "PUT /a"`},
		{[]rule{{m("GET"), "/{a}/b/{c}/*"}}, rule{m("DELETE", "GET"), "/{x}/b/{y}/*"}, `existing rule "GET /{a}/b/{c}/*"`},
		{[]rule{{m("GET"), "/a/"}}, rule{m("GET"), "/a/"}, `conflicts`},
		// Not conflicts: named vs *, different methods, different shapes.
		{[]rule{{m("GET"), "/a/{x}"}}, rule{nil, "/a/{y}"}, ""},
		{[]rule{{nil, "/a/{x}"}}, rule{m("GET"), "/a/{y}"}, ""},
		{[]rule{{m("GET"), "/a/{x}"}}, rule{m("HEAD"), "/a/{y}"}, ""},
		{[]rule{{m("GET"), "/a/{x}"}}, rule{m("GET"), "/a/b"}, ""},
		{[]rule{{m("GET"), "/a/{x}"}}, rule{m("GET"), "/a/*"}, ""},
		{[]rule{{m("GET"), "/a"}}, rule{m("GET"), "/a/"}, ""},
		{[]rule{{m("GET"), "/a/*"}}, rule{m("GET"), "/a/{x}/*"}, ""},
		{[]rule{{m("GET"), "/a"}}, rule{m("GET", "get"), "/b"}, ""}, // duplicates within one rule are fine
	}
	for _, tt := range tests {
		t.Run(tt.add.String(), func(t *testing.T) {
			tb := build(t, tt.existing)
			err := tb.Add(tt.add.methods, tt.add.pattern, "new")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Add(%v) = %v, want nil", tt.add, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Add(%v) = %v, want error containing %q", tt.add, err, tt.want)
			}
			if tb.Len() != len(tt.existing) {
				t.Errorf("Len() = %d after failed Add, want %d", tb.Len(), len(tt.existing))
			}
		})
	}

	// A failed Add must not insert its non-conflicting methods either.
	tb := build(t, []rule{{m("PUT"), "/a"}})
	if err := tb.Add(m("GET", "PUT"), "/a", "bad"); err == nil {
		t.Fatal("conflicting Add succeeded")
	}
	if v, ok := tb.Match("GET", "/a"); ok {
		t.Errorf("Match(GET /a) = %q after failed Add, want no match", v)
	}
}

type matchCase struct {
	method, path string
	want         string // value (rule String) or "" for no match
}

func checkMatches(t *testing.T, tb *Table[string], cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		v, ok := tb.Match(c.method, c.path)
		if ok != (c.want != "") || v != c.want {
			t.Errorf("Match(%q, %q) = %q, %v; want %q", c.method, c.path, v, ok, c.want)
		}
	}
}

func TestMatchPaths(t *testing.T) {
	tb := build(t, []rule{
		{nil, "/x/*"},
		{nil, "/lit"},
		{nil, "/lit/"},
		{nil, "/p/{id}"},
		{nil, "/p/{id}/sub"},
		{nil, "/e//b"},
		{nil, "/v1/apps/"},
		{nil, "/v1/apps"},
		{nil, "/"},
	})
	checkMatches(t, tb, []matchCase{
		{"GET", "/x", ""},
		{"GET", "/x/", "* /x/*"},
		{"GET", "/x/a", "* /x/*"},
		{"GET", "/x/a/b", "* /x/*"},
		{"GET", "/x/a/", "* /x/*"},
		{"GET", "/xy", ""},
		{"GET", "/lit", "* /lit"},
		{"GET", "/lit/", "* /lit/"},
		{"GET", "/lit//", ""},
		{"GET", "/LIT", ""},
		{"GET", "/p/42", "* /p/{id}"},
		{"GET", "/p/", ""}, // a parameter needs a non-empty segment
		{"GET", "/p", ""},
		{"GET", "/p/42/", ""},
		{"GET", "/p/42/sub", "* /p/{id}/sub"},
		{"GET", "/p//sub", ""},
		{"GET", "/p/a b%2F/sub", "* /p/{id}/sub"},
		{"GET", "/e//b", "* /e//b"},
		{"GET", "/e/b", ""},
		{"GET", "/v1/apps", "* /v1/apps"},
		{"GET", "/v1/apps/", "* /v1/apps/"},
		{"GET", "/", "* /"},
		{"GET", "//", ""},
		{"GET", "", ""},
		{"OPTIONS", "*", ""},
		{"GET", "lit", ""},
	})

	root := build(t, []rule{{nil, "/*"}})
	checkMatches(t, root, []matchCase{
		{"GET", "/", "* /*"},
		{"GET", "//", "* /*"},
		{"GET", "/a/b/c", "* /*"},
		{"OPTIONS", "*", ""},
		{"GET", "", ""},
	})

	var empty Table[string]
	checkMatches(t, &empty, []matchCase{{"GET", "/", ""}})
}

// precedenceRules exercise every precedence rule; precedenceCases are their
// expected results.
var precedenceRules = []rule{
	{m("GET"), "/v1/apps/new"},
	{m("GET"), "/v1/apps/{app}"},
	{nil, "/v1/apps/{app}"},
	{m("GET"), "/v1/*"},
	{nil, "/v1/*"},
	{m("POST"), "/v1/{res}/{id}"},
	{m("DELETE"), "/v1/apps/{app}/keys/{key}"},
	{m("GET"), "/v1/apps/{app}/keys/*"},
	{nil, "/*"},
	{m("PUT"), "/{a}/{b}/{c}"},
	{m("PUT"), "/v1/{b}/*"},
	{m("PATCH"), "/{a}/apps/x"},
}

var precedenceCases = []matchCase{
	{"GET", "/v1/apps/new", "GET /v1/apps/new"},   // literal beats param
	{"GET", "/v1/apps/x", "GET /v1/apps/{app}"},   // named beats * on equal patterns
	{"POST", "/v1/apps/x", "* /v1/apps/{app}"},    // then the * rule of the same pattern
	{"POST", "/v1/apps/new", "* /v1/apps/{app}"},  // GET-only literal does not apply to POST
	{"POST", "/v1/keys/x", "POST /v1/{res}/{id}"}, // param at position 2
	{"POST", "/v1/keys/x/y", "* /v1/*"},           // backtrack out of /v1/{res}/{id}
	{"PUT", "/v1/keys/x", "PUT /v1/{b}/*"},        // /v1/{b}/* beats /{a}/{b}/{c}: literal at 1
	{"PUT", "/v2/keys/x", "PUT /{a}/{b}/{c}"},     // only the param pattern matches
	{"DELETE", "/v1/apps/a/keys/k", "DELETE /v1/apps/{app}/keys/{key}"},
	{"GET", "/v1/apps/a/keys/k", "GET /v1/apps/{app}/keys/*"},
	{"PUT", "/v1/apps/a/keys/k", "PUT /v1/{b}/*"},
	{"POST", "/v1/apps/a/keys/k", "* /v1/*"},
	{"GET", "/v1/apps/a/keys", "GET /v1/*"},
	{"GET", "/v1/", "GET /v1/*"},
	{"GET", "/v1", "* /*"},
	{"PATCH", "/v1/apps/x", "* /v1/apps/{app}"}, // literal v1 at position 1 beats {a}
	{"PATCH", "/v2/apps/x", "PATCH /{a}/apps/x"},
	{"GET", "/v2/apps/x", "* /*"},
	{"HEAD", "/v1/apps/new", "GET /v1/apps/new"},
	{"OPTIONS", "*", ""},
}

func TestPrecedence(t *testing.T) {
	checkMatches(t, build(t, precedenceRules), precedenceCases)
}

// TestPrecedenceOrderIndependent adds the same rules in several orders and
// expects identical results.
func TestPrecedenceOrderIndependent(t *testing.T) {
	orders := [][]rule{precedenceRules}
	rev := append([]rule(nil), precedenceRules...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	orders = append(orders, rev)
	rng := rand.New(rand.NewSource(1))
	for range 20 {
		s := append([]rule(nil), precedenceRules...)
		rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		orders = append(orders, s)
	}
	paths := []string{"/", "/v1", "/v1/", "/v2/apps/x", "/v1/apps", "/v1/apps/", "/v1/apps/new",
		"/v1/apps/x", "/v1/apps/x/keys", "/v1/apps/x/keys/", "/v1/apps/x/keys/k", "/v1/keys/x", "/v1/keys/x/y", "/a/b/c"}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	first := build(t, orders[0])
	for i, order := range orders {
		tb := build(t, order)
		checkMatches(t, tb, precedenceCases)
		for _, p := range paths {
			for _, meth := range methods {
				want, wok := first.Match(meth, p)
				got, gok := tb.Match(meth, p)
				if got != want || gok != wok {
					t.Errorf("order %d: Match(%s %s) = %q, %v; first order gave %q, %v", i, meth, p, got, gok, want, wok)
				}
			}
		}
	}
}

func TestMethods(t *testing.T) {
	t.Run("named beats any", func(t *testing.T) {
		for _, rules := range [][]rule{
			{{m("GET"), "/a"}, {nil, "/a"}},
			{{nil, "/a"}, {m("GET"), "/a"}},
		} {
			checkMatches(t, build(t, rules), []matchCase{
				{"GET", "/a", "GET /a"},
				{"POST", "/a", "* /a"},
				{"HEAD", "/a", "GET /a"},
			})
		}
	})
	t.Run("several methods", func(t *testing.T) {
		// A Caddyfile "GET,POST" list arrives as several entries.
		tb := build(t, []rule{{m("get", "Post"), "/a"}})
		checkMatches(t, tb, []matchCase{
			{"GET", "/a", "get,Post /a"},
			{"POST", "/a", "get,Post /a"},
			{"HEAD", "/a", "get,Post /a"},
			{"PUT", "/a", ""},
			{"get", "/a", ""}, // request methods are case-sensitive
		})
	})
	t.Run("GET covers HEAD", func(t *testing.T) {
		tb := build(t, []rule{{m("GET"), "/a"}, {m("GET"), "/b"}, {m("HEAD"), "/b"}, {m("POST"), "/c"}, {m("GET"), "/d"}, {nil, "/d/*"}})
		checkMatches(t, tb, []matchCase{
			{"HEAD", "/a", "GET /a"},
			{"HEAD", "/b", "HEAD /b"},
			{"GET", "/b", "GET /b"},
			{"HEAD", "/c", ""},
			{"HEAD", "/d", "GET /d"},
			{"HEAD", "/d/x", "* /d/*"},
		})
		// A HEAD rule on the same pattern takes HEAD away from GET, even
		// when that leaves HEAD to a less specific rule.
		tb = build(t, []rule{{m("GET"), "/a/{x}"}, {m("HEAD"), "/a/{y}"}, {nil, "/a/*"}})
		checkMatches(t, tb, []matchCase{
			{"HEAD", "/a/b", "HEAD /a/{y}"},
			{"GET", "/a/b", "GET /a/{x}"},
		})
	})
	t.Run("backtracking", func(t *testing.T) {
		tb := build(t, []rule{{m("GET"), "/v1/apps/{app}"}, {nil, "/v1/*"}})
		checkMatches(t, tb, []matchCase{
			{"POST", "/v1/apps/x", "* /v1/*"},
			{"GET", "/v1/apps/x", "GET /v1/apps/{app}"},
		})
		tb = build(t, []rule{{nil, "/v1/apps/{app}"}, {m("GET"), "/v1/*"}})
		checkMatches(t, tb, []matchCase{
			{"GET", "/v1/apps/x", "* /v1/apps/{app}"}, // path specificity before method
			{"GET", "/v1/apps/x/y", "GET /v1/*"},
			{"POST", "/v1/apps/x/y", ""},
		})
	})
}

func TestLen(t *testing.T) {
	tb := build(t, precedenceRules)
	if tb.Len() != len(precedenceRules) {
		t.Errorf("Len() = %d, want %d", tb.Len(), len(precedenceRules))
	}
}

// Reference matcher: a direct transcription of the contract, used to check
// the trie on generated rule sets.

type refSeg struct {
	kind segKind
	lit  string
}

type refRule struct {
	id      int
	segs    []refSeg
	methods map[string]bool // uppercased; "*" for any
	rule    rule
}

func (r *refRule) shape() string {
	var b strings.Builder
	for _, s := range r.segs {
		b.WriteString([]string{"L", "P", "W"}[s.kind])
		b.WriteString(s.lit)
		b.WriteByte(0)
	}
	return b.String()
}

func refPathMatch(segs []refSeg, path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	ps := strings.Split(path[1:], "/")
	wild := segs[len(segs)-1].kind == segWild
	if wild && len(ps) < len(segs) || !wild && len(ps) != len(segs) {
		return false
	}
	for i, s := range segs {
		switch {
		case s.kind == segLiteral && ps[i] != s.lit:
			return false
		case s.kind == segParam && ps[i] == "":
			return false
		}
	}
	return true
}

// refMethodRank is 2 if r applies to method by name (GET counting for HEAD
// when no rule of the same shape names HEAD), 1 if through "*", 0 if not.
func refMethodRank(r *refRule, method string, all []*refRule) int {
	if method != "*" && r.methods[method] {
		return 2
	}
	if method == "HEAD" && r.methods["GET"] {
		headRule := false
		for _, o := range all {
			headRule = headRule || o.shape() == r.shape() && o.methods["HEAD"]
		}
		if !headRule {
			return 2
		}
	}
	if r.methods["*"] {
		return 1
	}
	return 0
}

// refCompare returns >0 if a is more specific than b for a path both match.
func refCompare(a, b *refRule, ra, rb int) int {
	rank := map[segKind]int{segLiteral: 2, segParam: 1, segWild: 0}
	for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
		if d := rank[a.segs[i].kind] - rank[b.segs[i].kind]; d != 0 {
			return d
		}
	}
	return ra - rb
}

func refMatch(t *testing.T, rules []*refRule, method, path string) (id int, ok bool) {
	var best *refRule
	bestRank := 0
	for _, r := range rules {
		if !refPathMatch(r.segs, path) {
			continue
		}
		rank := refMethodRank(r, method, rules)
		if rank == 0 {
			continue
		}
		if best == nil {
			best, bestRank = r, rank
			continue
		}
		switch c := refCompare(r, best, rank, bestRank); {
		case c > 0:
			best, bestRank = r, rank
		case c == 0:
			t.Fatalf("reference: %v and %v tie for %s %s", r.rule, best.rule, method, path)
		}
	}
	if best == nil {
		return 0, false
	}
	return best.id, true
}

func refConflict(rules []*refRule, r *refRule) bool {
	for _, o := range rules {
		if o.shape() != r.shape() {
			continue
		}
		for meth := range r.methods {
			if o.methods[meth] {
				return true
			}
		}
	}
	return false
}

func genRule(rng *rand.Rand, id int) *refRule {
	lits := []string{"a", "b", "", "c"}
	n := 1 + rng.Intn(4)
	r := &refRule{id: id, methods: map[string]bool{}}
	var parts []string
	for i := range n {
		var s refSeg
		switch x := rng.Intn(20); {
		case x < 5:
			s = refSeg{kind: segParam, lit: fmt.Sprintf("p%d_%d", i, rng.Intn(3))}
		case x < 8 && i == n-1:
			s = refSeg{kind: segWild}
		default:
			s = refSeg{kind: segLiteral, lit: lits[rng.Intn(len(lits))]}
		}
		r.segs = append(r.segs, s)
		switch s.kind {
		case segParam:
			parts = append(parts, "{"+s.lit+"}")
		case segWild:
			parts = append(parts, "*")
		default:
			parts = append(parts, s.lit)
		}
	}
	for i := range r.segs { // names don't matter for matching
		if r.segs[i].kind == segParam {
			r.segs[i].lit = ""
		}
	}
	r.rule.pattern = "/" + strings.Join(parts, "/")
	pool := []string{"GET", "HEAD", "POST", "*", "get", "head"}
	for range rng.Intn(3) { // zero methods means "*"
		meth := pool[rng.Intn(len(pool))]
		r.rule.methods = append(r.rule.methods, meth)
		r.methods[strings.ToUpper(meth)] = true
	}
	if len(r.rule.methods) == 0 {
		r.methods["*"] = true
	}
	return r
}

// refPaths are all paths of up to 4 segments over a small alphabet, plus a
// few that are not paths at all.
func refPaths() []string {
	paths := []string{"", "*", "a", "a/b"}
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, s := range []string{"a", "b", "c", ""} {
			p := prefix + "/" + s
			paths = append(paths, p)
			gen(p, depth-1)
		}
	}
	gen("", 4)
	return append(paths, "/a/a/a/a/a", "/a/b/c/a/b/c", "/a/a/a/a/", "/d", "/a/d")
}

// TestAgainstReference checks Add's conflict detection and Match against the
// reference on many generated rule sets, in insertion order and reversed.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewSource(20240601))
	paths := refPaths()
	methods := []string{"GET", "HEAD", "POST", "PUT", "get"}
	sets := 600
	if testing.Short() {
		sets = 60
	}
	matched, total := 0, 0
	for set := range sets {
		var tb Table[int]
		var accepted []*refRule
		for id := range 1 + rng.Intn(30) {
			r := genRule(rng, id)
			err := tb.Add(r.rule.methods, r.rule.pattern, id)
			if want := refConflict(accepted, r); want != (err != nil) {
				t.Fatalf("set %d: Add(%v) = %v, reference conflict = %v", set, r.rule, err, want)
			}
			if err == nil {
				accepted = append(accepted, r)
			}
		}
		if tb.Len() != len(accepted) {
			t.Fatalf("set %d: Len() = %d, want %d", set, tb.Len(), len(accepted))
		}
		var rev Table[int]
		for i := len(accepted) - 1; i >= 0; i-- {
			if err := rev.Add(accepted[i].rule.methods, accepted[i].rule.pattern, accepted[i].id); err != nil {
				t.Fatalf("set %d: reversed Add(%v) = %v", set, accepted[i].rule, err)
			}
		}
		for _, p := range paths {
			for _, meth := range methods {
				want, wok := refMatch(t, accepted, meth, p)
				got, gok := tb.Match(meth, p)
				rgot, rgok := rev.Match(meth, p)
				if got != want || gok != wok || rgot != want || rgok != wok {
					var desc []string
					for _, r := range accepted {
						desc = append(desc, fmt.Sprintf("  %d: %v", r.id, r.rule))
					}
					t.Fatalf("set %d: Match(%q, %q) = %d, %v (reversed: %d, %v); reference %d, %v\nrules:\n%s",
						set, meth, p, got, gok, rgot, rgok, want, wok, strings.Join(desc, "\n"))
				}
				total++
				if wok {
					matched++
				}
			}
		}
	}
	// Guard against a generator that makes the comparison vacuous.
	if matched < total/10 {
		t.Errorf("only %d of %d generated requests matched a rule", matched, total)
	}
	t.Logf("%d requests checked, %d matched", total, matched)
}

func TestMatchAllocs(t *testing.T) {
	tb := build(t, precedenceRules)
	for _, c := range precedenceCases {
		allocs := testing.AllocsPerRun(100, func() {
			if v, _ := tb.Match(c.method, c.path); v != c.want {
				t.Fatalf("Match(%s %s) = %q, want %q", c.method, c.path, v, c.want)
			}
		})
		if allocs != 0 {
			t.Errorf("Match(%s %s): %v allocs/op, want 0", c.method, c.path, allocs)
		}
	}
}

func TestConcurrentMatch(t *testing.T) {
	tb := build(t, precedenceRules)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				for _, c := range precedenceCases {
					if v, _ := tb.Match(c.method, c.path); v != c.want {
						t.Errorf("Match(%s %s) = %q, want %q", c.method, c.path, v, c.want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// apiRoutes returns n API-like rules: per resource, list/create, get, update
// and delete by id, and a sub-resource for any method.
func apiRoutes(n int) []rule {
	var rules []rule
	for k := 0; len(rules) < n; k++ {
		res := fmt.Sprintf("/v1/res%d", k/5)
		switch k % 5 {
		case 0:
			rules = append(rules, rule{m("GET"), res})
		case 1:
			rules = append(rules, rule{m("POST"), res})
		case 2:
			rules = append(rules, rule{m("GET"), res + "/{id}"})
		case 3:
			rules = append(rules, rule{m("PUT", "PATCH", "DELETE"), res + "/{id}"})
		case 4:
			rules = append(rules, rule{nil, res + "/{id}/sub"})
		}
	}
	return rules
}

func BenchmarkScopeMatch(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			tb := build(b, apiRoutes(n))
			path := fmt.Sprintf("/v1/res%d/12345/sub", n/5-1)
			want := fmt.Sprintf("* /v1/res%d/{id}/sub", n/5-1)
			if v, _ := tb.Match("GET", path); v != want {
				b.Fatalf("Match(GET %s) = %q, want %q", path, v, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				tb.Match("GET", path)
			}
		})
	}
}
