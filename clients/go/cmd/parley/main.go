// Command parley is Parley's operations CLI.
//
// Usage:
//
//	parley import-articles [-addr URL] [-token T] DIR
//
// import-articles reads every *.md file under DIR (Markdown with YAML front
// matter: see package articles) and imports them with
// KnowledgeService.ImportArticles, in batches of at most 500. Importing the
// same folder again changes nothing. The token (an admin's) comes from
// -token or the PARLEY_TOKEN environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleyhq/parley/clients/go/articles"
	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// maxBatch is the most articles ImportArticles takes in one call.
const maxBatch = 500

const usage = `usage: parley import-articles [-addr URL] [-token T | env PARLEY_TOKEN] DIR`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// run runs the subcommand args names.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "import-articles":
		return importArticles(ctx, args[1:], stdout, stderr, getenv)
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n", args[0])
		return errUsage
	}
}

// importArticles is the import-articles subcommand.
func importArticles(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("import-articles", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "http://localhost:8080", "the Parley server's base URL")
	token := fs.String("token", "", "an admin token (default: $PARLEY_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	if *token == "" {
		*token = getenv("PARLEY_TOKEN")
	}
	if *token == "" {
		return errors.New("no token: pass -token or set PARLEY_TOKEN to an admin token")
	}
	dir := fs.Arg(0)
	if info, err := os.Stat(dir); err != nil {
		return err
	} else if !info.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	list, err := articles.ParseMarkdown(os.DirFS(dir))
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(list) == 0 {
		return fmt.Errorf("%s holds no *.md file", dir)
	}
	client := parley.New(*addr, parley.WithToken(*token))
	var created, updated, unchanged int32
	for start := 0; start < len(list); start += maxBatch {
		batch := list[start:min(start+maxBatch, len(list))]
		resp, err := client.Knowledge.ImportArticles(ctx, &parleyv1.ImportArticlesRequest{Articles: batch})
		if err != nil {
			done := ""
			if start > 0 {
				done = fmt.Sprintf("; articles 1 to %d were imported", start)
			}
			return fmt.Errorf("import articles %d to %d of %d%s: %w", start+1, start+len(batch), len(list), done, err)
		}
		created += resp.GetCreated()
		updated += resp.GetUpdated()
		unchanged += resp.GetUnchanged()
	}
	fmt.Fprintf(stdout, "%d articles: %d created, %d updated, %d unchanged\n", len(list), created, updated, unchanged)
	return nil
}
