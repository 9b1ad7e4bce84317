package redirector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/regmirror/regmirror/layout"
)

// retryFailedAfter is how long a stamp whose generation failed to load is left alone before
// it is tried again (its metadata may still be arriving by rsync).
const retryFailedAfter = 10 * time.Second

// watchState is the watcher's memory, guarded by Server.watchMu.
type watchState struct {
	stamp    []byte // content of the stamp last acted on
	failed   []byte // content of a stamp whose generation was refused
	failedAt time.Time
	geo      dbWatch // the GeoIP database
	asn      dbWatch // the ASN database
}

// dbWatch is the watcher's memory of one MaxMind DB file.
type dbWatch struct {
	id      fileID // the file as loaded
	failed  fileID // a file version that was refused
	missing bool
}

// loadInitial loads the generation at start.
func (s *Server) loadInitial() error {
	b, err := os.ReadFile(s.tree.Path(layout.CurrentFile))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tree %s has no generation yet (no %s): run 'regmirror generate' first", s.tree.Dir(), layout.CurrentFile)
	}
	if err != nil {
		return fmt.Errorf("reading generation stamp: %w", err)
	}
	g, err := s.load()
	if err != nil {
		return fmt.Errorf("loading tree %s: %w", s.tree.Dir(), err)
	}
	s.watch.stamp = b
	s.install(g)
	debug.FreeOSMemory() // decoding the metadata left garbage several times the generation's size
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.log.Info("generation loaded", "generation", g.number, "repositories", len(g.repos), "manifests", g.manifestCount,
		"variantSets", g.variantSetCount, "blobs", g.blobCount, "regions", len(g.regions), "took", time.Since(g.loaded).Round(time.Millisecond))
	return nil
}

func (s *Server) load() (*generation, error) {
	start := time.Now()
	m, stamp, change, err := s.loader.Load()
	if err != nil {
		return nil, err
	}
	g, err := loadGeneration(m, stamp, s.base.Load(), change, func(msg string, args ...any) {
		s.log.Warn(msg, append(args, "generation", m.Generation)...)
	})
	if err != nil {
		return nil, fmt.Errorf("generation %d: %w", m.Generation, err)
	}
	if g.origin == "" {
		if err := s.checkLocalBlobs(); err != nil {
			return nil, fmt.Errorf("generation %d: %w", m.Generation, err)
		}
	}
	g.loaded = start
	return g, nil
}

// errNoBlobSource refuses a generation this host could not serve every blob of: without an
// origin, a blob no mirror holds yet (a new one, before the next crawl) is served from the
// tree's blobs/, which a host syncing only regmirror/ lacks.
var errNoBlobSource = errors.New("the tree has no blobs/ and the metadata names no origin, so blobs no mirror holds yet could not be served: " +
	"set origin: in the mirrors file given to generate (a full copy of the tree served over HTTP), or sync blobs/ to this host too")

// checkLocalBlobs checks that the tree has a blobs/ directory holding files.
func (s *Server) checkLocalBlobs() error {
	f, err := s.root.Open(layout.BlobDir("sha256"))
	if err != nil {
		return errNoBlobSource
	}
	defer f.Close()
	if ents, err := f.ReadDir(1); err != nil || len(ents) == 0 {
		return errNoBlobSource
	}
	return nil
}

// DefaultPollInterval is how often Run checks the stamp unless told otherwise: a check is a
// read of a small file and two stats, so a switch shows within a quarter of a second.
const DefaultPollInterval = 250 * time.Millisecond

// Run watches the tree's current stamp and the GeoIP database every PollInterval until ctx is
// done, swapping in what changed, and runs the mirrors' health probes (unless they are off).
// ListenAndServe runs it; a caller serving the handler itself (the demo) runs it in a
// goroutine.
func (s *Server) Run(ctx context.Context) {
	go s.runProbes(ctx)
	every := s.opts.PollInterval
	if every <= 0 {
		every = DefaultPollInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.Check()
		}
	}
}

