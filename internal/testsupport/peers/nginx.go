package peers

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NginxServer is one server block of a private nginx.
type NginxServer struct {
	// Port to listen on, on 127.0.0.1. Zero picks a free port.
	Port int
	// Root is the directory served at "/" (optional when Directives say what to serve).
	Root string
	// Directives are extra raw lines inside the server block (locations, proxy_pass, headers).
	Directives string
}

// NginxConfig describes a whole private nginx: one worker, everything (pid, logs, temporary
// files) inside Dir, no gzip, and a minimal types map.
type NginxConfig struct {
	// Dir holds the configuration, the pid file, the logs and nginx's temporary directories.
	Dir string
	// HTTP are extra raw lines in the http block (upstreams, maps, caches).
	HTTP    string
	Servers []NginxServer
}

// AccessLogFormat is the format of the access log, one request per line:
// "<method> <uri> <status> <body bytes sent> <time>", e.g.
// "GET /blobs/sha256/ab… 200 1048576 1790000000.123" (time: Unix seconds, milliseconds).
const AccessLogFormat = `$request_method $uri $status $body_bytes_sent $msec`

// AccessLogPath and ErrorLogPath are where a config written by Render logs, inside Dir.
func (c *NginxConfig) AccessLogPath() string { return filepath.Join(c.Dir, "access.log") }

// ErrorLogPath is the error log inside Dir.
func (c *NginxConfig) ErrorLogPath() string { return filepath.Join(c.Dir, "error.log") }

// ConfPath is where Write puts the configuration.
func (c *NginxConfig) ConfPath() string { return filepath.Join(c.Dir, "nginx.conf") }

// Render returns the configuration text. Ports must be set (see Write).
func (c *NginxConfig) Render() string {
	var b strings.Builder
	if os.Geteuid() == 0 {
		// Workers would otherwise switch to nobody, who cannot read the test's 0700 temp dirs.
		if u, err := user.Current(); err == nil {
			g := u.Username
			if grp, err := user.LookupGroupId(u.Gid); err == nil {
				g = grp.Name
			}
			fmt.Fprintf(&b, "user %s %s;\n", u.Username, g)
		}
	}
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes 1;
pid %s;
error_log %s warn;
events {
    worker_connections 1024;
}
http {
    types {
        application/json json;
        text/plain txt;
    }
    default_type application/octet-stream;
    gzip off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    server_tokens off;
    log_format regmirror '%s';
    access_log %s regmirror;
`, filepath.Join(c.Dir, "nginx.pid"), c.ErrorLogPath(), AccessLogFormat, c.AccessLogPath())
	for _, tp := range nginxTempPaths() {
		fmt.Fprintf(&b, "    %s %s;\n", tp, filepath.Join(c.Dir, "tmp", strings.TrimSuffix(tp, "_temp_path")))
	}
	if c.HTTP != "" {
		b.WriteString(indent(c.HTTP, "    "))
	}
	for _, s := range c.Servers {
		fmt.Fprintf(&b, "    server {\n        listen 127.0.0.1:%d;\n        server_name localhost;\n", s.Port)
		if s.Root != "" {
			fmt.Fprintf(&b, "        root %s;\n", s.Root)
		}
		if s.Directives != "" {
			b.WriteString(indent(s.Directives, "        "))
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// Write picks free ports for servers without one, creates Dir and the temporary directories,
// and writes the configuration to ConfPath.
func (c *NginxConfig) Write(t testing.TB) {
	t.Helper()
	for i := range c.Servers {
		if c.Servers[i].Port == 0 {
			c.Servers[i].Port = FreePort(t)
		}
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.ConfPath(), []byte(c.Render()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

var (
	nginxV     string
	nginxVOnce sync.Once
)

// nginxTempPaths lists the *_temp_path directives of the modules this nginx has, so every
// temporary directory is in the test's own directory and nothing touches /var/lib/nginx.
func nginxTempPaths() []string {
	nginxVOnce.Do(func() {
		if p, err := exec.LookPath("nginx"); err == nil {
			out, _ := exec.Command(p, "-V").CombinedOutput()
			nginxV = string(out)
		} else if out, err := exec.Command("/usr/sbin/nginx", "-V").CombinedOutput(); err == nil {
			nginxV = string(out)
		}
	})
	paths := []string{"client_body_temp_path"}
	for _, m := range []string{"proxy", "fastcgi", "uwsgi", "scgi"} {
		if !strings.Contains(nginxV, "--without-http_"+m+"_module") {
			paths = append(paths, m+"_temp_path")
		}
	}
	return paths
}

// Nginx is a private nginx started by StartNginx or StartNginxConfig.
type Nginx struct {
	Config *NginxConfig
	// Port and URL ("http://localhost:PORT/", ending in "/") are the first server's.
	Port int
	URL  string

	t    testing.TB
	bin  string
	proc *Process
}

// StartNginx serves root over HTTP as a mirror would (plain files, no gzip, no listing).
func StartNginx(t testing.TB, root string) *Nginx {
	t.Helper()
	return StartNginxConfig(t, &NginxConfig{Dir: t.TempDir(), Servers: []NginxServer{{Root: root}}})
}

// StartNginxConfig writes cfg (see NginxConfig.Write) and starts nginx with it, waiting until
// the first server answers. nginx stops when the test ends.
func StartNginxConfig(t testing.TB, cfg *NginxConfig) *Nginx {
	t.Helper()
	if len(cfg.Servers) == 0 {
		t.Fatal("nginx config without a server")
	}
	n := &Nginx{Config: cfg, t: t, bin: Require(t, "nginx")}
	cfg.Write(t)
	n.Port = cfg.Servers[0].Port
	n.URL = "http://localhost:" + strconv.Itoa(n.Port) + "/"
	n.Start()
	return n
}

// Start starts nginx again after Stop or Kill (same configuration and port).
func (n *Nginx) Start() {
	n.t.Helper()
	if n.proc != nil {
		select {
		case <-n.proc.Done():
		default:
			n.t.Fatal("nginx is already running")
		}
	}
	cmd := exec.Command(n.bin, "-e", n.Config.ErrorLogPath(), "-p", n.Config.Dir, "-c", n.Config.ConfPath())
	n.proc = Start(n.t, "nginx", cmd, httpAnswers(n.URL))
}

// Stop shuts nginx down (SIGTERM to its process group), simulating a mirror that went away:
// connections to its port are refused until Start.
func (n *Nginx) Stop() { n.proc.Stop() }

// Kill ends nginx at once with SIGKILL.
func (n *Nginx) Kill() { n.proc.Kill() }

// AccessLog returns the access log's lines so far, one request each, in AccessLogFormat.
func (n *Nginx) AccessLog() []string {
	n.t.Helper()
	b, err := os.ReadFile(n.Config.AccessLogPath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		n.t.Fatal(err)
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Requests counts the GET requests in the access log whose URI is path, e.g.
// "/blobs/sha256/<hex>", with status 200 or 206.
func (n *Nginx) Requests(path string) int {
	count := 0
	for _, line := range n.AccessLog() {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "GET" && f[1] == path && (f[2] == "200" || f[2] == "206") {
			count++
		}
	}
	return count
}

// httpAnswers succeeds once url gives any HTTP answer (a proxying server may answer 502 when
// what it proxies is down; it is up all the same).
func httpAnswers(url string) func() error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
}
