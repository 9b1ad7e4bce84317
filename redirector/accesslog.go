package redirector

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// logAccess writes one structured line per request: who (client address as used for the
// region, and the TCP peer), what, the answer, and where a blob was sent.
func (s *Server) logAccess(st *reqState, r *http.Request, start time.Time) {
	if !s.access.Handler().Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	client := st.client
	if !st.resolved {
		client, _ = clientAddr(r, s.trusted)
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("client", client.String()),
		slog.String("method", r.Method),
		slog.String("path", truncN(r.URL.Path, 300)),
		slog.Int("status", st.status),
		slog.Int64("bytes", st.bytes),
		slog.Duration("duration", time.Since(start)),
	)
	if st.resolved {
		attrs = append(attrs, slog.String("country", st.country), slog.String("region", st.region))
		if st.asn != 0 {
			attrs = append(attrs, slog.Uint64("asn", uint64(st.asn)))
		}
	}
	if st.mirror != "" {
		attrs = append(attrs, slog.String("mirror", st.mirror))
	}
	if peer := r.RemoteAddr; peer != "" && len(s.trusted) > 0 {
		attrs = append(attrs, slog.String("peer", peer))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, slog.String("user_agent", trunc(ua)))
	}
	// A record without a program counter: slog's Logger methods would walk the stack for
	// the caller on every request.
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	rec.AddAttrs(attrs...)
	_ = s.access.Handler().Handle(context.Background(), rec)
}
