package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
)

// rotateCommand is "caddy apikey rotate".
func rotateCommand() *cobra.Command {
	rotate := &cobra.Command{
		Use:   "rotate <key-id> [--token <token-id>] [--grace <duration>] [--expires <duration|time>]",
		Short: "Replaces a token of a key with a new one",
		Long: `
Replaces a token of a key with a new token (new id and value, same name and
tags) and prints the new value once, alone on the last line. The old token
stops at once, or after --grace (24h, 1d) so that clients can switch over.
The new token expires at --expires, or after the old one's lifetime.

Without --token, the key's only active token is rotated; a key with several
active tokens needs --token.`,
		Args:              nArgs(1, "one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdRotate),
	}
	rotate.Flags().String("token", "", "Id of the token to rotate (default: the key's only active token)")
	rotate.Flags().String("grace", "", "How long the old token keeps working (default: it stops now)")
	rotate.Flags().String("expires", "", "Expiry of the new token: a duration from now (720h) or an RFC 3339 time")
	completeTokenFlag(rotate)
	return rotate
}

// tokenCommand is "caddy apikey token add|update|delete".
func tokenCommand() *cobra.Command {
	token := &cobra.Command{
		Use:   "token <add|update|delete>",
		Short: "Manages the tokens of a key",
		Long: `
A key has one or more tokens: the secrets clients send. Each works with the
key's scopes and can expire, be rotated ('caddy apikey rotate') or deleted on
its own.`,
		RunE: groupRunE,
	}

	add := &cobra.Command{
		Use:   "add <key-id> [--name <name>] [--expires <duration|time>] [--description <text>] [--tag k=v ...]",
		Short: "Adds a token to a key",
		Long: `
Adds a token to a key, and prints its value once, alone on the last line.
--expires is a duration from now (720h, 30d) or an RFC 3339 time; without it
the token does not expire.`,
		Args:              nArgs(1, "one key id"),
		ValidArgsFunction: completeKeys,
		RunE:              run(cmdTokenAdd),
	}
	labelFlags(add.Flags(), "token")
	add.Flags().String("expires", "", "Expiry of the token: a duration from now (720h) or an RFC 3339 time")

	update := &cobra.Command{
		Use:   "update <key-id> <token-id> [--name <name>] [--description <text>] [--tag k=v ... | --clear-tags] [--expires <duration|time> | --no-expiry]",
		Short: "Changes a token's name, description, tags or expiry",
		Long: `
Changes the fields given; the others stay. --tag replaces all the token's tags
(--clear-tags removes them). A token being rotated out keeps its expiry, or
moves it earlier.`,
		Args:              nArgs(2, "a key id and a token id"),
		ValidArgsFunction: completeKeyThenToken,
		RunE:              run(cmdTokenUpdate),
	}
	labelFlags(update.Flags(), "token")
	update.Flags().Bool("clear-tags", false, "Remove all the token's tags")
	update.Flags().String("expires", "", "New expiry: a duration from now (720h) or an RFC 3339 time")
	update.Flags().Bool("no-expiry", false, "Make the token never expire")

	del := &cobra.Command{
		Use:               "delete <key-id> <token-id>",
		Short:             "Deletes one token of a key; it stops working at once",
		Args:              nArgs(2, "a key id and a token id"),
		ValidArgsFunction: completeKeyThenToken,
		RunE:              run(cmdTokenDelete),
	}

	token.AddCommand(add, update, del)
	return token
}

func cmdRotate(e *env, args []string) error {
	keyID := args[0]
	if err := checkKeyID(keyID); err != nil {
		return err
	}
	fl := e.cmd.Flags()
	tokenID, _ := fl.GetString("token")
	if tokenID != "" {
		if err := checkTokenID("--token", tokenID); err != nil {
			return err
		}
	}
	var req admin.RotateRequest
	var grace time.Duration
	graceFlag, _ := fl.GetString("grace")
	if graceFlag != "" {
		var err error
		if grace, err = parseGrace(graceFlag); err != nil {
			return err
		}
		req.Grace = grace.String()
	}
	if exp, _ := fl.GetString("expires"); exp != "" {
		var err error
		if req.ExpiresAt, err = parseExpires(exp, e.now()); err != nil {
			return err
		}
	}
	if tokenID == "" {
		k, err := e.api.GetKey(e.ctx, keyID)
		if err != nil {
			return err
		}
		if tokenID, err = onlyActiveToken(*k); err != nil {
			return err
		}
	}
	now := e.now()
	t, err := e.api.RotateToken(e.ctx, keyID, tokenID, req)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(t)
	}
	if t.Secret == "" {
		return errors.New("the answer carries no token value")
	}
	switch {
	case grace > 0 && !t.OldTokenExpiresAt.IsZero() && t.OldTokenExpiresAt.Before(now.Add(grace).Add(-time.Second)):
		// The server clamped a grace that outlives the token to its expiry.
		fmt.Fprintf(e.out, "Rotated token %s of key %s: it keeps working until its own expiry, %s (the %s grace outlives it).\n\n",
			tokenID, keyID, formatTime(t.OldTokenExpiresAt), strings.TrimSpace(graceFlag))
	case grace > 0:
		fmt.Fprintf(e.out, "Rotated token %s of key %s: it keeps working for %s, until %s.\n\n",
			tokenID, keyID, strings.TrimSpace(graceFlag), formatTime(now.Add(grace)))
	default:
		fmt.Fprintf(e.out, "Rotated token %s of key %s: it no longer works.\n\n", tokenID, keyID)
	}
	if err := renderTokens(e.out, []admin.Token{t.Token}); err != nil {
		return err
	}
	return printSecret(e.out, t.Secret)
}

