package mirrors

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/regmirror/regmirror/internal/trunc"
	"github.com/regmirror/regmirror/layout"
	"go.yaml.in/yaml/v3"
)

// Limits of a mirrors file.
const (
	// MaxFileSize bounds the size of a mirrors file.
	MaxFileSize = 8 << 20
	// DefaultBandwidth is the weight of a mirror whose entry has no bandwidth, in Mbit/s.
	DefaultBandwidth = 100
	// MaxBandwidth bounds a mirror's bandwidth (Mbit/s), so that sums of weights never
	// overflow.
	MaxBandwidth = 10_000_000
	// MaxNameLength bounds a mirror's name.
	MaxNameLength = 128
)

// File is a parsed and validated mirrors file.
type File struct {
	// Origin is the URL of a full copy of the tree, ending in "/"; empty when absent.
	Origin string
	// Mirrors in file order.
	Mirrors []Mirror
}

// Mirror is one entry of the mirrors file, validated and normalised.
type Mirror struct {
	Name      string
	URL       string // http or https, ends in "/", no user info, query or fragment
	Country   string // ISO 3166-1 alpha-2, upper case
	Continent string // one of layout.Continents; derived from Country when the entry has none
	Bandwidth int64  // Mbit/s, 1..MaxBandwidth; DefaultBandwidth when the entry has none
	Netblocks []netip.Prefix
	// ASNs are autonomous systems whose clients go to this mirror before their country's.
	ASNs []uint32
	// AllowedCountries, when not empty, are the only client countries (upper case, sorted)
	// that regions send to this mirror; netblock and ASN clients are not restricted.
	AllowedCountries []string
	// Private mirrors are reached through Netblocks and ASNs only.
	Private bool
	// Content names the subsets the mirror carries (OCI architectures, layout.ArchiveSubset),
	// in file order without duplicates; empty: every architecture and no archive.
	Content []string
	Enabled bool
	Line    int // line of the entry in the file; 0 when built in code
}

// Error is a problem in a mirrors file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every problem found in a mirrors file, in file order. Its message is the first
// problem's, with the count of the others.
type Errors []*Error

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return "no errors"
	case 1:
		return es[0].Error()
	case 2:
		return es[0].Error() + " (and 1 more problem)"
	}
	return fmt.Sprintf("%s (and %d more problems)", es[0].Error(), len(es)-1)
}

// Load reads and validates the mirrors file at path. Errors name the file, the line and the
// field: `mirrors.yaml:7: mirror "x": country "XX" is not an ISO 3166-1 alpha-2 code`.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading mirrors file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading mirrors file: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return Parse(path, data)
}

// Parse parses and validates the content of a mirrors file; name is used in errors. YAML and
// JSON are accepted. Unknown fields, YAML aliases and further documents are errors.
func Parse(name string, data []byte) (*File, error) {
	p := &parser{file: name}
	f := p.parse(data)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return f, nil
}

type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parse(data []byte) *File {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "empty file: want a mapping with a mirrors: list")
			return nil
		}
		p.errorf(yamlErrorLine(err), "%s", yamlErrorMessage(err))
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			line = yamlErrorLine(err)
		}
		p.errorf(line, "more than one YAML document: want one mapping with a mirrors: list")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.errorf(0, "empty file: want a mapping with a mirrors: list")
			return nil
		}
		root = root.Content[0]
	}
	if !p.checkNode(root, yaml.MappingNode, "the file", "a mapping with a mirrors: list") {
		return nil
	}
	f := &File{}
	seen := map[string]int{}
	p.fields(root, "", seen, func(key string, v *yaml.Node) bool {
		switch key {
		case "origin":
			if s, ok := p.str(v, "", "origin"); ok {
				if err := checkURL(s); err != nil {
					p.errorf(v.Line, "origin %q: %v", trunc.String(s), err)
				} else {
					f.Origin = s
				}
			}
		case "mirrors":
			if v.Tag == "!!null" {
				return true // "mirrors:" with nothing: no mirrors
			}
			if !p.checkNode(v, yaml.SequenceNode, "mirrors", "a list of mirrors") {
				return true
			}
			names := map[string]int{}
			for i, n := range v.Content {
				if m, ok := p.mirror(n, i); ok {
					if first, dup := names[m.Name]; dup {
						p.errorf(n.Line, "mirror %q: duplicate name (first at line %d)", m.Name, first)
						continue
					}
					names[m.Name] = n.Line
					f.Mirrors = append(f.Mirrors, m)
				}
			}
		default:
			return false
		}
		return true
	})
	return f
}

