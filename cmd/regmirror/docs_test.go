package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// docCommand is one command line of a code block in the docs, continuation lines joined.
type docCommand struct {
	where string // file:line
	line  string
}

// docFiles are the documents whose command blocks TestDocCommands checks: the README, docs/
// and any README under deploy/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"../../README.md"}
	for _, pattern := range []string{"../../docs/*.md", "../../deploy/*/README*", "../../deploy/README*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

// docCommands returns the lines of the code blocks (fenced, or indented four spaces after a
// blank line) of file that start with one of prefixes, with "\\" continuations joined and a
// trailing "# comment" cut. Diagrams (blocks with box-drawing characters) have no commands.
func docCommands(t *testing.T, file string, prefixes ...string) []docCommand {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	type block struct {
		first int // index of its first line
		lines []string
	}
	var blocks []block
	for i := 0; i < len(lines); i++ {
		switch {
		case strings.HasPrefix(strings.TrimSpace(lines[i]), "```"):
			b := block{first: i + 1}
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				b.lines = append(b.lines, lines[i])
			}
			blocks = append(blocks, b)
		case strings.HasPrefix(lines[i], "    ") && i > 0 && strings.TrimSpace(lines[i-1]) == "":
			b := block{first: i}
			for ; i < len(lines) && (strings.HasPrefix(lines[i], "    ") || strings.TrimSpace(lines[i]) == ""); i++ {
				b.lines = append(b.lines, lines[i])
			}
			i--
			blocks = append(blocks, b)
		}
	}
	var out []docCommand
	for _, b := range blocks {
		if strings.ContainsAny(strings.Join(b.lines, "\n"), "─│▶▼▲└├") {
			continue // a diagram
		}
		for k := 0; k < len(b.lines); k++ {
			start := k
			cmd := strings.TrimSpace(b.lines[k])
			for strings.HasSuffix(cmd, `\`) && k+1 < len(b.lines) {
				k++
				cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(b.lines[k])
			}
			if j := strings.Index(cmd, " #"); j >= 0 {
				cmd = strings.TrimSpace(cmd[:j])
			}
			for _, p := range prefixes {
				if strings.HasPrefix(cmd, p) {
					out = append(out, docCommand{where: filepath.Base(file) + ":" + strconv.Itoa(b.first+start+1), line: cmd})
					break
				}
			}
		}
	}
	return out
}

var docFlagRe = regexp.MustCompile(`(?:^|[\s\[|])(--[a-z][a-z0-9-]*)`)

// docFlags returns the --flags a line (or a --help text) names.
func docFlags(s string) []string {
	var flags []string
	for _, m := range docFlagRe.FindAllStringSubmatch(s, -1) {
		flags = append(flags, m[1])
	}
	return flags
}

var helpFlagRe = regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?(--[a-z][a-z0-9-]*)`)

// helpFlags returns the flags a --help text lists, one a line.
func helpFlags(help string) []string {
	var flags []string
	for _, m := range helpFlagRe.FindAllStringSubmatch(help, -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// docPlaceholder matches what a reader must replace: an upper-case word (URL, DIR, NAME) or
// <something>, or a synopsis's [optional part].
var docPlaceholder = regexp.MustCompile(`(^|[\s=/:])[A-Z][A-Z0-9_-]*[A-Z]($|[\s/:.,])|<[a-z][a-z0-9-]*>|\[`)

// TestDocCommands: every regmirror command line in the docs' code blocks (commands and
// synopses) names a command, and only flags that command's --help lists; those with nothing
// to replace run as written; every `make` target exists; every mirror-sync line uses only
// flags deploy/mirror-sync --help lists.
func TestDocCommands(t *testing.T) {
	var regmirrorLines, makeLines, syncLines []docCommand
	for _, f := range docFiles(t) {
		regmirrorLines = append(regmirrorLines, docCommands(t, f, "regmirror ")...)
		makeLines = append(makeLines, docCommands(t, f, "make ")...)
		syncLines = append(syncLines, docCommands(t, f, "mirror-sync ", "/usr/local/lib/regmirror/mirror-sync ")...)
	}
	if len(regmirrorLines) < 15 || len(makeLines) < 2 || len(syncLines) < 4 {
		t.Fatalf("found %d regmirror, %d make and %d mirror-sync lines in the docs' code blocks, want at least 15, 2 and 4",
			len(regmirrorLines), len(makeLines), len(syncLines))
	}

	helps := map[string][]string{}
	for _, c := range regmirrorLines {
		t.Run(c.where, func(t *testing.T) {
			words := strings.Fields(c.line)
			sub := words[1]
			help, ok := helps[sub]
			if !ok {
				out, err := runCmd(t, sub, "--help")
				if !errors.Is(err, pflag.ErrHelp) || !strings.Contains(out, "Usage: regmirror "+sub) {
					t.Fatalf("%s: %q: no command %s (`regmirror %[3]s --help`: %v):\n%s", c.where, c.line, sub, err, out)
				}
				help = helpFlags(out)
				helps[sub] = help
			}
			for _, f := range docFlags(c.line) {
				if !slices.Contains(help, f) {
					t.Errorf("%s: %q: regmirror %s has no flag %s", c.where, c.line, sub, f)
				}
			}
			if docPlaceholder.MatchString(c.line) {
				return // a synopsis, or a command with values to replace
			}
			if strings.HasPrefix(c.where, "mirrormanager.md:") {
				return // run by TestDocMirrorManagerCommands
			}
			if sub != "mirror-config" && sub != "version" {
				t.Fatalf("%s: %q reads as a command to run as is: teach this test to run it, or mark its placeholders", c.where, c.line)
			}
			out, err := runCmd(t, words[1:]...)
			if err != nil || out == "" {
				t.Errorf("%s: %q: %v\n%s", c.where, c.line, err, out)
			}
		})
	}

	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range makeLines {
		for _, target := range strings.Fields(c.line)[1:] {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).Match(makefile) {
				t.Errorf("%s: %q: the Makefile has no target %s", c.where, c.line, target)
			}
		}
	}

	usage, err := exec.Command("sh", "../../deploy/mirror-sync", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/mirror-sync --help: %v\n%s", err, usage)
	}
	syncFlags := helpFlags(string(usage))
	for _, c := range syncLines {
		for _, f := range docFlags(c.line) {
			if !slices.Contains(syncFlags, f) {
				t.Errorf("%s: %q: deploy/mirror-sync has no flag %s", c.where, c.line, f)
			}
		}
	}
}

// TestDocRouteCommand runs the docs' `curl … /route` lines as written, against the demo's tree
// served where `make demo` serves it (localhost:5000, here a free port in its place).
func TestDocRouteCommand(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed (Debian: curl): ", err)
	}
	var lines []docCommand
	for _, f := range docFiles(t) {
		lines = append(lines, docCommands(t, f, "curl ")...)
	}
	if len(lines) == 0 {
		t.Fatal("no curl line in the docs' code blocks")
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if out, err := runCmd(t, "demo", "--once", "--out", tree, "--listen", "127.0.0.1:0"); err != nil {
		t.Fatalf("demo --once: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	stop := startServe(t, "--tree", tree, "--listen", addr, "--probe-interval", "0")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, &http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/v2/").Body.Close()
	for _, c := range lines {
		if !strings.Contains(c.line, "localhost:5000") {
			t.Errorf("%s: %q: not against `make demo`'s server (localhost:5000)", c.where, c.line)
			continue
		}
		cmd := exec.CommandContext(context.Background(), "sh", "-c", strings.ReplaceAll(c.line, "localhost:5000", addr))
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(curl)+":"+os.Getenv("PATH"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %q: %v\n%s", c.where, c.line, err, stderr.String())
			continue
		}
		if strings.Contains(c.line, "application/json") {
			var v map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &v); err != nil || len(v) == 0 {
				t.Errorf("%s: %q: not a JSON object (%v):\n%s", c.where, c.line, err, stdout.String())
			}
		}
	}
}

// TestDocMirrorManagerCommands runs docs/mirrormanager.md's generate, crawl and serve lines
// with only what the text says to replace replaced: the registry, the tree, the mirrorlist
// cache and the GeoIP databases (test stand-ins at other paths), and serve given a free
// --listen.
func TestDocMirrorManagerCommands(t *testing.T) {
	lines := docCommands(t, "../../docs/mirrormanager.md", "regmirror ")
	if len(lines) != 3 {
		t.Fatalf("docs/mirrormanager.md: got %d regmirror lines, want generate, crawl and serve: %q", len(lines), lines)
	}
	src := demoSource(t)
	tree := filepath.Join(t.TempDir(), "containers")
	mirrors := mmMirrors(t, tree)
	cache := filepath.Join(t.TempDir(), "mirrorlist_cache.proto")
	if err := mmCache(mirrors.URL).Write(cache); err != nil {
		t.Fatal(err)
	}
	geo, asn := mmGeo(t)
	subst := strings.NewReplacer("https://<registry-host>", src, "/srv/pub/containers", tree,
		"/var/lib/mirrormanager/mirrorlist_cache.proto", cache,
		"/var/lib/GeoIP/GeoLite2-Country.mmdb", geo, "/var/lib/GeoIP/GeoLite2-ASN.mmdb", asn)
	for i, want := range []string{"generate", "crawl", "serve"} {
		c := lines[i]
		args := strings.Fields(subst.Replace(c.line))
		if args[1] != want || docPlaceholder.MatchString(strings.Join(args, " ")) {
			t.Fatalf("%s: %q: want a %s command with nothing left to replace, got %q", c.where, c.line, want, args)
		}
		var stdout, stderr bytes.Buffer
		var err error
		switch want {
		case "generate":
			err = generate(context.Background(), args[2:], nil, &stdout, &stderr, noKeychain)
		case "crawl":
			err = run(context.Background(), args[1:], &stdout, &stderr)
		case "serve":
			addr := freeAddr(t)
			stop := startServe(t, append(args[2:], "--listen", addr)...)
			resp := waitFor(t, &http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/v2/fedora/manifests/42")
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: serve answered %d for fedora:42", c.where, resp.StatusCode)
			}
			err = stop()
		}
		if err != nil {
			t.Fatalf("%s: %q: %v\n%s%s", c.where, c.line, err, stdout.String(), stderr.String())
		}
	}
}