// onlyActiveToken returns the id of the key's only active token.
func onlyActiveToken(k admin.Key) (string, error) {
	var active []string
	for _, t := range k.Tokens {
		if t.Status == storage.StatusActive {
			active = append(active, t.ID)
		}
	}
	switch len(active) {
	case 1:
		return active[0], nil
	case 0:
		return "", fmt.Errorf("key %s has no active token to rotate", k.ID)
	default:
		return "", usagef("key %s has %d active tokens (%s): choose one with --token <token-id>",
			k.ID, len(active), strings.Join(active, ", "))
	}
}

func cmdTokenAdd(e *env, args []string) error {
	if err := checkKeyID(args[0]); err != nil {
		return err
	}
	fl := e.cmd.Flags()
	var req admin.CreateTokenRequest
	req.Name, _ = fl.GetString("name")
	req.Description, _ = fl.GetString("description")
	tags, _ := fl.GetStringArray("tag")
	var err error
	if req.Tags, err = parseTags(tags); err != nil {
		return err
	}
	if exp, _ := fl.GetString("expires"); exp != "" {
		if req.ExpiresAt, err = parseExpires(exp, e.now()); err != nil {
			return err
		}
	}
	t, err := e.api.CreateToken(e.ctx, args[0], req)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(t)
	}
	if t.Secret == "" {
		return errors.New("the answer carries no token value")
	}
	if err := renderTokens(e.out, []admin.Token{t.Token}); err != nil {
		return err
	}
	return printSecret(e.out, t.Secret)
}

func cmdTokenUpdate(e *env, args []string) error {
	keyID, tokenID := args[0], args[1]
	if err := checkKeyID(keyID); err != nil {
		return err
	}
	if err := checkTokenID("the second argument", tokenID); err != nil {
		return err
	}
	fl := e.cmd.Flags()
	var req admin.UpdateTokenRequest
	var err error
	if req.Name, req.Description, req.Tags, err = labelChanges(fl); err != nil {
		return err
	}
	never, _ := fl.GetBool("no-expiry")
	exp, _ := fl.GetString("expires")
	switch {
	case never && exp != "":
		return usagef("--expires and --no-expiry exclude each other")
	case never:
		req.ExpiresAt = admin.NeverExpires
	case exp != "":
		at, err := parseExpires(exp, e.now())
		if err != nil {
			return err
		}
		if req.ExpiresAt, err = json.Marshal(at); err != nil {
			return err
		}
	}
	if req.Name == nil && req.Description == nil && req.Tags == nil && req.ExpiresAt == nil {
		return usagef("nothing to change: give --name, --description, --tag, --clear-tags, --expires or --no-expiry")
	}
	t, err := e.api.UpdateToken(e.ctx, keyID, tokenID, req)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(t)
	}
	return renderTokens(e.out, []admin.Token{*t})
}

func cmdTokenDelete(e *env, args []string) error {
	keyID, tokenID := args[0], args[1]
	if err := checkKeyID(keyID); err != nil {
		return err
	}
	if err := checkTokenID("the second argument", tokenID); err != nil {
		return err
	}
	if err := e.api.DeleteToken(e.ctx, keyID, tokenID); err != nil {
		return err
	}
	if !e.json {
		fmt.Fprintf(e.out, "Deleted token %s of key %s.\n", tokenID, keyID)
	}
	return nil
}
