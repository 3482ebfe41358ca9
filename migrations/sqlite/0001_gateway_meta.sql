-- Facts about this database that the gateway checks at start-up, such as which
-- master secret it was created with (by a key-check value, never the key).
CREATE TABLE gateway_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
