// Package redirector answers the pull side of the OCI distribution API from a tree's metadata
// and sends every blob download to a mirror near the client.
//
// [New] loads the tree's current generation into memory with every answer prepared (bytes and
// header values), so a request costs a few map lookups. [Server.Run] watches the tree's
// current stamp (and the GeoIP database) and swaps a new generation in atomically; a
// generation that does not load is refused with an error log line and the previous one keeps
// serving. [Server.ListenAndServe] runs the HTTP(S) and metrics listeners with timeouts and a
// graceful drain.
//
// Every name, tag and digest from a request is checked against the distribution grammar
// (package layout) before any lookup; no filesystem path is built from request input (local
// blobs are opened through an [os.Root] at a path made by layout.BlobPath from a digest the
// metadata holds); a Location header only ever names a configured mirror or origin.
//
// See headers.go for the Cache-Control policy.
package redirector
