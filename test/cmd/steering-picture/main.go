// Command steering-picture draws how corrald's steering program chooses
// the instance of a new connection (docs/steering.md), from the program
// itself: it takes the instructions that corrald loads (steer.Listing,
// over placeholder maps: nothing is loaded, no privilege is needed), splits
// them into basic blocks at the jumps and their targets, and draws the
// blocks with their instructions and the jumps between them, each labelled
// with the condition it tests. Rules (describe.go) name what each block
// does from what it reads and calls; a block none of them knows stops the
// program, so a changed program cannot leave a stale picture. Beside the
// flow: the two maps, which instances corrald puts in the table, and what
// steer.Table does when one leaves, computed with steer.Table.
//
//	go run ./test/cmd/steering-picture [-out docs/steering.png] [-dot FILE]
//
// It needs Graphviz's dot (`make steering-picture` installs it, as
// `make deps` does); -dot - writes the graph without drawing it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/corral-pool/corral/internal/steer"
)

func main() {
	out := flag.String("out", "docs/steering.png", "the picture to write: .png or .svg")
	dotOut := flag.String("dot", "", "also write the graph in Graphviz's language to this file (- for standard output, and no picture)")
	flag.Parse()
	if err := run(*out, *dotOut); err != nil {
		fmt.Fprintln(os.Stderr, "steering-picture:", err)
		os.Exit(1)
	}
}

func run(out, dotOut string) error {
	prog := steer.Listing()
	bs, err := blocks(prog)
	if err != nil {
		return err
	}
	if err := describe(prog, bs); err != nil {
		return err
	}
	src := graph(prog, bs)
	switch dotOut {
	case "":
	case "-":
		_, err := os.Stdout.WriteString(src)
		return err
	default:
		if err := os.WriteFile(dotOut, []byte(src), 0o644); err != nil {
			return err
		}
	}
	format := strings.TrimPrefix(filepath.Ext(out), ".")
	if format != "png" && format != "svg" {
		return fmt.Errorf("-out %s: the picture is a .png or a .svg", out)
	}
	dot, err := exec.LookPath("dot")
	if err != nil {
		return errors.New("dot (Graphviz) is not on PATH: apt-get install graphviz (make steering-picture does), or -dot FILE to write the graph only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dot, "-T"+format, "-o", out)
	cmd.Stdin = strings.NewReader(src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dot -T%s -o %s: %w: %s", format, out, err, strings.TrimSpace(stderr.String()))
	}
	fmt.Printf("steering-picture: wrote %s: %d instructions in %d blocks\n", out, len(prog), len(bs))
	return nil
}
