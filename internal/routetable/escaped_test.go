package routetable

import "testing"

func TestMatchEscaped(t *testing.T) {
	var tb Table[string]
	for _, r := range []struct {
		methods    []string
		pattern, v string
	}{
		{[]string{"DELETE"}, "/v1/apps/{app}", "delete"},
		{nil, "/v1/apps/{app}/*", "subtree"},
		{[]string{"GET"}, "/v1/apps/a b", "literal-space"},
		{[]string{"GET"}, "/v1/apps/a%2Fb", "percent-literal"},
		{nil, "/v1/*", "v1"},
	} {
		if err := tb.Add(r.methods, r.pattern, r.v); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ method, path, want string }{
		{"DELETE", "/v1/apps/a%2Fb", "delete"}, // one segment, as ServeMux reads it
		{"DELETE", "/v1/apps/a%2fb", "delete"},
		{"DELETE", "/v1/apps/a/b", "subtree"},
		{"DELETE", "/v1/%61pps/a%2Fb", "delete"}, // literals match the decoded segment
		{"DELETE", "/v1/a%2Fpps/x", "v1"},        // "a/pps" is no literal "apps"
		{"GET", "/v1/apps/a%20b", "literal-space"},
		{"GET", "/v1/apps/a%2Fb", "v1"},       // patterns are not decoded: a/b is not "a%2Fb"
		{"GET", "/v1/apps/a%zz/x", "subtree"}, // not decodable: no literal, still a {param}
		{"DELETE", "/v1/apps/%2F", "delete"},
	} {
		got, ok := tb.MatchEscaped(c.method, c.path)
		if !ok || got != c.want {
			t.Errorf("MatchEscaped(%s, %s) = %q, %v; want %q", c.method, c.path, got, ok, c.want)
		}
	}
	if _, ok := tb.MatchEscaped("GET", "*"); ok {
		t.Error(`MatchEscaped("*") matched`)
	}
	if got, _ := tb.Match("DELETE", "/v1/apps/a/b"); got != "subtree" {
		t.Errorf("Match on the decoded path = %q, want subtree (two segments)", got)
	}
}

func TestMatchEscapedAllocations(t *testing.T) {
	var tb Table[int]
	if err := tb.Add([]string{"POST"}, "/v1/apps/{app}/runs", 1); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { tb.MatchEscaped("POST", "/v1/apps/web/runs") }); n != 0 {
		t.Errorf("%v allocations for a path without escapes", n)
	}
}
