package mirrormanager

import "github.com/regmirror/regmirror/internal/mirrormanager/mmtest"

// The package's tests build caches with package mmtest's encoder (written from the schema,
// independently of wire.go), under shorter names.
type (
	cacheSpec = mmtest.Cache
	dirSpec   = mmtest.Dir
	kv        = mmtest.KV
	idString  = mmtest.IDString
	idInt     = mmtest.IDInt
	idInts    = mmtest.IDInts
	idStrings = mmtest.IDStrings
	strInts   = mmtest.StrInts
)

var (
	appendMsg = mmtest.AppendMsg
	appendStr = mmtest.AppendStr
	appendInt = mmtest.AppendInt
)

func strp(s string) *string { return mmtest.Str(s) }
func boolp(v bool) *bool    { return mmtest.Bool(v) }