// Check looks once for a new generation and a changed GeoIP database, and swaps in what loads.
// It returns the error of a refused generation or database (already logged); the previous one
// keeps serving. Calls are serialized.
func (s *Server) Check() error {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	return errors.Join(s.checkTree(), s.checkDB(s.geoKind()), s.checkDB(s.asnKind()))
}

func (s *Server) checkTree() error {
	b, err := os.ReadFile(s.tree.Path(layout.CurrentFile))
	if err != nil {
		if s.watch.stamp != nil { // say it once
			s.log.Error("cannot read the tree's generation stamp; still serving the loaded generation", "err", err)
			s.watch.stamp = nil
		}
		return fmt.Errorf("reading generation stamp: %w", err)
	}
	if bytes.Equal(b, s.watch.stamp) {
		return nil
	}
	if bytes.Equal(b, s.watch.failed) && time.Since(s.watch.failedAt) < retryFailedAfter {
		return nil
	}
	stamp, err := layout.ParseStamp(b)
	if err == nil {
		if cur := s.gen.Load(); cur != nil && cur.stampRef == stamp.Meta && cur.number == stamp.Generation {
			s.watch.stamp = b // rewritten with the same content that matters
			return nil
		}
	}
	var g *generation
	if err == nil {
		g, err = s.load()
	}
	if err != nil {
		s.metrics.reloads.WithLabelValues("failed").Inc()
		if !bytes.Equal(b, s.watch.failed) {
			s.log.Error("REFUSING new generation: it does not load; still serving the previous one",
				"serving", s.Generation(), "err", err)
		}
		s.watch.failed, s.watch.failedAt = b, time.Now()
		return err
	}
	old := s.install(g)
	s.watch.stamp, s.watch.failed = b, nil
	debug.FreeOSMemory() // the previous generation and the decoding's garbage
	s.metrics.reloads.WithLabelValues("ok").Inc()
	var oldNum uint64
	if old != nil {
		oldNum = old.number
	}
	s.log.Info("generation switched", "generation", g.number, "previous", oldNum, "repositories", len(g.repos),
		"manifests", g.manifestCount, "variantSets", g.variantSetCount, "blobs", g.blobCount, "regions", len(g.regions),
		"took", time.Since(g.loaded).Round(time.Millisecond))
	return nil
}

// dbKind is one of the MaxMind DB files the server watches.
type dbKind struct {
	what    string // "GeoIP database", "ASN database"
	path    string
	watch   *dbWatch
	current *atomic.Pointer[geoDB]
	reloads *prometheus.CounterVec
}

func (s *Server) geoKind() dbKind {
	return dbKind{"GeoIP database", s.opts.GeoIP, &s.watch.geo, &s.geo, s.metrics.geoReloads}
}

func (s *Server) asnKind() dbKind {
	return dbKind{"ASN database", s.opts.ASNDB, &s.watch.asn, &s.asn, s.metrics.asnReloads}
}

// checkDB reloads a MaxMind DB file that changed; one that does not open is refused and the
// loaded one kept.
func (s *Server) checkDB(k dbKind) error {
	if k.path == "" {
		return nil
	}
	id, err := statID(k.path)
	if err != nil {
		if !k.watch.missing {
			s.log.Error(k.what+" unreadable; keeping the loaded one", "path", k.path, "err", err)
			k.watch.missing = true
		}
		return nil
	}
	k.watch.missing = false
	if id == k.watch.id || id == k.watch.failed {
		return nil
	}
	db, err := openGeoDB(k.path)
	if err != nil {
		k.watch.failed = id
		k.reloads.WithLabelValues("failed").Inc()
		s.log.Error("REFUSING new "+k.what+"; keeping the loaded one", "err", err)
		return err
	}
	k.current.Store(db)
	k.watch.id, k.watch.failed = db.fileID, fileID{}
	k.reloads.WithLabelValues("ok").Inc()
	s.log.Info(k.what+" reloaded", "path", k.path, "type", db.dbType, "built", db.built.Format(time.DateOnly))
	return nil
}
