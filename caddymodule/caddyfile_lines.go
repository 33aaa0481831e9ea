package caddymodule

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	edlib "github.com/hbollon/go-edlib"
)

// How Caddyfile errors point at the line at fault, for every directive of
// caddyfile.go: an unknown option with the nearest known one, and a
// setting refused by a handler's compile at the line that wrote it.

// unknownOption is the error for the option got, which is none of
// options, suggesting the nearest of them when it is two edits away or
// less.
func unknownOption(d *caddyfile.Dispenser, where, got string, options ...string) error {
	best, dist := "", 3
	for _, o := range options {
		if n := edlib.OSADamerauLevenshteinDistance(got, o); n < dist {
			best, dist = o, n
		}
	}
	if best != "" {
		return d.Errf("%s: unknown option %q; did you mean %s?", where, got, best)
	}
	return d.Errf("%s: unknown option %q", where, got)
}

// settingError is an error in one setting of a handler's configuration,
// found by its compile; it names the setting so that the Caddyfile parser
// can point at the line that wrote it.
type settingError struct {
	setting string // the option: header, realm, scope, default, require
	index   int    // which one, for options that repeat: header, scope, a word of require
	err     error
}

func (e *settingError) Error() string { return e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// settingKey names one setting, as settingError does.
type settingKey struct {
	setting string
	index   int
}

// settingLines remembers the token that wrote each setting of a block.
type settingLines map[settingKey]caddyfile.Token

// add records d's current token as where the setting was written.
func (l settingLines) add(d *caddyfile.Dispenser, setting string, index int) {
	l[settingKey{setting, index}] = d.Token()
}

// errorf returns the compile error err of the block d has read, at the
// line of the setting it names, else at d's token (the block's end).
func (l settingLines) errorf(d *caddyfile.Dispenser, where string, err error) error {
	var se *settingError
	if errors.As(err, &se) {
		if tok, ok := l[settingKey{se.setting, se.index}]; ok {
			at := caddyfile.NewDispenser([]caddyfile.Token{tok})
			at.Next()
			d = at
		}
	}
	return d.WrapErr(fmt.Errorf("%s: %w", where, err))
}
