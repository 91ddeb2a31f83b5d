-- The table pgstore keeps its keys in. Run it once with
--
--     psql mydb < table.sql
--
-- or let pgstore create it with Config.CreateTableIfMissing. pgstore embeds
-- this file and, when it creates the table, puts the configured schema and
-- table name in place of "session" and derives the constraint and index names
-- from the table name, so several stores can share one schema.
--
-- key        The key exactly as the application gave it. bytea, not text,
--            because a Go string may hold a NUL byte or invalid UTF-8, which
--            a text column refuses.
-- key_hash   SHA-256 of key, computed by pgstore. The primary key is on the
--            hash because a btree entry cannot hold more than about 2.7 kB,
--            and keys may be far longer than that. A row written by hand
--            needs sha256(key) here, or pgstore will not find it.
-- value      The stored bytes; an empty value is a zero-length bytea.
-- expires_at When the key expires, computed by the database as now() plus
--            the duration, so that only the database's clock counts; NULL
--            means never. timestamptz keeps microseconds.
CREATE TABLE IF NOT EXISTS "session" (
    key        bytea NOT NULL,
    key_hash   bytea NOT NULL,
    value      bytea NOT NULL,
    expires_at timestamptz,
    CONSTRAINT "session_pkey" PRIMARY KEY (key_hash)
);

-- Pruning finds expired rows through this index; keys that never expire are
-- left out of it.
CREATE INDEX IF NOT EXISTS "session_expires_at_idx"
    ON "session" (expires_at) WHERE expires_at IS NOT NULL;
