// Package deploy holds the deployment files (systemd units in systemd/, an Ansible playbook in
// ansible/) and the tests that check them with the real tools: systemd-analyze verify (Debian
// package systemd) and ansible-playbook --syntax-check (Debian package ansible-core).
package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/mirrors"
	"github.com/regmirror/regmirror/internal/publish"
	"github.com/regmirror/regmirror/internal/testsupport/peers"
	"github.com/regmirror/regmirror/layout"
	"github.com/regmirror/regmirror/redirector"
)

// need finds a tool or fails loudly, naming the Debian package; only -short skips.
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("checks deployment files with real tools; skipped by -short")
	}
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s (make test installs it)", tool, pkg)
	}
	return p
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

const (
	installedBinary = "/usr/local/bin/regmirror"
	// installedSync is where the Ansible role installs mirror-sync and the sync unit runs it.
	installedSync = "/usr/local/lib/regmirror/mirror-sync"
)

// syncScript is the absolute path of deploy/mirror-sync.
func syncScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("mirror-sync")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// units copies the units into a temporary directory with the binary path pointing at a
// regmirror built from this checkout (verify checks that ExecStart's program exists).
func units(t *testing.T) (dir string, names []string) {
	t.Helper()
	bin := peers.Regmirror(t)
	dir = t.TempDir()
	files, err := filepath.Glob("systemd/regmirror-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no units in deploy/systemd")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		b = bytes.ReplaceAll(b, []byte(installedSync), []byte(syncScript(t)))
		if err := os.WriteFile(filepath.Join(dir, name), bytes.ReplaceAll(b, []byte(installedBinary), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return dir, names
}

func TestSystemdUnitsVerify(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	dir, names := units(t)
	for _, want := range []string{"regmirror-serve.service", "regmirror-listen.service", "regmirror-generate.service", "regmirror-generate.timer", "regmirror-sync.service"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("deploy/systemd lacks %s", want)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			// verify exits 0 on some warnings ("Invalid environment assignment, ignoring"):
			// any output is a failure.
			stdout, stderr := run(t, dir, []string{"SYSTEMD_LOG_COLOR=0"}, analyze, "verify", "--man=no", name)
			if out := strings.TrimSpace(stdout + stderr); out != "" {
				t.Errorf("systemd-analyze verify %s: got output, want none:\n%s", name, out)
			}
		})
	}
}

// TestSystemdUnitsHardened holds the services to a low exposure score
// (systemd-analyze security: 0 is fully locked down, 10 is unprotected).
func TestSystemdUnitsHardened(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	dir, names := units(t)
	for _, name := range names {
		if !strings.HasSuffix(name, ".service") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			run(t, dir, []string{"SYSTEMD_LOG_COLOR=0"}, analyze, "security", "--offline=yes", "--no-pager", "--threshold=20", name)
		})
	}
	serve, err := os.ReadFile("systemd/regmirror-serve.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadOnlyPaths=", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(string(serve), line) {
			t.Errorf("regmirror-serve.service lacks %q", strings.TrimSpace(line))
		}
	}
}

func TestAnsibleSyntax(t *testing.T) {
	playbook := need(t, "ansible-playbook", "ansible-core")
	stdout, _ := run(t, "ansible", []string{"ANSIBLE_LOCALHOST_WARNING=False", "ANSIBLE_NOCOLOR=1"}, playbook, "--syntax-check", "-i", "inventory.example.ini", "site.yml")
	if !strings.Contains(stdout, "playbook: site.yml") {
		t.Errorf("ansible-playbook --syntax-check: got %q, want it to name the playbook", stdout)
	}
}

