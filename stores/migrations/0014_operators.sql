-- The people who use the HTTP API and the dashboard. Only a SHA-256 of each token is kept: a token is 32 random
-- bytes, so an unkeyed hash cannot be reversed by guessing, and a copy of the table signs no one in.
CREATE TABLE operators (
    operator_id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    roles text[] NOT NULL,
    token_sha256 bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
