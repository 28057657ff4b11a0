// Command whocould is the one binary of whocould: the CLI (import, query, rebuild, demo) and,
// later, every service target.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// usageError is bad usage or bad input: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// globals are the flags every command takes.
type globals struct {
	dataDir  string
	logLevel string
	logger   *slog.Logger
	// server and token: work against a running whocould instead of the data directory.
	server, token string
}

// client is the API client of --server, or nil when the command works on the data directory.
func (g *globals) client() (*apiClient, error) {
	if g.server == "" {
		if g.token != "" {
			return nil, usagef("--token is for --server")
		}
		return nil, nil
	}
	return newAPIClient(g.server, g.token)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "whocould:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognises cobra's own usage errors (unknown flag, missing argument, ...).
func isCobraUsage(err error) bool {
	var fe *flagError
	return errors.As(err, &fe) || strings.HasPrefix(err.Error(), "unknown command")
}

type flagError struct{ err error }

func (e *flagError) Error() string { return e.err.Error() }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "whocould",
		Short:         "Who could do what, where, when, and through which path",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", g.logLevel)
			}
			g.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			if g.server != "" && !worksRemotely(cmd) {
				return usagef("--server: %q works on --data-dir only", cmd.CommandPath())
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{err} })
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", "./whocould-data", "the embedded data directory")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.server, "server", "", "work against a running whocould at this URL (e.g. http://127.0.0.1:8080) instead of --data-dir")
	root.PersistentFlags().StringVar(&g.token, "token", "", "API token for --server (default $WHOCOULD_TOKEN)")
	root.AddCommand(newImport(g), newQuery(g), newRebuild(g), newDemo(g), newBench(g), newServe(g), newDeadLetter(g), newAnalyze(g), newFindings(g), newHealthcheck())
	// Cobra adds these when executing; add them now so that they get the treatment below.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			strictHelp(c)
		}
		strictGroups(c)
		// Arguments errors from cobra (Args validators) are usage errors too.
		wrapArgs(c)
	}
	return root
}

// strictGroups makes every command group below the root (a command that only holds
// subcommands, such as query or completion) refuse an unknown subcommand, as cobra does at the
// top level, instead of printing its help and succeeding. With no argument at all it still
// prints its help.
func strictGroups(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		// `query frob --action A`: the unknown subcommand is the error, not its flags.
		c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
			if args := cmd.Flags().Args(); len(args) > 0 && cmd.HasSubCommands() {
				return &flagError{unknownCommand(cmd, args[0])}
			}
			return &flagError{err}
		})
	}
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
}

// unknownCommand is cobra's own error for an unknown command, with its suggestions.
func unknownCommand(c *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, c.CommandPath())
	if !c.DisableSuggestions {
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra's default
		}
		if s := c.SuggestionsFor(name); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
		}
	}
	return errors.New(msg)
}

// strictHelp makes `help TOPIC` a usage error when TOPIC names no command (cobra prints
// "Unknown help topic" and succeeds).
func strictHelp(help *cobra.Command) {
	show := help.Run
	if show == nil {
		return // not cobra's default help command
	}
	help.Run = nil
	help.RunE = func(cmd *cobra.Command, args []string) error {
		c, rest, err := cmd.Root().Find(args)
		if err == nil && c != nil && len(rest) > 0 && c.HasSubCommands() {
			err = unknownCommand(c, rest[0])
		}
		if err != nil {
			return &flagError{fmt.Errorf("help: %w", err)}
		}
		show(cmd, args)
		return nil
	}
}

// worksRemotely reports whether cmd can work against a running whocould (--server).
func worksRemotely(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "import", "query", "deadletter", "analyze", "findings":
			return true
		}
	}
	return false
}

func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		inner := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := inner(cmd, args); err != nil {
				return &flagError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}