// fields calls fn for every key of mapping node n, reporting duplicate keys and the keys fn
// does not know (fn returns false).
func (p *parser) fields(n *yaml.Node, ctx string, seen map[string]int, fn func(key string, v *yaml.Node) bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode || v.Kind == yaml.AliasNode {
			p.errorf(k.Line, "%saliases (*name) are not supported: write the value out", ctx)
			continue
		}
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			p.errorf(k.Line, "%sunsupported key: want a field name", ctx)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k.Line, "%sduplicate field %q (first at line %d)", ctx, trunc.String(k.Value), first)
			continue
		}
		seen[k.Value] = k.Line
		if !fn(k.Value, v) {
			p.errorf(k.Line, "%sunknown field %q", ctx, trunc.String(k.Value))
		}
	}
}

// checkNode reports an error unless n is of kind k.
func (p *parser) checkNode(n *yaml.Node, k yaml.Kind, what, want string) bool {
	if n.Kind == yaml.AliasNode {
		p.errorf(n.Line, "%s: aliases (*name) are not supported: write the value out", what)
		return false
	}
	if n.Kind != k {
		p.errorf(n.Line, "%s: want %s", what, want)
		return false
	}
	return true
}

// str returns a scalar's string value.
func (p *parser) str(v *yaml.Node, ctx, field string) (string, bool) {
	if v.Kind == yaml.AliasNode {
		p.errorf(v.Line, "%s%s: aliases (*name) are not supported: write the value out", ctx, field)
		return "", false
	}
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.errorf(v.Line, "%s%s: want a string", ctx, field)
		return "", false
	}
	return v.Value, true
}

func (p *parser) mirror(n *yaml.Node, index int) (Mirror, bool) {
	if !p.checkNode(n, yaml.MappingNode, fmt.Sprintf("mirrors[%d]", index), "a mapping with name, url and country") {
		return Mirror{}, false
	}
	m := Mirror{Line: n.Line, Enabled: true}
	// The name first, so that every other message can name the mirror.
	ctx := fmt.Sprintf("mirrors[%d]: ", index)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Kind == yaml.ScalarNode && k.Value == "name" && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			if err := checkName(v.Value); err != nil {
				p.errorf(v.Line, "%sname %q: %v", ctx, trunc.String(v.Value), err)
				return Mirror{}, false
			}
			m.Name = v.Value
			ctx = fmt.Sprintf("mirror %q: ", m.Name)
			break
		}
	}
	before := len(p.errs)
	have := map[string]bool{}
	p.fields(n, ctx, map[string]int{}, func(key string, v *yaml.Node) bool { return p.mirrorField(&m, ctx, key, v, have) })
	if m.Name == "" && len(p.errs) == before {
		p.errorf(n.Line, "%smissing name", ctx)
	}
	if !have["url"] {
		p.errorf(n.Line, "%smissing url", ctx)
	}
	if !have["country"] {
		p.errorf(n.Line, "%smissing country (ISO 3166-1 alpha-2, like DE)", ctx)
	}
	if len(p.errs) > before {
		return Mirror{}, false
	}
	if !have["bandwidth"] {
		m.Bandwidth = DefaultBandwidth
	}
	m.normalize()
	if err := m.reachable(); err != nil {
		p.errorf(n.Line, "%s%v", ctx, err)
		return Mirror{}, false
	}
	return m, true
}

