// Package layout is the tree contract shared by the generator and the redirector: the on-disk
// layout, the names and digests it accepts, atomic writes, and the metadata format.
//
// The tree root is a valid OCI image layout, so standard tools read it:
//
//	TREE/
//	├── oci-layout                     {"imageLayoutVersion": "1.0.0"}
//	├── index.json                     one descriptor per published tag, annotated
//	│                                  org.opencontainers.image.ref.name = "<repository>:<tag>"
//	├── blobs/
//	│   └── sha256/
//	│       └── <hex>                  every blob exactly once: layers, configs, manifests
//	└── regmirror/                     what the redirector needs; mirrors carry it too
//	    ├── current                    the stamp: {"format":2,"generation":N,"meta":"meta/<hex>.json.zst"}
//	    │                              written last; switching it switches the generation
//	    └── meta/
//	        └── <hex>.json.zst         one metadata file (zstd-compressed JSON, named by the
//	                                   sha256 of its compressed bytes): tags, manifests with
//	                                   their bytes, blob sizes, referrers, mirrors, regions,
//	                                   variant sets (digests and sizes, not bytes)
//
// Nothing is modified in place. Every file is written to a temporary name beginning with
// [TempPrefix] in its final directory, fsynced, renamed, and the directory fsynced. Blobs land
// before the manifests that reference them, manifests before index.json and the metadata file,
// and the current stamp last: a crash at any point leaves the previous generation servable.
//
// Every path in the tree is built by one helper ([BlobPath], [MetaPath] and the constants
// below), from a validated [Digest] or a name of the tree's own making, never from raw input.
package layout
