package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin/client"
)

// Shell completion: Caddy's "completion" command generates scripts for
// the whole tree; these functions complete ids and names by asking the
// running Caddy, quietly giving nothing when it cannot be reached.

// completionTimeout bounds the wait for the admin endpoint on a Tab.
const completionTimeout = 3 * time.Second

// completeEnv returns an env for a completion, or nil.
func completeEnv(cmd *cobra.Command) (*env, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
	e, err := newEnv(ctx, cmd)
	if err != nil {
		cancel()
		return nil, nil
	}
	return e, cancel
}

// keyCandidates lists the keys as "id<TAB>name (account)".
func keyCandidates(cmd *cobra.Command, prefix string) []string {
	e, cancel := completeEnv(cmd)
	if e == nil {
		return nil
	}
	defer cancel()
	keys, err := client.Collect(e.api.Keys(e.ctx, client.KeyFilter{}))
	if err != nil {
		return nil
	}
	accounts, _ := e.accountNames(keyAccounts(keys)...)
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k.ID, prefix) {
			out = append(out, fmt.Sprintf("%s\t%s (%s)", k.ID, oneLine(k.Name), oneLine(accounts.or(k.Account, k.Account))))
		}
	}
	return out
}

// completeKeys completes a first argument that is a key id.
func completeKeys(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return keyCandidates(cmd, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// tokenCandidates lists the tokens of key keyID as "id<TAB>name hint status".
func tokenCandidates(cmd *cobra.Command, keyID, prefix string) []string {
	e, cancel := completeEnv(cmd)
	if e == nil {
		return nil
	}
	defer cancel()
	k, err := e.api.GetKey(e.ctx, keyID)
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range k.Tokens {
		if strings.HasPrefix(t.ID, prefix) {
			out = append(out, fmt.Sprintf("%s\t%s %s %s", t.ID, oneLine(cell(t.Name)), t.Hint, t.Status))
		}
	}
	return out
}

// completeKeyThenToken completes <key-id> <token-id>.
func completeKeyThenToken(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	switch len(args) {
	case 0:
		return keyCandidates(cmd, toComplete), cobra.ShellCompDirectiveNoFileComp
	case 1:
		return tokenCandidates(cmd, args[0], toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeTokenFlag completes --token with the tokens of the key argument.
func completeTokenFlag(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("token", func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return tokenCandidates(cmd, args[0], toComplete), cobra.ShellCompDirectiveNoFileComp
	})
}

// accountCandidates lists the account names as "name<TAB>id kind".
func accountCandidates(cmd *cobra.Command, prefix string) []string {
	e, cancel := completeEnv(cmd)
	if e == nil {
		return nil
	}
	defer cancel()
	accounts, err := client.Collect(e.api.Accounts(e.ctx))
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range accounts {
		if strings.HasPrefix(a.Name, prefix) {
			out = append(out, fmt.Sprintf("%s\t%s %s", a.Name, a.ID, a.Kind))
		}
	}
	return out
}

// completeAccounts completes a first argument that is an account.
func completeAccounts(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return accountCandidates(cmd, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeAccountFlag completes --account with account names.
func completeAccountFlag(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("account", func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return accountCandidates(cmd, toComplete), cobra.ShellCompDirectiveNoFileComp
	})
}

// completeKinds completes --kind.
func completeKinds(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{"user", "service"}, cobra.ShellCompDirectiveNoFileComp))
}