// mirrorField reads one field of a mirror entry into m; it reports whether it knows the
// field. have records the fields seen.
func (p *parser) mirrorField(m *Mirror, ctx, key string, v *yaml.Node, have map[string]bool) bool {
	switch key {
	case "name":
		if m.Name == "" {
			p.str(v, ctx, "name")
		}
	case "url":
		have[key] = true
		if s, ok := p.str(v, ctx, "url"); ok {
			if err := checkURL(s); err != nil {
				p.errorf(v.Line, "%surl %q: %v", ctx, trunc.String(s), err)
			} else {
				m.URL = s
			}
		}
	case "country":
		have[key] = true
		if s, ok := p.str(v, ctx, "country"); ok {
			c := strings.ToUpper(s)
			if _, ok := layout.ContinentOf(c); !ok {
				p.errorf(v.Line, "%scountry %q is not an ISO 3166-1 alpha-2 code%s", ctx, trunc.String(s), countryHint(c))
			} else {
				m.Country = c
			}
		}
	case "continent":
		if s, ok := p.str(v, ctx, "continent"); ok {
			c := strings.ToUpper(s)
			if !layout.IsContinent(c) {
				p.errorf(v.Line, "%scontinent %q is not one of %s", ctx, trunc.String(s), strings.Join(layout.Continents, " "))
			} else {
				m.Continent = c
			}
		}
	case "bandwidth":
		have[key] = true
		var bw int64
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&bw) != nil {
			p.errorf(v.Line, "%sbandwidth %q: want a whole number of Mbit/s", ctx, trunc.String(v.Value))
		} else if bw <= 0 {
			p.errorf(v.Line, "%sbandwidth %d: must be positive (to take a mirror out, set enabled: false)", ctx, bw)
		} else if bw > MaxBandwidth {
			p.errorf(v.Line, "%sbandwidth %d: more than %d Mbit/s", ctx, bw, MaxBandwidth)
		} else {
			m.Bandwidth = bw
		}
	case "netblocks":
		p.strings(v, ctx, "netblocks", "a list of CIDRs", func(line int, s string) {
			pfx, err := parseNetblock(s)
			if err != nil {
				p.errorf(line, "%snetblock %q: %v", ctx, trunc.String(s), err)
				return
			}
			m.Netblocks = append(m.Netblocks, pfx)
		})
	case "asns":
		if v.Tag == "!!null" {
			return true
		}
		if !p.checkNode(v, yaml.SequenceNode, ctx+"asns", "a list of AS numbers") {
			return true
		}
		for _, a := range v.Content {
			asn, err := parseASN(a)
			if err != nil {
				p.errorf(a.Line, "%sasn %q: %v", ctx, trunc.String(a.Value), err)
				continue
			}
			m.ASNs = append(m.ASNs, asn)
		}
	case "allowed_countries":
		if p.strings(v, ctx, "allowed_countries", "a list of ISO 3166-1 alpha-2 codes", func(line int, s string) {
			c := strings.ToUpper(s)
			if _, ok := layout.ContinentOf(c); !ok {
				p.errorf(line, "%sallowed country %q is not an ISO 3166-1 alpha-2 code%s", ctx, trunc.String(s), countryHint(c))
				return
			}
			m.AllowedCountries = append(m.AllowedCountries, c)
		}) == 0 {
			p.errorf(v.Line, "%sallowed_countries is empty: leave it out to serve every country", ctx)
		}
	case "content":
		if p.strings(v, ctx, "content", "a list of subsets (architectures like amd64, or archive)", func(line int, s string) {
			if err := layout.ValidSubset(s); err != nil {
				p.errorf(line, "%scontent: %v", ctx, err)
				return
			}
			m.Content = append(m.Content, s)
		}) == 0 {
			p.errorf(v.Line, "%scontent is empty: leave it out to carry every architecture", ctx)
		}
	case "private":
		p.boolean(v, ctx, "private", &m.Private)
	case "enabled":
		p.boolean(v, ctx, "enabled", &m.Enabled)
	default:
		return false
	}
	return true
}

// strings reads a list of strings (null: none), calling each for every one with its line; it
// returns the list's length.
func (p *parser) strings(v *yaml.Node, ctx, field, want string, each func(line int, s string)) int {
	if v.Tag == "!!null" || !p.checkNode(v, yaml.SequenceNode, ctx+field, want) {
		return -1
	}
	for _, e := range v.Content {
		if s, ok := p.str(e, ctx, field); ok {
			each(e.Line, s)
		}
	}
	return len(v.Content)
}

// boolean reads a true or false.
func (p *parser) boolean(v *yaml.Node, ctx, field string, dst *bool) {
	var on bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&on) != nil {
		p.errorf(v.Line, "%s%s %q: want true or false", ctx, field, trunc.String(v.Value))
		return
	}
	*dst = on
}

// normalize puts a mirror in its one canonical form, whatever it was read from (a mirrors
// file, MirrorManager's cache, code): country and continent codes in upper case, the
// continent derived from the country when absent, and netblocks, ASNs and allowed countries
// deduplicated and sorted (content keeps its order, deduplicated). Validate checks the rules.
func (m *Mirror) normalize() {
	m.Country = strings.ToUpper(m.Country)
	m.Continent = strings.ToUpper(m.Continent)
	if m.Continent == "" {
		m.Continent, _ = layout.ContinentOf(m.Country)
	}
	slices.SortFunc(m.Netblocks, comparePrefix)
	m.Netblocks = slices.Compact(m.Netblocks)
	slices.Sort(m.ASNs)
	m.ASNs = slices.Compact(m.ASNs)
	for i, c := range m.AllowedCountries {
		m.AllowedCountries[i] = strings.ToUpper(c)
	}
	slices.Sort(m.AllowedCountries)
	m.AllowedCountries = slices.Compact(m.AllowedCountries)
	var content []string
	for _, c := range m.Content {
		if !slices.Contains(content, c) {
			content = append(content, c)
		}
	}
	m.Content = content
}

// reachable is the rule that a private mirror needs netblocks or ASNs: no region lists it.
func (m *Mirror) reachable() error {
	if m.Private && len(m.Netblocks) == 0 && len(m.ASNs) == 0 {
		return errors.New("private mirror without netblocks or asns: no client could reach it")
	}
	return nil
}

// parseASN reads an AS number: a whole number 1..4294967295, or "AS64500".
func parseASN(n *yaml.Node) (uint32, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return 0, errors.New("want an AS number, like 64500")
	}
	s := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(n.Value)), "AS")
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, errors.New("want an AS number 1..4294967295, like 64500 or AS64500")
	}
	return uint32(v), nil
}

