package peers

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Unit is what a test runs of a systemd unit of deploy/systemd: its ExecStart command lines,
// in order, and the exit statuses its SuccessExitStatus= lines count as success besides 0.
type Unit struct {
	Path        string
	Exec        [][]string
	SuccessExit []int
}

// ReadUnit reads the unit file at path as systemd runs it: each ExecStart= line split into
// fields (the units quote nothing), "${NAME}" replaced by the variable's value within a
// field, a field "$NAME" replaced by the value's words (none when it is empty). The
// variables are the unit's Environment= settings, overridden by vars (what an
// EnvironmentFile= would set).
func ReadUnit(path string, vars map[string]string) (*Unit, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading unit: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	env := map[string]string{}
	for _, line := range lines {
		if kv, ok := strings.CutPrefix(line, "Environment="); ok {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	maps.Copy(env, vars)
	u := &Unit{Path: path}
	for _, line := range lines {
		if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
			var args []string
			for _, a := range strings.Fields(cmd) {
				if name, ok := strings.CutPrefix(a, "$"); ok && !strings.HasPrefix(name, "{") {
					args = append(args, strings.Fields(env[name])...)
					continue
				}
				for k, v := range env {
					a = strings.ReplaceAll(a, "${"+k+"}", v)
				}
				args = append(args, a)
			}
			u.Exec = append(u.Exec, args)
		}
		if codes, ok := strings.CutPrefix(line, "SuccessExitStatus="); ok {
			for _, c := range strings.Fields(codes) {
				n, err := strconv.Atoi(c)
				if err != nil {
					return nil, fmt.Errorf("%s: SuccessExitStatus=%s: only numbers are supported here", path, codes)
				}
				u.SuccessExit = append(u.SuccessExit, n)
			}
		}
	}
	if len(u.Exec) == 0 {
		return nil, fmt.Errorf("%s: no ExecStart= line", path)
	}
	return u, nil
}

// Run runs the ExecStart commands one after the other, as systemd runs a oneshot service's,
// each within timeout, env (when not nil) added to the environment; it stops at the first
// that exits with a status neither 0 nor in SuccessExit, and returns that failure.
func (u *Unit) Run(timeout time.Duration, env []string) error {
	for _, args := range u.Exec {
		_, err := RunErr(timeout, env, args[0], args[1:]...)
		var exit *exec.ExitError
		if errors.As(err, &exit) && slices.Contains(u.SuccessExit, exit.ExitCode()) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", u.Path, err)
		}
	}
	return nil
}

// Program makes the commands run local wherever they name the program installed (the path
// the deployment installs a script of deploy/ at).
func (u *Unit) Program(installed, local string) {
	for _, args := range u.Exec {
		if args[0] == installed {
			args[0] = local
		}
	}
}