// render renders a role's template with the roles' defaults and extra variables, through
// Ansible's own template module.
func render(t *testing.T, role, template, extraJSON string) string {
	t.Helper()
	ansible := need(t, "ansible", "ansible-core")
	dest := filepath.Join(t.TempDir(), "out")
	args := []string{"-i", "localhost,", "-c", "local", "localhost", "-m", "ansible.builtin.template",
		"-a", "src=roles/" + role + "/templates/" + template + " dest=" + dest,
		"-e", "@roles/regmirror_common/defaults/main.yml", "-e", "@roles/" + role + "/defaults/main.yml"}
	if extraJSON != "" {
		args = append(args, "-e", extraJSON)
	}
	run(t, "ansible", []string{"ANSIBLE_LOCALHOST_WARNING=False", "ANSIBLE_NOCOLOR=1"}, ansible, args...)
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMirrorsTemplate(t *testing.T) {
	out := render(t, "regmirror_generator", "mirrors.yaml.j2", `{"regmirror_origin":"https://origin.example.org/containers/","regmirror_mirrors":[
		{"name":"mirror.example.de","url":"https://mirror.example.de/pub/containers/","country":"DE","bandwidth":1000,"netblocks":["192.0.2.0/24"],"enabled":true},
		{"name":"m2.example.jp","url":"http://m2.example.jp/c/","country":"JP","enabled":false,"content":["arm64","archive"]}]}`)
	path := filepath.Join(t.TempDir(), "mirrors.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := mirrors.Load(path)
	if err != nil {
		t.Fatalf("the rendered mirrors file does not load: %v\n%s", err, out)
	}
	if got, want := f.Origin, "https://origin.example.org/containers/"; got != want {
		t.Errorf("origin: got %q, want %q", got, want)
	}
	if got, want := len(f.Mirrors), 2; got != want {
		t.Fatalf("mirrors: got %d, want %d\n%s", got, want, out)
	}
	m := f.Mirrors[0]
	if m.Name != "mirror.example.de" || m.Country != "DE" || m.Bandwidth != 1000 || len(m.Netblocks) != 1 || !m.Enabled {
		t.Errorf("first mirror: got %+v", m)
	}
	if f.Mirrors[1].Enabled {
		t.Errorf("second mirror: got enabled, want disabled")
	}
	if got, want := f.Mirrors[1].Content, []string{"arm64", "archive"}; !slices.Equal(got, want) {
		t.Errorf("second mirror's content: got %v, want %v", got, want)
	}
}

func TestGenerateEnvTemplate(t *testing.T) {
	cases := []struct {
		name, vars string
		want       []string
	}{
		{"defaults", "", []string{
			"REGMIRROR_SOURCE=http://localhost:5000\n",
			"REGMIRROR_TREE=/srv/regmirror/tree\n",
			"REGMIRROR_GENERATE_ARGS=--jobs=8 --gc-grace=168h\n",
			"REGMIRROR_LISTEN_ARGS=--listen=127.0.0.1:8090 --debounce=5s\n",
			"REGMIRROR_CRAWL_ARGS=\n",
		}},
		{"repos, mirrors and a secret", `{"regmirror_repos":["fedora/**","toolbox"],"regmirror_listen_secret":"s","regmirror_mirrors":[{"name":"m","url":"https://m/","country":"DE"}]}`, []string{
			"REGMIRROR_GENERATE_ARGS=--jobs=8 --gc-grace=168h --repo=fedora/** --repo=toolbox --mirrors=/etc/regmirror/mirrors.yaml\n",
			"REGMIRROR_LISTEN_ARGS=--listen=127.0.0.1:8090 --debounce=5s --secret-file=/etc/regmirror/listen.secret\n",
			"REGMIRROR_CRAWL_ARGS=--mirrors=/etc/regmirror/mirrors.yaml\n",
		}},
		{"archive", `{"regmirror_archive":["fedora:3[0-9]","toolbox:3*"],"regmirror_keep_removed":true,"regmirror_archive_max_age":"8760h"}`, []string{
			"REGMIRROR_GENERATE_ARGS=--jobs=8 --gc-grace=168h --archive=fedora:3[0-9] --archive=toolbox:3* --keep-removed --archive-max-age=8760h\n",
		}},
		{"an origin without mirrors", `{"regmirror_origin":"https://origin.example.org/containers/"}`, []string{
			"REGMIRROR_GENERATE_ARGS=--jobs=8 --gc-grace=168h --mirrors=/etc/regmirror/mirrors.yaml\n",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := render(t, "regmirror_generator", "generate.env.j2", c.vars)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("generate.env lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// syncArgs is REGMIRROR_SYNC_ARGS as the redirector role renders serve.env with vars.
func syncArgs(t *testing.T, vars string) string {
	t.Helper()
	env := render(t, "regmirror_redirector", "serve.env.j2", vars)
	for line := range strings.SplitSeq(env, "\n") {
		if v, ok := strings.CutPrefix(line, "REGMIRROR_SYNC_ARGS="); ok {
			return v
		}
	}
	t.Fatalf("serve.env sets no REGMIRROR_SYNC_ARGS:\n%s", env)
	return ""
}

// TestSyncUnitCommands runs regmirror-sync.service's ExecStart line (deploy/mirror-sync,
// installed where the Ansible role puts it, with the options the role sets) against a local
// tree, two generations in a row, and starts a redirector on the copy: with the role's
// defaults (no origin) the whole tree is copied and serves; with regmirror_origin set only
// regmirror/ is (--meta-only), and the metadata's origin makes it serve; the metadata alone
// without an origin is refused, in one line naming what to set.
func TestSyncUnitCommands(t *testing.T) {
	need(t, "rsync", "rsync")
	defaults, err := os.ReadFile("ansible/roles/regmirror_common/defaults/main.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"regmirror_sync_script: \"{{ playbook_dir }}/../mirror-sync\"", "regmirror_sync_script_path: " + installedSync} {
		if !strings.Contains(string(defaults), want+"\n") {
			t.Errorf("the Ansible role does not install the script the unit runs: its defaults lack %q", want)
		}
	}
	const origin = "https://origin.example.org/containers/"
	metaOnly := syncArgs(t, `{"regmirror_origin":"`+origin+`"}`)
	cases := []struct {
		name, args, origin string
		blobs              bool   // blobs/ copied
		refused            string // serve refuses the copy, naming this
	}{
		{name: "role defaults", args: syncArgs(t, ""), blobs: true},
		{name: "role with an origin", args: metaOnly, origin: origin},
		{name: "metadata only without an origin", args: metaOnly, refused: "set origin: in the mirrors file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			tree := layout.NewTree(src)
			data := []byte("blob")
			d := layout.MustDigest("sha256:2f41d4a5f0cba6e7ec1b3f7b2a5b6f7d8e9f0a1b2c3d4e5f60718293a4b5c6d7")
			if err := layout.WriteFile(tree.Path(layout.BlobPath(d)), data); err != nil {
				t.Fatal(err)
			}
			for gen := uint64(1); gen <= 2; gen++ {
				m := layout.NewMeta(gen)
				m.Blobs[d] = &layout.Blob{Size: int64(len(data)), Since: 1}
				m.Origin = c.origin
				if _, err := publish.Publish(tree, m, publish.Change{}); err != nil {
					t.Fatal(err)
				}
				// A writer's unfinished file is never copied.
				if err := os.WriteFile(tree.Path(layout.MetaDir+"/"+layout.TempPrefix+"x"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				unit, err := peers.ReadUnit("systemd/regmirror-sync.service",
					map[string]string{"REGMIRROR_SYNC_SOURCE": src, "REGMIRROR_TREE": dst, "REGMIRROR_SYNC_ARGS": c.args})
				if err != nil {
					t.Fatal(err)
				}
				unit.Program(installedSync, syncScript(t))
				if n := len(unit.Exec); n != 1 {
					t.Fatalf("regmirror-sync.service: got %d ExecStart lines, want 1 (mirror-sync)", n)
				}
				if err := unit.Run(3*time.Minute, nil); err != nil {
					t.Fatal(err)
				}
				m, _, err = layout.NewTree(dst).Load()
				if err != nil {
					t.Fatalf("generation %d: the synced metadata does not load: %v", gen, err)
				}
				if m.Generation != gen {
					t.Errorf("synced generation: got %d, want %d", m.Generation, gen)
				}
			}
			metas, _ := filepath.Glob(filepath.Join(dst, "regmirror", "meta", "*"))
			srcMetas, _ := filepath.Glob(filepath.Join(src, "regmirror", "meta", "*"))
			if len(metas) != len(srcMetas) {
				t.Errorf("metadata files: got %d, want %d (deletions carried over)", len(metas), len(srcMetas))
			}
			if _, err := os.Stat(filepath.Join(dst, "regmirror", layout.TempPrefix+"x")); err == nil {
				t.Errorf("a temporary file was copied")
			}
			_, err := os.Stat(filepath.Join(dst, layout.BlobPath(d)))
			if got := err == nil; got != c.blobs {
				t.Errorf("blob copied: got %v, want %v", got, c.blobs)
			}
			s, err := redirector.New(redirector.Options{Tree: dst})
			switch {
			case c.refused == "" && err != nil:
				t.Errorf("serve on the copy: %v", err)
			case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused) || strings.Contains(err.Error(), "\n")):
				t.Errorf("serve on the copy: got %v, want one line containing %q", err, c.refused)
			}
			if err == nil {
				s.Close()
			}
		})
	}
}
