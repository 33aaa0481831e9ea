package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/pflag"

	"github.com/keygate/keygate/storage"
)

// splitScopes reads a comma-separated scope list; blanks are dropped.
// Checking the scopes is the API's job.
func splitScopes(s string) []string {
	scopes := []string{}
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			scopes = append(scopes, part)
		}
	}
	return scopes
}

// parseTags reads --tag k=v flags into a map; nil when there are none.
func parseTags(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	tags := make(map[string]string, len(flags))
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, usagef("--tag %q: want key=value", f)
		}
		if prev, dup := tags[k]; dup && prev != v {
			return nil, usagef("--tag %q: tag %q is given twice", f, k)
		}
		tags[k] = v
	}
	return tags, nil
}

// parseExpires reads --expires: a duration from now (Caddy syntax: 720h,
// 30d) or an RFC 3339 time. It returns the time in RFC 3339, UTC.
func parseExpires(v string, now time.Time) (string, error) {
	v = strings.TrimSpace(v)
	if d, err := caddy.ParseDuration(v); err == nil {
		if d <= 0 {
			return "", usagef("--expires %s: the duration must be positive", v)
		}
		return now.Add(d).UTC().Format(time.RFC3339), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return "", usagef("--expires %q: want a duration such as 720h or an RFC 3339 time such as 2030-01-02T15:04:05Z", v)
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

// parseGrace reads --grace: a non-negative duration (Caddy syntax: 24h, 1d).
func parseGrace(v string) (time.Duration, error) {
	d, err := caddy.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return 0, usagef("--grace %q: want a non-negative duration such as 24h", v)
	}
	return d, nil
}

// parseSince reads --since: a duration before now (24h, 7d) or an RFC 3339
// time.
func parseSince(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if d, err := caddy.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usagef("--since %q: want a duration such as 24h (before now) or an RFC 3339 time", v)
	}
	return t, nil
}

// checkKeyID refuses an argument that is not a key id, without echoing it:
// it might be a token value.
func checkKeyID(arg string) error {
	if !strings.HasPrefix(arg, storage.KeyIDPrefix) {
		return usagef("the argument must be a key id (%s…); find it with 'caddy apikey list'", storage.KeyIDPrefix)
	}
	return nil
}

// checkTokenID refuses what is not a token id, without echoing it.
func checkTokenID(what, arg string) error {
	if !strings.HasPrefix(arg, storage.TokenIDPrefix) {
		return usagef("%s must be a token id (%s…), as 'caddy apikey get <key-id>' lists them", what, storage.TokenIDPrefix)
	}
	return nil
}

// labelFlags adds --name, --description and --tag to fs.
func labelFlags(fs *pflag.FlagSet, of string) {
	fs.String("name", "", "Name of the "+of)
	fs.String("description", "", "Description of the "+of)
	fs.StringArray("tag", nil, "Tag of the "+of+" as key=value (repeatable)")
}

// labelChanges reads the label flags an update sets: nil for those not
// given. --tag replaces all the tags; --clear-tags removes them.
func labelChanges(fs *pflag.FlagSet) (name, description *string, tags *map[string]string, err error) {
	if fs.Changed("name") {
		v, _ := fs.GetString("name")
		name = &v
	}
	if fs.Changed("description") {
		v, _ := fs.GetString("description")
		description = &v
	}
	clear, _ := fs.GetBool("clear-tags")
	flags, _ := fs.GetStringArray("tag")
	switch {
	case clear && len(flags) > 0:
		return nil, nil, nil, usagef("--tag and --clear-tags exclude each other")
	case clear:
		tags = &map[string]string{}
	case len(flags) > 0:
		m, err := parseTags(flags)
		if err != nil {
			return nil, nil, nil, err
		}
		tags = &m
	}
	return name, description, tags, nil
}

// readTokenArg returns a token value given as an argument, or read from
// stdin when the argument is "-" (to keep it out of the process list and
// the shell history).
func readTokenArg(arg string, stdin io.Reader) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the token value from standard input: %w", err)
	}
	token := strings.TrimSpace(line)
	if token == "" {
		return "", usagef("no token value on standard input")
	}
	return token, nil
}
