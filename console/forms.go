package console

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// formTags reads "k=v, k2=v2" (commas or new lines between pairs).
func formTags(s string) (map[string]string, *formError) {
	tags := map[string]string{}
	for _, pair := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, &formError{Field: "tags", Message: "tags are key=value pairs, such as env=prod; " + pair + " is not"}
		}
		tags[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return tags, nil
}

// formTime reads a datetime-local field ("2030-01-02T15:04", UTC) as an
// RFC 3339 time; "" for an empty field.
func formTime(field, s string) (string, *formError) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC().Format(time.RFC3339), nil
		}
	}
	return "", &formError{Field: field, Message: "the time must look like 2030-01-02T15:04 (UTC)"}
}

// inputTime renders t for a datetime-local field.
func inputTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04")
}

// formScopes reads the chosen scopes: the ticked "scope" boxes and the
// space- or comma-separated "more_scopes" text. None chosen is nil.
func formScopes(form url.Values) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range form["scope"] {
		add(s)
	}
	for _, s := range strings.FieldsFunc(form.Get("more_scopes"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		add(s)
	}
	return out
}

// tagText renders tags as the form reads them.
func tagText(m map[string]string) string {
	var b []string
	for k, v := range m {
		b = append(b, k+"="+v)
	}
	slices.Sort(b)
	return strings.Join(b, ", ")
}
