// Package e2e holds regmirror's end-to-end tests and benchmarks against real peers on
// loopback (see internal/testsupport/peers): Debian's docker-registry (docker-distribution 2.8) as the
// source, the regmirror binary built from this checkout, skopeo reading the published tree
// as an OCI image layout, deploy/mirror-sync (rsync) filling a mirror and nginx serving it.
//
// What the tests here establish:
//
//   - generate_test.go: `regmirror generate` publishes every repository:tag of the source
//     (demo images from internal/testsupport/testimages plus extra repositories) as a tree that skopeo
//     inspects and copies, every blob hashing to its name and the digests matching what was
//     pushed; --repo globs select what they should; a re-run with nothing new costs about one
//     request per tag and fetches no blob (counted at a proxy in front of the source); a tag
//     deleted at the source leaves the next generation; --dry-run writes nothing.
//   - crashloop_test.go: `kill -9` at random moments during generate, many times over, with a
//     logged seed (REGMIRROR_CRASH_SEED replays a run): after each kill the tree either has no
//     generation yet or loads and validates; the final uninterrupted run completes.
//   - badinput_test.go: an unreachable source and wrong credentials (docker-registry with
//     htpasswd) exit non-zero with a one-line "regmirror: …" error and leave the previous
//     tree loadable.
//   - harness_test.go: the harness itself (registry with and without auth, nginx stop/start
//     and access log, deploy/mirror-sync over a copy made before publications existed), and
//     a generated tree synced to a mirror over its previous generation: the mirror holds one
//     whole generation between and after the two phases, and nginx serves every blob of it.
//   - phase2_test.go, phase2switch_test.go: nginx and Apache configured by `regmirror
//     mirror-config` answer pulls from a mirror's copy; a promotion (tags moved, a tag
//     deleted) answers as the old generation after mirror-sync's phase 1 and as the new one
//     after phase 2, and never goes back while phase 2 runs.
//   - regions_test.go: the mirror network (issue 4). TestMirrorNetwork: mirrors in DE (two,
//     one left a generation behind), FR and US filled by mirror-sync, one configured
//     but not running, an origin; `crawl` finds each up to date, behind or down; `serve`
//     with a GeoIP test database (internal/testsupport/geoiptest) behind nginx "CDN edges"
//     (peers.StartEdges) that set X-Forwarded-For for a client in DE, FR, US, AT (continent)
//     and JP (global): every 307 points at the client's region's mirrors holding the blob,
//     docker, podman, skopeo and crane pulls get every blob there (mirrors' access logs), an
//     untrusted peer cannot choose its region, the stale mirror is never asked for a blob it
//     lacks, the dead one never chosen, a stopped mirror is out after the next crawl; with
//     --regional-manifests the variants' urls name the region's mirrors first and the origin
//     last, and podman, containerd and skopeo pull from them. TestMirrorSyncUnderLoad: new
//     generations (new blobs, removed tags, --gc-grace 1ns) synced to the mirrors while
//     crawls run (rsync's exit code 24 for a metadata file a crawl pruned meanwhile is a
//     warning mirror-sync passes over: peers.SyncMirrorChanging) and pullers pull: every pull succeeds and no mirror
//     is asked for a blob it lacks.
//   - subsets_test.go: mirrors carrying part of the tree (issue 12). TestSubsetMirrors: an
//     amd64-only and an arm64-only mirror in DE, a full mirror in the US and an archive mirror
//     in NL, filled by mirror-sync --subset; the demo set plus fedora:41 (amd64 and arm64,
//     --archive'd) and fedora:40. Each mirror holds exactly its subsets' blobs (derived from
//     the images pushed); skopeo (--override-arch) and podman (--arch) pulls of each
//     architecture and of the archived release take every blob from a mirror carrying it and
//     from no other (access logs); crawl flags the arm64 mirror for a missing arm64 layer and
//     for nothing else; fedora:40 deleted at the source stays pullable (--keep-removed) from
//     the archive mirror, and the amd64 mirror's sync deletes its blobs past the grace only.
//   - hostile_test.go: the attacker's side (issue 11). A hostile source registry: manifests
//     listing each other as referrers (K=9) and index referrers listing their subject's
//     siblings (K=8) are published in well under a second with a peak RSS of tens of MB,
//     only referrers naming their subject kept; an endless catalog stops at --max-entries
//     with one line naming the source and the limit; Ctrl-C during --verify-layers of a
//     12.5 GiB gzip layer stops within a second. Raw sockets: 1,000 connections announcing a
//     body they never send are answered and closed within serve's header timeout, serve's
//     RSS bounded.
//   - soak_test.go: TestPromotionSoak (issue 9), promotions every few seconds (tags moved
//     between three images, added, deleted at the source; generate, crawl) while two skopeo,
//     two crane and two podman pull the moved tags, slowed down, through a front spreading
//     requests over two serve replicas (one on the full tree, one on a redirector-only host's
//     metadata synced with a lag by regmirror-sync.service's command) and through a phase-2
//     nginx mirror; two blob mirrors and the phase-2 one synced by deploy/mirror-sync at
//     random lags, its two phases run apart: no pull fails, every image pulled is one the
//     tag pointed to, no mirror or origin answers 404 for a blob of the images. Alone:
//     go test ./internal/testsupport/e2e -run TestPromotionSoak -count=1 -v
//   - bench_generate_test.go: the generator's quality bars side by side with crane and a bare
//     copy floor (`make bench`): BenchmarkSyncLarge, BenchmarkSyncManySmall,
//     BenchmarkNoopResync, BenchmarkPeakRSS.
//
// Every test here needs the real peers and fails loudly when one is missing (`make test`
// installs them); `go test -short` (make unit) skips the package.
package e2e
