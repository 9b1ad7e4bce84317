package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// addLogFormatFlag registers --log-format, shared by the long-running commands.
func addLogFormatFlag(fs *pflag.FlagSet) *string {
	return fs.String("log-format", "text", "log format: text or json")
}

// newLogger is the slog logger of a command on w in the --log-format given. Options that
// the libraries name in messages and string attributes are named by their flags.
func newLogger(cmd, format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(flagHandler{slog.NewTextHandler(w, nil)}), nil
	case "json":
		return slog.New(flagHandler{slog.NewJSONHandler(w, nil)}), nil
	}
	return nil, fmt.Errorf("%s: --log-format %q: want text or json", cmd, format)
}

// flagHandler names options by their flags in the records it passes on.
type flagHandler struct{ slog.Handler }

func (h flagHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, optionFlags.Replace(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(flagAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h flagHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for i := range as {
		as[i] = flagAttr(as[i])
	}
	return flagHandler{h.Handler.WithAttrs(as)}
}

func (h flagHandler) WithGroup(name string) slog.Handler {
	return flagHandler{h.Handler.WithGroup(name)}
}

func flagAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(optionFlags.Replace(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			a.Value = slog.StringValue(optionFlags.Replace(err.Error()))
		}
	}
	return a
}

// optionFlags names, in the libraries' errors, each option by the flag that sets it: the
// libraries name their options (Options.Source), the CLI its flags (--source). Longer names
// come first.
var optionFlags = strings.NewReplacer(
	"Options.Generate.Source", "--source",
	"Options.Generate.Out", "--out",
	"Options.Generate.DryRun", "--dry-run",
	"Options.ArchiveMaxAge", "--archive-max-age",
	"Options.KeepRemoved", "--keep-removed",
	"Options.Archive", "--archive",
	"Options.MaxReferrers", "--max-referrers",
	"Options.MaxEntries", "--max-entries",
	"Options.MaxPages", "--max-pages",
	"Options.MirrorsFile", "--mirrors",
	"Options.MMDirectory", "--mm-directory",
	"Source.MMDirectory", "--mm-directory",
	"Options.GCGrace", "--gc-grace",
	"Options.CAFile", "--ca-file",
	"Options.Source", "--source",
	"Options.Repos", "--repo",
	"Options.Auth", "--username/--password",
	"Options.Out", "--out",
	"Options.GeoIP", "--geoip",
	"config root", "--root",
	"config server", "--server",
	"ServeConfig.TLSCert", "--tls-cert",
	"ServeConfig.TLSKey", "--tls-key",
)

// flagError is a library error told with flags instead of option names.
type flagError struct {
	msg string
	err error
}

func (e *flagError) Error() string { return e.msg }
func (e *flagError) Unwrap() error { return e.err }

// withFlags names the options in err by their flags; errors.Is and As still see err.
func withFlags(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if m := optionFlags.Replace(msg); m != msg {
		return &flagError{m, err}
	}
	return err
}
