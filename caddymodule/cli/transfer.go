package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// transferCommands are "caddy apikey export|import".
func transferCommands() []*cobra.Command {
	export := &cobra.Command{
		Use:   "export [--output <file>]",
		Short: "Writes every account, key and token hash as JSON Lines",
		Long: `
Writes every account, key and token of the running Caddy's key store as JSON
Lines, to standard output or --output, and says on standard error how many of
each it wrote. Tokens are exported as their SHA-256 hashes (their values are
never stored), so that "caddy apikey import" on another store keeps them
working: treat the file as sensitive.`,
		Args: noArgs,
		RunE: run(cmdExport),
	}
	export.Flags().StringP("output", "o", "", "File to write (default: standard output)")

	importCmd := &cobra.Command{
		Use:   "import <file | ->",
		Short: "Loads an export into the running Caddy's key store",
		Long: `
Loads the JSON Lines written by "caddy apikey export" into the key store of
the running Caddy, record by record, and says how many records were created,
updated (a record with the same id was replaced) and unchanged. Importing the
same file twice changes nothing.`,
		Args: nArgs(1, "one file (or - for standard input)"),
		RunE: run(cmdImport),
	}
	return []*cobra.Command{export, importCmd}
}

func cmdExport(e *env, _ []string) error {
	out, where := e.cmd.OutOrStdout(), "standard output"
	path, _ := e.cmd.Flags().GetString("output")
	var f *os.File
	if path != "" {
		var err error
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return fmt.Errorf("creating the export file: %w", err)
		}
		out, where = f, path
	}
	n, err := e.api.Export(e.ctx, out)
	if f != nil {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing the export file: %w", cerr)
		}
		if err != nil {
			_ = os.Remove(path) // an incomplete export must not pass for one
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.cmd.ErrOrStderr(), "exported %s, %s, %s to %s\n",
		count(n.Accounts, "account"), count(n.Keys, "key"), count(n.Tokens, "token"), where)
	return nil
}

func cmdImport(e *env, args []string) error {
	var in io.Reader = e.cmd.InOrStdin()
	where := "standard input"
	if args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return fmt.Errorf("opening the export: %w", err)
		}
		defer f.Close()
		in, where = f, args[0]
	}
	res, err := e.api.Import(e.ctx, in)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(res)
	}
	_, err = fmt.Fprintf(e.out, "imported %s from %s: %d created, %d updated, %d unchanged\n",
		count(res.Imported, "record"), where, res.Created, res.Updated, res.Unchanged)
	return err
}
