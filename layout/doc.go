// Package layout is the tree contract shared by the generator and the redirector: the on-disk
// layout, the names and digests it accepts, atomic writes, and the metadata format.
//
// The tree root is a valid OCI image layout, so standard tools read it:
//
//	TREE/
//	├── oci-layout                     {"imageLayoutVersion": "1.0.0"}
//	├── index.json -> regmirror/live/index.json
//	├── fullfiletimelist-containers -> regmirror/live/fullfiletimelist-containers
//	├── blobs/
//	│   └── sha256/
//	│       └── <hex>                  every blob exactly once: layers, configs, manifests
//	└── regmirror/                     what the redirector needs; mirrors carry it too
//	    ├── current -> live/current    the stamp, read through live
//	    ├── live -> pub/<name>         THE switch: replaced by rename, the last write of a publish
//	    ├── pub/
//	    │   └── <name>/                one publication (each generate, each crawl), immutable;
//	    │       │                      <name> is "<generation>-<16 hex of the stamp's sha256>"
//	    │       ├── current            the stamp: {"format":3,"generation":N,"meta":"meta/<hex>.json.zst",
//	    │       │                      "metaFiles":"meta/<hex>.json.zst …"} (the root, and what it names)
//	    │       ├── index.json -> ../../shared/index.json/<generation>-<hex>
//	    │       ├── fullfiletimelist-containers -> ../../shared/fullfiletimelist-containers/<gen>-<seq>
//	    │       ├── v2 -> ../../shared/v2/<hex>          phase-2 tag files (internal/phase2)
//	    │       ├── subsets/<subset>.rsync-filter -> ../../../shared/subsets/…/<generation>-<hex>
//	    │       └── uses -> ../../shared/uses/<generation>-<hex>
//	    ├── shared/<kind>/…            the publications' large parts, stored once, named by
//	    │                              content ([SharedDir]): a publish adds what changed
//	    ├── v2/<repo>/_digests/<hex>/<hex>.<ext>   phase-2 digest markers, shared
//	    ├── settled                    the source's settled record ([SettledFile]), not copied
//	    └── meta/                      metadata files (zstd-compressed JSON, each named by the
//	        │                          sha256 of its compressed bytes), shared by generations:
//	        ├── <hex>.json.zst         a root: generation, subsets, the names of the next two
//	        ├── <hex>.json.zst         a network file: mirrors and their crawl state, regions,
//	        │                          variant sets (their mirrors; variants are rendered)
//	        └── <hex>.json.zst         content packs: a base (tags, manifests with their bytes,
//	                                   blob records, referrers…), then deltas against it
//
// Everything a reader sees change when a generation switches (the stamp, index.json, tags,
// tag lists, the file list) is reached from the live publication and read through
// regmirror/live, so it switches at once; what stays outside (blobs, metadata files, shared
// entries, digest markers) is immutable and named by content. A mirror copies new files first and the live link last
// (deploy/mirror-sync).
//
// Nothing is modified in place. Every file is written to a temporary name beginning with
// [TempPrefix] in its final directory, fsynced, renamed, and the directory fsynced; a
// publication is built in a temporary directory and renamed whole; empty files (the phase-2
// digest markers) are created in place and synced together ([EmptyFiles]). Blobs land before the
// manifests that reference them, manifests before the metadata (the network file and content
// packs before the root naming them), the root before the publication naming it, and the live
// link last ([Tree.PublishWith], the one publish
// sequence): a crash at any point leaves the previous generation servable.
//
// Every path in the tree is built by one helper ([BlobPath], [MetaPath], [PubPath] and the
// constants below), from a validated [Digest] or a name of the tree's own making, never from raw input.
package layout
