package layout

// The candidate rules, shared by the precompute (regions and variants), the crawl and the
// redirector (the choice of a mirror for one blob).

// Usable reports whether m is a candidate at all: enabled, and found healthy by the last crawl
// (a mirror never crawled is not). Per blob, it is a candidate only if it holds the blob (see
// Holds).
func (m *Mirror) Usable() bool {
	return m != nil && m.Enabled && m.Healthy && m.Generation > 0 && !m.Checked.IsZero()
}

// Holds reports whether m holds blob b: the generation the last crawl found on m is at least
// the one b first appeared in.
func (m *Mirror) Holds(b *Blob) bool { return b != nil && HeldAt(m.Generation, b.Since) }

// HeldAt reports whether a mirror holding generation g holds a blob that first appeared in
// generation since: Holds on bare numbers, for readers that keep their own copies of both.
func HeldAt(g, since uint64) bool { return since <= g }
