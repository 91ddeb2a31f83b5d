// Package devdb finds or starts a PostgreSQL server for the pgstore tests
// and its example program.
//
// [Find] tries, in order: database URLs from environment variables named
// by the caller, a throwaway server in a Docker container, and a throwaway
// cluster made with the initdb and pg_ctl of a local PostgreSQL install.
// Servers that devdb starts listen on 127.0.0.1 only, trust every
// connection, and run with fsync off: they are for tests, never for data
// that must survive.
//
// A caller always ends with [Database.Close], which stops and removes
// whatever devdb started.
package devdb
