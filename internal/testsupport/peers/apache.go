package peers

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ApacheModules are the modules a private Apache loads (those Debian builds as shared
// objects; the rest, such as unixd and log_config, are built in).
var ApacheModules = []string{"mpm_event", "authz_core", "mime", "headers", "rewrite", "alias", "dir", "log_config", "unixd", "env"}

// ApacheConfig describes a private Apache httpd: one virtual host on 127.0.0.1, everything
// (pid, logs, runtime files) in Dir.
type ApacheConfig struct {
	// Dir holds the configuration, the pid file, the logs and the runtime directory.
	Dir string
	// Port on 127.0.0.1; zero picks a free port.
	Port int
	// Directives are raw lines inside the <VirtualHost>.
	Directives string
	// Readable are directories Apache's unprivileged user must read (when the test runs as
	// root, Apache serves as www-data): they and their parents get o+x, they o+r.
	Readable []string
}

// Apache is a private Apache httpd started by StartApache.
type Apache struct {
	Config *ApacheConfig
	// URL is "http://localhost:PORT/".
	URL  string
	Port int
	proc *Process
}

// ConfPath is where StartApache writes the configuration.
func (c *ApacheConfig) ConfPath() string { return filepath.Join(c.Dir, "apache2.conf") }

// ErrorLogPath is the error log.
func (c *ApacheConfig) ErrorLogPath() string { return filepath.Join(c.Dir, "error.log") }

// AccessLogPath is the access log, one "<method> <path> <status> <bytes>" line per request.
func (c *ApacheConfig) AccessLogPath() string { return filepath.Join(c.Dir, "access.log") }

// Render returns the configuration text.
func (c *ApacheConfig) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %s\nDefaultRuntimeDir %s\nPidFile %s\nErrorLog %s\nLogLevel warn\n",
		c.Dir, filepath.Join(c.Dir, "run"), filepath.Join(c.Dir, "apache2.pid"), c.ErrorLogPath())
	for _, m := range ApacheModules {
		so := filepath.Join("/usr/lib/apache2/modules", "mod_"+m+".so")
		if _, err := os.Stat(so); err == nil {
			fmt.Fprintf(&b, "LoadModule %s_module %s\n", m, so)
		}
	}
	if os.Geteuid() == 0 {
		b.WriteString("User www-data\nGroup www-data\n")
	}
	types := "/etc/mime.types"
	if _, err := os.Stat(types); err != nil {
		types = filepath.Join(c.Dir, "mime.types")
	}
	docroot := filepath.Join(c.Dir, "docroot")
	fmt.Fprintf(&b, `Listen 127.0.0.1:%d
ServerName localhost
TypesConfig %s
LogFormat "%%m %%U %%>s %%B" regmirror
CustomLog %s regmirror
<Directory />
    Require all denied
    AllowOverride None
</Directory>
<VirtualHost 127.0.0.1:%d>
    ServerName localhost
    DocumentRoot %s
`, c.Port, types, c.AccessLogPath(), c.Port, docroot)
	b.WriteString(indent(c.Directives, "    "))
	b.WriteString("</VirtualHost>\n")
	return b.String()
}

// StartApache writes cfg and starts "apache2 -f CONF -DFOREGROUND", waiting until it answers.
// It stops when the test ends.
func StartApache(t testing.TB, cfg *ApacheConfig) *Apache {
	t.Helper()
	bin := Require(t, "apache2")
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Port == 0 {
		cfg.Port = FreePort(t)
	}
	for _, d := range []string{"run", "docroot"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "mime.types"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		for _, d := range append([]string{cfg.Dir}, cfg.Readable...) {
			makeReadable(t, d)
		}
	}
	if err := os.WriteFile(cfg.ConfPath(), []byte(cfg.Render()), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Apache{Config: cfg, Port: cfg.Port, URL: "http://localhost:" + strconv.Itoa(cfg.Port) + "/"}
	cmd := exec.Command(bin, "-d", cfg.Dir, "-f", cfg.ConfPath(), "-DFOREGROUND")
	// apache2 reads APACHE_* variables from Debian's envvars only through apache2ctl; give it
	// none.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	a.proc = Start(t, "apache2", cmd, httpAnswers(a.URL))
	return a
}

// Stop shuts Apache down.
func (a *Apache) Stop() { a.proc.Stop() }

// ErrorLog returns the tail of the error log, for failure messages.
func (a *Apache) ErrorLog() string { return Tail(a.Config.ErrorLogPath(), 30) }

// makeReadable gives others search permission on dir and its parents and read permission on
// everything below dir, so a server that dropped root privileges can serve it.
func makeReadable(t testing.TB, dir string) {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(abs); p != "/" && p != "."; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = filepath.Walk(abs, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		mode := fi.Mode().Perm() | 0o004
		if fi.IsDir() {
			mode |= 0o001
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatalf("making %s readable: %v", dir, err)
	}
}