// Validate checks a File built in code (or parsed) against the rules of the file format.
func (f *File) Validate() error {
	var errs []error
	if f.Origin != "" {
		if err := checkURL(f.Origin); err != nil {
			errs = append(errs, fmt.Errorf("origin %q: %w", trunc.String(f.Origin), err))
		}
	}
	names := map[string]bool{}
	for i, m := range f.Mirrors {
		if err := m.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("mirrors[%d]: %w", i, err))
		}
		if names[m.Name] {
			errs = append(errs, fmt.Errorf("mirror %q: duplicate name", m.Name))
		}
		names[m.Name] = true
	}
	return errors.Join(errs...)
}

// Validate checks one mirror.
func (m *Mirror) Validate() error {
	if err := checkName(m.Name); err != nil {
		return fmt.Errorf("name %q: %w", trunc.String(m.Name), err)
	}
	if err := checkURL(m.URL); err != nil {
		return fmt.Errorf("mirror %q: url %q: %w", m.Name, trunc.String(m.URL), err)
	}
	// A mirror without a country (MirrorManager has hosts without one) is in the global
	// region only; the mirrors file requires a country.
	if _, ok := layout.ContinentOf(m.Country); !ok && m.Country != "" {
		return fmt.Errorf("mirror %q: country %q is not an ISO 3166-1 alpha-2 code", m.Name, trunc.String(m.Country))
	}
	if !layout.IsContinent(m.Continent) && (m.Country != "" || m.Continent != "") {
		return fmt.Errorf("mirror %q: continent %q is not one of %s", m.Name, trunc.String(m.Continent), strings.Join(layout.Continents, " "))
	}
	if m.Bandwidth <= 0 || m.Bandwidth > MaxBandwidth {
		return fmt.Errorf("mirror %q: bandwidth %d out of range 1..%d", m.Name, m.Bandwidth, MaxBandwidth)
	}
	for _, b := range m.Netblocks {
		if c, err := parseNetblock(b.String()); err != nil || c != b {
			return fmt.Errorf("mirror %q: netblock %s is not a masked, non-empty CIDR", m.Name, b)
		}
	}
	for _, a := range m.ASNs {
		if a == 0 {
			return fmt.Errorf("mirror %q: ASN 0 is not an AS number", m.Name)
		}
	}
	for _, c := range m.AllowedCountries {
		if _, ok := layout.ContinentOf(c); !ok {
			return fmt.Errorf("mirror %q: allowed country %q is not an ISO 3166-1 alpha-2 code", m.Name, trunc.String(c))
		}
	}
	if err := m.reachable(); err != nil {
		return fmt.Errorf("mirror %q: %w", m.Name, err)
	}
	for _, c := range m.Content {
		if err := layout.ValidSubset(c); err != nil {
			return fmt.Errorf("mirror %q: content: %w", m.Name, err)
		}
	}
	return nil
}

// checkName accepts names of letters, digits, '.', '_' and '-', starting with a letter or a
// digit: names appear in the metadata, in logs and in the crawl's table.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > MaxNameLength {
		return fmt.Errorf("longer than %d characters", MaxNameLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return errors.New("want letters, digits, '.', '_' and '-', starting with a letter or digit")
		}
	}
	return nil
}

// checkURL is the rule for mirror and origin URLs, layout.CheckMirrorURL.
func checkURL(s string) error { return layout.CheckMirrorURL(s) }

// parseNetblock parses a CIDR and returns it masked. An IPv4-mapped IPv6 prefix becomes the
// IPv4 prefix, as clients' addresses are compared unmapped.
func parseNetblock(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR (like 192.0.2.0/24 or 2001:db8::/32)")
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, errors.New("covers every address: that is what regions are for")
	}
	return p.Masked(), nil
}

// comparePrefix orders netblocks by address, then by length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// countryHint suggests the right code for common mistakes.
func countryHint(c string) string {
	switch c {
	case "UK":
		return " (the United Kingdom is GB)"
	case "EL":
		return " (Greece is GR)"
	}
	if layout.IsContinent(c) {
		return " (it is a continent code: use continent: " + c + " with the mirror's country)"
	}
	return ""
}

// yamlErrorLine extracts the line from a yaml error ("yaml: line 3: ...").
func yamlErrorLine(err error) int {
	msg := err.Error()
	var line int
	if i := strings.Index(msg, "line "); i >= 0 {
		fmt.Sscanf(msg[i:], "line %d", &line)
	}
	return line
}

func yamlErrorMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.Index(msg, "line "); i == 0 {
		if j := strings.Index(msg, ": "); j > 0 {
			msg = msg[j+2:]
		}
	}
	return "not valid YAML: " + msg
}
