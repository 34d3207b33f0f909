package config

import "slices"

// DatabaseFor returns the settings for a client asking for database name:
// its own [databases.<name>] table, or else a copy of the "*" fallback
// database with Name set to name and DBName to name too, unless "*" sets
// dbname (PgBouncer's behaviour). ok is false when neither exists. The
// result must not be modified: for a named database it is the Config's own.
func (c *Config) DatabaseFor(name string) (d *Database, ok bool) {
	if d, ok := c.Databases[name]; ok {
		return d, true
	}
	fallback, ok := c.Databases["*"]
	if !ok {
		return nil, false
	}
	cp := *fallback
	cp.Hosts = slices.Clone(fallback.Hosts)
	cp.PatroniURLs = slices.Clone(fallback.PatroniURLs)
	cp.Name = name
	if cp.DBName == "" {
		cp.DBName = name
	}
	return &cp, true
}
