package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin/client"
)

// Exit statuses, as the help's footer documents them.
const (
	exitError    = 1
	exitUsage    = 2
	exitNotFound = 3
)

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode returns the exit status for err.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case client.IsNotFound(err):
		return exitNotFound
	}
	return exitError
}

// ExitError is how a command fails: its message was printed; Code is the
// exit status.
type ExitError struct {
	Code int
	Err  error
	// status is what makes caddycmd.Main exit with Code.
	status error
}

func (e *ExitError) Error() string { return e.Err.Error() }

func (e *ExitError) Unwrap() []error { return []error{e.Err, e.status} }

// fail prints err as one line on stderr, prefixed with the command
// ("caddy apikey create: …"), keeps cobra from printing it again, and
// returns the error that makes caddy exit with err's status.
func fail(cmd *cobra.Command, err error) error {
	cmd.SilenceErrors = true
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", cmd.CommandPath(), oneLine(err.Error()))
	e := &ExitError{Code: exitCode(err), Err: err}
	if e.Code != exitError { // caddycmd.Main exits 1 on any other error
		// caddycmd carries other statuses in an unexported error that
		// only WrapCommandFuncForCobra makes; given no error, it logs none.
		e.status = caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return e.Code, nil })(cmd, nil)
	}
	return e
}

// groupRunE serves commands that only group subcommands: alone they print
// their help; with an unknown subcommand they fail.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fail(cmd, usagef("unknown command %q; see '%s --help'", args[0], cmd.CommandPath()))
	}
	return cmd.Help()
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		// Do not echo them: one might be a token value.
		return fail(cmd, usagef("unexpected argument(s); see '%s --help'", cmd.CommandPath()))
	}
	return nil
}

// nArgs wants exactly n positional arguments, described by what.
func nArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fail(cmd, usagef("want %s, not %d argument(s); see '%s --help'", what, len(args), cmd.CommandPath()))
		}
		return nil
	}
}

// env is what a subcommand works with: the API, and how to print.
type env struct {
	cmd  *cobra.Command
	ctx  context.Context
	api  *client.Client
	addr string
	json bool
	out  io.Writer
	now  func() time.Time
}

// run adapts a subcommand to cobra; its errors are reported by fail.
func run(fn func(e *env, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		e, err := newEnv(ctx, cmd)
		if err == nil {
			err = fn(e, args)
		}
		if err != nil {
			return fail(cmd, explain(e, err))
		}
		return nil
	}
}

// newEnv finds the admin endpoint like 'caddy reload' does.
func newEnv(ctx context.Context, cmd *cobra.Command) (*env, error) {
	fl := cmd.Flags()
	address, _ := fl.GetString("address")
	configFile, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	asJSON, _ := fl.GetBool("json")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("determining the admin endpoint address: %w", err)
	}
	api, err := adminClient(addr)
	if err != nil {
		return nil, err
	}
	return &env{cmd: cmd, ctx: ctx, api: api, addr: addr, json: asJSON, out: cmd.OutOrStdout(), now: time.Now}, nil
}

// explain says what an unreachable endpoint means for the user.
func explain(e *env, err error) error {
	var te *client.TransportError
	switch {
	case e == nil || !errors.As(err, &te):
		return err
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	}
	return fmt.Errorf("cannot reach the admin endpoint at %s (is Caddy running? see --address and --config): %w", e.addr, te.Err)
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
