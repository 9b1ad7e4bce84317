package geoiptest

import (
	"fmt"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// ASNDatabaseType is the metadata database_type of the ASN files written here, as MaxMind's.
const ASNDatabaseType = "GeoLite2-ASN"

// ASNNetwork places the clients of one network in an autonomous system.
type ASNNetwork struct {
	// CIDR is the network, IPv4 or IPv6.
	CIDR string
	// ASN is the autonomous system number; Org its organisation's name (optional).
	ASN uint32
	Org string
}

// ASNBytes returns a MaxMind DB in the GeoLite2-ASN schema (autonomous_system_number,
// autonomous_system_organization) holding the networks.
func ASNBytes(nets []ASNNetwork) ([]byte, error) {
	return build(mmdbwriter.Options{
		DatabaseType: ASNDatabaseType,
		Description:  map[string]string{"en": "regmirror test ASN database"},
		RecordSize:   24,
	}, len(nets), func(i int) (string, mmdbtype.Map) {
		n := nets[i]
		org := n.Org
		if org == "" {
			org = fmt.Sprintf("AS%d test network", n.ASN)
		}
		return n.CIDR, mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(n.ASN),
			"autonomous_system_organization": mmdbtype.String(org),
		}
	})
}

// WriteASN writes a GeoLite2-ASN MaxMind DB holding the networks to path, through a
// temporary file and a rename.
func WriteASN(path string, nets []ASNNetwork) error {
	b, err := ASNBytes(nets)
	if err == nil {
		err = writeFile(path, b)
	}
	if err != nil {
		return fmt.Errorf("writing ASN test database: %w", err)
	}
	return nil
}
