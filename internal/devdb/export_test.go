package devdb

// Dir returns the temporary directory of a local cluster, else "".
func Dir(d *Database) string { return d.dir }
