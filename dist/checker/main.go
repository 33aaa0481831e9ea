// Command checker checks Keygate's container packaging without a container
// engine, with the libraries the Docker tools use: the compose file as
// `docker compose config` loads it (compose-go), the Dockerfile as
// `docker build --check` lints it (BuildKit), and the build context as
// .dockerignore cuts it (patternmatcher). dist/check runs it.
//
//	checker compose compose.yaml
//	checker dockerfile Dockerfile
//	checker context <repository> <destination>
//
// It is a module of its own so that Keygate's go.mod carries none of this.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "compose":
		err = checkCompose(os.Args[2])
	case "dockerfile":
		err = checkDockerfile(os.Args[2])
	case "context":
		if len(os.Args) != 4 {
			usage()
		}
		err = copyContext(os.Args[2], os.Args[3])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "checker %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: checker compose <file> | dockerfile <file> | context <repository> <destination>")
	os.Exit(2)
}

// problems collects what a check found wrong.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d problem(s):", len(p))
	for _, s := range p {
		msg += "\n  - " + s
	}
	return fmt.Errorf("%s", msg)
}
